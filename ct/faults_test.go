package ct_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	_ "github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/internal/testing/testpki"
)

// TestMonitorFaults puts a real log behind a faulty server: down, rate
// limiting, slow, corrupting a tile, signing two heads for one size,
// rolling back, signing with another key. The monitor reports each,
// judges nothing it could not verify, and once the log recovers has
// judged every entry exactly once — across a restart too.
func TestMonitorFaults(t *testing.T) {
	w := newWorld(t)
	rogue := w.submit(t, w.rogue, nil, false, "api.pay.example")
	w.submit(t, w.goodInt, w.leafKey, false, "api.pay.example")
	w.log.WaitSize(t, 2)

	sink := &collector{}
	seen := &judged{}
	state := &ct.MemoryState{}
	judge := newJudge(t, w.policy, nil, nil)
	newMonitor := func() *ct.Monitor {
		return &ct.Monitor{Logs: w.logs, Judge: judge, Sink: sink, State: state, Start: ct.Start{Beginning: true},
			OnEntry: seen.on, Client: &http.Client{Timeout: 500 * time.Millisecond}}
	}
	m := newMonitor()
	l := &m.Logs[0]
	ctx := context.Background()
	dir := w.log.Dir
	step := func(name string, faults func(w http.ResponseWriter, r *http.Request) bool, check func(error) bool) {
		t.Helper()
		w.log.SetFaults(faults)
		defer w.log.SetFaults(nil)
		err := m.Step(ctx, l)
		if !check(err) {
			t.Errorf("%s: Step returned %v", name, err)
		}
		if st := m.Status()[0]; err != nil && st.LastError == "" {
			t.Errorf("%s: the status does not say the log failed", name)
		}
		if sink.count() != 0 {
			t.Fatalf("%s: a finding was delivered from a log that could not be verified", name)
		}
	}
	status := func(code int) func(error) bool {
		return func(err error) bool {
			var he *ct.HTTPError
			return errors.As(err, &he) && he.Status == code && he.Temporary()
		}
	}
	step("log down", func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return true
	}, status(http.StatusServiceUnavailable))
	step("rate limited", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return true
	}, func(err error) bool {
		var he *ct.HTTPError
		return errors.As(err, &he) && he.Status == 429 && he.RetryAfter == 7*time.Second
	})
	step("slow tiles", func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/tile/") {
			time.Sleep(time.Second)
		}
		return false
	}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "Timeout") })
	step("corrupted data tile", func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/tile/data/") {
			return false
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			return false
		}
		data[len(data)/2] ^= 0x01
		w.Write(data)
		return true
	}, func(err error) bool { return errors.Is(err, ct.ErrCorrupt) })
	step("corrupted hash tile", func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/tile/0/") {
			return false
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			return false
		}
		data[0] ^= 0x80
		w.Write(data)
		return true
	}, func(err error) bool { return errors.Is(err, ct.ErrCorrupt) })

	// The log recovers: everything is judged, once.
	if err := m.Step(ctx, l); err != nil {
		t.Fatal(err)
	}
	if st := m.Status()[0]; st.LastError != "" {
		t.Errorf("the status keeps an error after recovery: %s", st.LastError)
	}
	seen.exactlyOnce(t, 2)
	if fs := sink.get(rogue[0]); len(fs) != 1 || fs[0].Verdict.Class != ct.Rogue {
		t.Fatalf("rogue entry: %v", fs)
	}

	// The log grows while the monitor is stopped; a new monitor on the
	// same state judges only the new entries.
	w.submit(t, w.goodInt, w.backupKey, false, "api.pay.example")
	w.submit(t, w.rogue, nil, true, "shop.pay.example")
	w.log.WaitSize(t, 5)
	m = newMonitor()
	l = &m.Logs[0]
	if err := m.Step(ctx, l); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 5)
	if n := sink.count(); n != 5 {
		t.Errorf("%d entries reported, want 5", n)
	}
	before := sink.count()

	// Misbehaviour: heads the log signed that contradict the one verified.
	head := m.Status()[0].Head
	var other [32]byte
	rand.Read(other[:])
	cp := func(data []byte) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/checkpoint" {
				return false
			}
			w.Write(data)
			return true
		}
	}
	sticky := func(err error) bool { return ct.IsMisbehaviour(err) }
	w.log.SetFaults(cp(w.log.SignCheckpoint(t, head.Size, other)))
	err := m.Step(ctx, l)
	w.log.SetFaults(nil)
	if !errors.Is(err, ct.ErrSplitView) || !sticky(err) {
		t.Errorf("two heads for size %d: %v", head.Size, err)
	}
	w.log.SetFaults(cp(w.log.SignCheckpoint(t, head.Size-1, other)))
	err = m.Step(ctx, l)
	w.log.SetFaults(nil)
	if !errors.Is(err, ct.ErrRollback) {
		t.Errorf("a smaller head: %v", err)
	}
	impostor, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w.log.SetFaults(cp(ctlog.SignCheckpoint(t, impostor, w.log.Origin, head.Size+1, other)))
	err = m.Step(ctx, l)
	w.log.SetFaults(nil)
	if !errors.Is(err, ct.ErrSignature) || ct.IsMisbehaviour(err) {
		t.Errorf("a head signed by another key: %v", err)
	}
	if err := m.Step(ctx, l); err != nil {
		t.Fatalf("the genuine head after the forgeries: %v", err)
	}
	st := m.Status()[0]
	if !strings.Contains(st.Misbehaviour, "two different tree heads") {
		t.Errorf("the status does not keep the misbehaviour: %q", st.Misbehaviour)
	}
	if sink.count() != before || st.Head != head {
		t.Errorf("the forgeries changed what was judged or the head: %d findings, head %v", sink.count(), st.Head)
	}
	seen.exactlyOnce(t, 5)
}

