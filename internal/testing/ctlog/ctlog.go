// Package ctlog runs a real Certificate Transparency log on loopback for
// tests: TesseraCT's POSIX server (a static-ct-api log), built outside
// Rampart's module into the peer cache (see .ci/run) and named by
// RAMPART_TEST_TESSERACT. Its tiles are served over HTTP by the test, so
// that faults (a log down, slow, rate limiting, corrupting a tile,
// signing two heads) can be injected between the log and the monitor.
package ctlog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
)

// Env names the TesseraCT POSIX binary.
const Env = "RAMPART_TEST_TESSERACT"

// Build is how .ci/run builds the binary (in its own module).
const Build = "GOFLAGS= GOBIN=$HOME/.cache/rampart-peers/tesseract@v0.1.1 go install github.com/transparency-dev/tesseract/cmd/tesseract/posix@v0.1.1"

// Binary returns the TesseraCT binary, or skips t.
func Binary(t testing.TB) string {
	bin := os.Getenv(Env)
	if bin == "" {
		t.Skipf("%s is not set (build TesseraCT with: %s; then %s=DIR/posix)", Env, Build, Env)
	}
	return bin
}

// A Log is a running TesseraCT log.
type Log struct {
	// Origin is the checkpoints' origin line; SubmissionURL its
	// https form, as a log list would publish it.
	Origin, SubmissionURL string
	// SubmitURL is the loopback base URL of the write API (add-chain).
	SubmitURL string
	// MonitoringURL is the loopback base URL of the tiles, through Faults.
	MonitoringURL string
	// Dir holds the log's storage: checkpoint, tile/, issuer/.
	Dir string
	// Key is the log's signing key.
	Key *ecdsa.PrivateKey
	// Faults, when set, may answer a monitoring request itself (return
	// true) instead of the log's files.
	mu     sync.Mutex
	faults func(w http.ResponseWriter, r *http.Request) bool
	// Requests counts monitoring requests by path prefix ("checkpoint",
	// "tile", "issuer").
	reqs map[string]int
}

// Start runs a log that accepts chains to roots. Each submission returns
// once a checkpoint covers it (TesseraCT's publication awaiter).
func Start(t testing.TB, roots ...*x509.Certificate) *Log {
	return StartWith(t, Options{Await: true}, roots...)
}

// Options tune a log.
type Options struct {
	// Await: add-chain answers once the entry is in a checkpoint; without
	// it, once sequenced (fast, for filling tiles).
	Await bool
}

