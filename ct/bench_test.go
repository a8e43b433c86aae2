package ct_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// diskLog is a static-ct-api log written to a directory.
type diskLog struct {
	logs   []ct.Log
	key    *ecdsa.PrivateKey
	origin string
	dir    string
	hashes tlog.HashReader
}

// writeTiledLog writes a static-ct-api log of n certificate entries to
// dir, as a tiled log serves it (checkpoint, hash tiles, data tiles,
// issuers), and returns its log list entry. Entry i is certs[i%len].
func writeTiledLog(b testing.TB, dir string, n int, certs [][]byte, issuer []byte) []ct.Log {
	return writeDiskLog(b, dir, n, certs, issuer).logs
}

// writeDiskLog is writeTiledLog; the tiles of the sizes in also are
// written too, as a log keeps the partial tiles of each checkpoint it
// published.
func writeDiskLog(b testing.TB, dir string, n int, certs [][]byte, issuer []byte, also ...int64) *diskLog {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	write := func(path string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	fp := sha256.Sum256(issuer)
	write("issuer/"+hex.EncodeToString(fp[:]), issuer)
	var data []byte
	for i := range n {
		leaf := tileLeaf(certs[i%len(certs)], fp)
		// The Merkle leaf is the TimestampedEntry after version and type.
		teLen := 8 + 2 + 3 + len(certs[i%len(certs)]) + 2 + 8
		hs, err := tlog.StoredHashes(int64(i), append([]byte{0, 0}, leaf[:teLen]...), hr)
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, hs...)
		data = append(data, leaf...)
		if (i+1)%256 == 0 || i == n-1 {
			t := tlog.TileForIndex(8, tlog.StoredHashIndex(0, int64(i)))
			t.L = -1
			write("tile/"+strings.TrimPrefix(t.Path(), "tile/8/"), data)
			data = nil
		}
	}
	for _, size := range append(also, int64(n)) {
		for _, t := range tlog.NewTiles(8, 0, size) {
			td, err := tlog.ReadTileData(t, hr)
			if err != nil {
				b.Fatal(err)
			}
			write("tile/"+strings.TrimPrefix(t.Path(), "tile/8/"), td)
		}
	}
	for _, size := range also {
		// The partial data tile of an earlier size: the entries up to it.
		if w := size % 256; w != 0 {
			var part []byte
			for i := size - w; i < size; i++ {
				part = append(part, tileLeaf(certs[int(i)%len(certs)], fp)...)
			}
			t := tlog.TileForIndex(8, tlog.StoredHashIndex(0, size-1))
			t.L = -1
			write("tile/"+strings.TrimPrefix(t.Path(), "tile/8/"), part)
		}
	}
	root, err := tlog.TreeHash(int64(n), hr)
	if err != nil {
		b.Fatal(err)
	}
	origin := "bench.test/log"
	write("checkpoint", ctlog.SignCheckpoint(b, key, origin, int64(n), root))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	b.Cleanup(srv.Close)
	logs, err := ct.ParseLogList(logListDoc(nil, []map[string]any{tiledEntry(der, map[string]any{
		"submission_url": "https://" + origin + "/", "monitoring_url": srv.URL + "/"})}))
	if err != nil {
		b.Fatal(err)
	}
	return &diskLog{logs: logs, key: key, origin: origin, dir: dir, hashes: hr}
}

// checkpoint publishes a checkpoint for size.
func (d *diskLog) checkpoint(b testing.TB, size int64) {
	root, err := tlog.TreeHash(size, d.hashes)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "checkpoint"), ctlog.SignCheckpoint(b, d.key, d.origin, size, root), 0o644); err != nil {
		b.Fatal(err)
	}
}

// benchPolicy pins 1,000 domains.
func benchPolicy(b testing.TB) *pin.Policy {
	var ds []pin.Domain
	for i := range 1000 {
		ds = append(ds, pin.Domain{Name: fmt.Sprintf("api%d.pay%d.example", i, i%37), IncludeSubdomains: i%2 == 0,
			Pins: []pin.Pin{pin.FromSPKI([]byte{byte(i), 1}), pin.FromSPKI([]byte{byte(i), 2})}})
	}
	p, err := pin.NewPolicy("", ds...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkMonitorTiled measures entries judged per second from a tiled
// log on local disk served on loopback: checkpoint and tile verification,
// entry parsing, and matching against a policy of 1,000 domains (1 entry
// in 100 names one of them), for two log sizes; peak-heap-MiB (the
// largest heap in use, sampled every millisecond) shows the memory a
// monitor needs does not grow with the log. Run with -benchtime=1x: one
// iteration reads the whole log.
func BenchmarkMonitorTiled(b *testing.B) {
	ca := testpki.NewRoot(b, "Bench CA")
	var certs [][]byte
	for i := range 100 {
		name := fmt.Sprintf("www%d.shop%d.example.org", i, i)
		if i == 0 {
			name = "api2.pay2.example"
		}
		certs = append(certs, ca.Issue(b, testpki.LeafOptions{DNSNames: []string{name, "alt." + name}}).Cert.Raw)
	}
	judge := newJudge(b, benchPolicy(b), nil, nil)
	for _, n := range []int{16 * 1024, 64 * 1024} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			logs := writeTiledLog(b, b.TempDir(), n, certs, ca.Cert.Raw)
			runtime.GC()
			var peak atomic.Uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			var found int
			for b.Loop() {
				found = 0
				sink := ct.SinkFunc(func(context.Context, *ct.Finding) error { found++; return nil })
				m := &ct.Monitor{Logs: logs, Judge: judge, Sink: sink, Start: ct.Start{Beginning: true}}
				if err := m.Once(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			<-done
			if want := (n + 99) / 100; found != want {
				b.Fatalf("%d findings, want %d", found, want)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		})
	}
}

// BenchmarkJudgeEntry is the per-entry work alone: parse a certificate
// and test its names against 1,000 pinned domains.
func BenchmarkJudgeEntry(b *testing.B) {
	ca := testpki.NewRoot(b, "Bench CA")
	cert := ca.Issue(b, testpki.LeafOptions{DNSNames: []string{"www.shop.example.org", "shop.example.org"}}).Cert.Raw
	judge := newJudge(b, benchPolicy(b), nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		c, err := ct.ParseCertificate(cert)
		if err != nil || judge.Concerns(c) {
			b.Fatal(err)
		}
	}
}