// TestOnceRetries: a one-off audit waits out a 429 (Retry-After) and
// succeeds.
func TestOnceRetries(t *testing.T) {
	w := newWorld(t)
	w.submit(t, w.rogue, nil, false, "api.pay.example")
	w.log.WaitSize(t, 1)
	var refused atomic.Int32
	w.log.SetFaults(func(w http.ResponseWriter, r *http.Request) bool {
		if refused.Add(1) > 1 {
			return false
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return true
	})
	sink := &collector{}
	m := &ct.Monitor{Logs: w.logs, Judge: newJudge(t, w.policy, nil, nil), Sink: sink, Start: ct.Start{Beginning: true}}
	start := time.Now()
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("the audit did not wait for Retry-After: %v", d)
	}
	if sink.count() != 1 {
		t.Errorf("%d findings", sink.count())
	}
}

// TestPartialTilesGone: once a tile is full, a log may delete the partial
// tiles of it (static-ct-api, "Partial Tiles"); a monitor verifying an
// older head reads the full tile's first hashes and entries instead.
func TestPartialTilesGone(t *testing.T) {
	ca := testpki.NewRoot(t, "CA")
	cert := ca.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.pay.example"}}).Cert.Raw
	dir := t.TempDir()
	d := writeDiskLog(t, dir, 600, [][]byte{cert}, ca.Cert.Raw, 280)
	for _, p := range []string{"tile/0/001.p/24", "tile/data/001.p/24"} {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			t.Fatal(err)
		}
	}
	d.checkpoint(t, 280)
	w := newPKI(t)
	seen := &judged{}
	sink := &collector{}
	m := &ct.Monitor{Logs: d.logs, Judge: newJudge(t, w.policy, nil, nil), Sink: sink, Start: ct.Start{Beginning: true}, OnEntry: seen.on}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 280)
	d.checkpoint(t, 600)
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 600)
	if sink.count() != 600 {
		t.Errorf("%d findings", sink.count())
	}
}

// TestIssuerNotServed: an issuer the log does not serve ends the chain
// there: the entry is still judged (and reported), on what the log proves,
// with a note; never retried for ever.
func TestIssuerNotServed(t *testing.T) {
	w := newWorld(t)
	i := w.submit(t, w.goodInt, nil, false, "www.shop.pay.example")
	w.log.WaitSize(t, 1)
	w.log.SetFaults(func(rw http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/issuer/") {
			http.NotFound(rw, r)
			return true
		}
		return false
	})
	sink := &collector{}
	m := &ct.Monitor{Logs: w.logs, Judge: newJudge(t, w.policy, nil, nil), Sink: sink, Start: ct.Start{Beginning: true}}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := sink.get(i[0])
	if len(fs) != 1 || fs[0].Verdict.Class != ct.Rogue || !strings.Contains(fs[0].ParseError, "the log's chain is incomplete") {
		t.Fatalf("findings %+v", fs)
	}
	// Served again, the CA pin counts.
	w.log.SetFaults(nil)
	sink2 := &collector{}
	m2 := &ct.Monitor{Logs: w.logs, Judge: newJudge(t, w.policy, nil, nil), Sink: sink2, Start: ct.Start{Beginning: true}}
	if err := m2.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fs := sink2.get(i[0]); len(fs) != 1 || fs[0].Verdict.Class != ct.Expected {
		t.Fatalf("with the issuer served: %+v", fs)
	}
}