// StartWith runs a log with options o.
func StartWith(t testing.TB, o Options, roots ...*x509.Certificate) *Log {
	bin := Binary(t)
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("log.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	var rootPEM bytes.Buffer
	for _, r := range roots {
		pem.Encode(&rootPEM, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	rootsFile := write("roots.pem", rootPEM.Bytes())
	storage := filepath.Join(dir, "storage")
	l := &Log{Origin: "ct.test/" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: storage, Key: key, reqs: map[string]int{}}
	l.SubmissionURL = "https://" + l.Origin + "/"

	addr := freePort(t)
	cmd := exec.Command(bin, "--private_key="+keyFile, "--origin="+l.Origin, "--storage_dir="+storage,
		"--roots_pem_file="+rootsFile, "--http_endpoint="+addr, "--checkpoint_interval=500ms",
		"--batch_max_age=50ms", "--reject_expired=false", fmt.Sprintf("--enable_publication_awaiter=%v", o.Await))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("tesseract output:\n%s", tail(logs.String(), 4000))
		}
	})
	l.SubmitURL = "http://" + addr + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(storage, "checkpoint")); err == nil {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("tesseract exited:\n%s", tail(logs.String(), 4000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tesseract did not start:\n%s", tail(logs.String(), 4000))
		}
	}
	files := http.FileServer(http.Dir(storage))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		l.reqs[first]++
		faults := l.faults
		l.mu.Unlock()
		if faults != nil && faults(w, r) {
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	l.MonitoringURL = srv.URL + "/"
	return l
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// SetFaults installs (or, with nil, removes) a fault injector in front of
// the log's monitoring files.
func (l *Log) SetFaults(f func(w http.ResponseWriter, r *http.Request) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = f
}

// Requests returns how many monitoring requests began with prefix.
func (l *Log) Requests(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs[prefix]
}

// LogList is a v3 log list naming this log as a tiled log.
func (l *Log) LogList(t testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(&l.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(der)
	doc := map[string]any{
		"version": "1.0",
		"operators": []any{map[string]any{
			"name": "Rampart tests", "email": []string{"ct@example.test"}, "logs": []any{},
			"tiled_logs": []any{map[string]any{
				"description": "TesseraCT on loopback", "log_id": id[:], "key": der, "mmd": 60,
				"submission_url": l.SubmissionURL, "monitoring_url": l.MonitoringURL,
				"state": map[string]any{"usable": map[string]any{"timestamp": "2026-01-01T00:00:00Z"}},
			}},
		}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An SCT is a log's answer to a submission (RFC 6962 §4.1).
type SCT struct {
	Version    int    `json:"sct_version"`
	ID         []byte `json:"id"`
	Timestamp  uint64 `json:"timestamp"`
	Extensions []byte `json:"extensions"`
	Signature  []byte `json:"signature"`
}

// Index is the entry's index, from the static-ct-api leaf_index extension.
func (s *SCT) Index() (int64, error) {
	e := s.Extensions
	for len(e) >= 3 {
		typ, n := e[0], int(binary.BigEndian.Uint16(e[1:3]))
		if len(e) < 3+n {
			break
		}
		if typ == 0 && n == 5 {
			b := e[3:8]
			return int64(b[0])<<32 | int64(binary.BigEndian.Uint32(b[1:])), nil
		}
		e = e[3+n:]
	}
	return 0, fmt.Errorf("ctlog: no leaf_index extension in %x", s.Extensions)
}

// Serialized is the SCT in the TLS encoding that a certificate's SCT list
// extension carries (RFC 6962 §3.2).
func (s *SCT) Serialized() []byte {
	var b []byte
	b = append(b, byte(s.Version))
	b = append(b, s.ID...)
	b = binary.BigEndian.AppendUint64(b, s.Timestamp)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Extensions)))
	b = append(b, s.Extensions...)
	return append(b, s.Signature...)
}

// AddChain submits a certificate and its issuers (leaf first) to
// add-chain, or with pre to add-pre-chain, and returns the SCT.
func (l *Log) AddChain(t testing.TB, pre bool, chain ...*x509.Certificate) SCT {
	t.Helper()
	var req struct {
		Chain [][]byte `json:"chain"`
	}
	for _, c := range chain {
		req.Chain = append(req.Chain, c.Raw)
	}
	body, _ := json.Marshal(req)
	path := "ct/v1/add-chain"
	if pre {
		path = "ct/v1/add-pre-chain"
	}
	resp, err := http.Post(l.SubmitURL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, data)
	}
	var sct SCT
	if err := json.Unmarshal(data, &sct); err != nil {
		t.Fatalf("%s: %v: %s", path, err, data)
	}
	return sct
}

// WaitSize waits until the log's checkpoint covers at least n entries.
func (l *Log) WaitSize(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(l.Dir, "checkpoint"))
		if err == nil {
			lines := strings.SplitN(string(data), "\n", 3)
			if len(lines) > 1 {
				if size, err := strconv.ParseInt(lines[1], 10, 64); err == nil && size >= n {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log's checkpoint does not reach %d entries: %q", n, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The CT extensions a precertificate and its certificate carry (RFC 6962
// §3.1, §3.3).
var (
	oidPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// Poison is the critical precertificate poison extension.
func Poison() pkix.Extension {
	return pkix.Extension{Id: oidPoison, Critical: true, Value: []byte{0x05, 0x00}}
}

// SCTList is the SCT list extension holding scts.
func SCTList(scts ...SCT) pkix.Extension {
	var list []byte
	for _, s := range scts {
		b := s.Serialized()
		list = binary.BigEndian.AppendUint16(list, uint16(len(b)))
		list = append(list, b...)
	}
	inner := binary.BigEndian.AppendUint16(nil, uint16(len(list)))
	inner = append(inner, list...)
	v, _ := asn1.Marshal(inner)
	return pkix.Extension{Id: oidSCTList, Value: v}
}

// LogID is the log's RFC 6962 ID, base64.
func (l *Log) LogID() string {
	der, _ := x509.MarshalPKIXPublicKey(&l.Key.PublicKey)
	id := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(id[:])
}

// SignCheckpoint signs a checkpoint for a tree of size with root as the
// log does (an RFC 6962 note signature): what a log that shows two
// different heads for one size would serve.
func (l *Log) SignCheckpoint(t testing.TB, size int64, root [32]byte) []byte {
	return SignCheckpoint(t, l.Key, l.Origin, size, root)
}

// SignCheckpoint signs a checkpoint for origin with key.
func SignCheckpoint(t testing.TB, key *ecdsa.PrivateKey, origin string, size int64, root [32]byte) []byte {
	body := fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
	ts := uint64(time.Now().UnixMilli())
	msg := []byte{0, 1}
	msg = binary.BigEndian.AppendUint64(msg, ts)
	msg = binary.BigEndian.AppendUint64(msg, uint64(size))
	msg = append(msg, root[:]...)
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	id := sha256.Sum256(der)
	h := sha256.New()
	h.Write([]byte(origin + "\n\x05"))
	h.Write(id[:])
	var raw []byte
	raw = append(raw, h.Sum(nil)[:4]...)
	raw = binary.BigEndian.AppendUint64(raw, ts)
	raw = append(raw, 4, 3)
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(sig)))
	raw = append(raw, sig...)
	return []byte(body + "\n\u2014 " + origin + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
}

// Checkpoint returns the log's current checkpoint file.
func (l *Log) Checkpoint(t testing.TB) []byte {
	data, err := os.ReadFile(filepath.Join(l.Dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Submit logs a certificate for names issued by ca on key (a new key when
// nil) and returns its index; with pre, its precertificate first and
// then the certificate carrying the SCT, and both indexes. The chain sent
// is the issuer's, without the root (the root itself for a root issuer).
func (l *Log) Submit(t testing.TB, ca *testpki.CA, key crypto.Signer, pre bool, names ...string) []int64 {
	t.Helper()
	if key == nil {
		key = testpki.NewKey(t, testpki.ECDSAP256)
	}
	chain := ca.Chain[:len(ca.Chain)-1]
	if len(ca.Chain) == 1 {
		chain = ca.Chain
	}
	nb := time.Now().Add(-time.Hour).Truncate(time.Second)
	o := testpki.LeafOptions{DNSNames: names, Key: key, NotBefore: nb, NotAfter: nb.Add(48 * time.Hour), Serial: big.NewInt(time.Now().UnixNano())}
	index := func(s SCT) int64 {
		i, err := s.Index()
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	if !pre {
		leaf := ca.Issue(t, o)
		return []int64{index(l.AddChain(t, false, append([]*x509.Certificate{leaf.Cert}, chain...)...))}
	}
	po := o
	po.ExtraExtensions = []pkix.Extension{Poison()}
	sct := l.AddChain(t, true, append([]*x509.Certificate{ca.Issue(t, po).Cert}, chain...)...)
	fo := o
	fo.ExtraExtensions = []pkix.Extension{SCTList(sct)}
	sct2 := l.AddChain(t, false, append([]*x509.Certificate{ca.Issue(t, fo).Cert}, chain...)...)
	return []int64{index(sct), index(sct2)}
}
