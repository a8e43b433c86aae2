package server

import (
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update

	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

const testToken = "test-admin-token-0123456789abcdef"

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testEnv struct {
	srv   *Server
	http  *httptest.Server
	store store.Store
	clock *fakeClock
}

// newEnv starts a control plane on a real SQLite file behind a real HTTP
// server.
func newEnv(t testing.TB, configure func(*Config)) *testEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	cfg := Config{Store: st, AdminToken: testToken, Now: clock.Now}
	if configure != nil {
		configure(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close(context.Background())
		st.Close()
	})
	return &testEnv{srv: s, http: hs, store: st, clock: clock}
}

// do sends a request and returns the status, the headers and the body.
func (e *testEnv) do(t testing.TB, method, path string, body []byte, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (e *testEnv) postReport(t testing.TB, body []byte, header ...string) (int, http.Header, []byte) {
	t.Helper()
	return e.do(t, "POST", "/v1/reports", body, append([]string{"Content-Type", "application/json"}, header...)...)
}

func (e *testEnv) admin(t testing.TB, method, path string, body []byte) (int, []byte) {
	t.Helper()
	code, _, b := e.do(t, method, path, body, "Authorization", "Bearer "+testToken)
	return code, b
}

var (
	pkiOnce  sync.Once
	pkiRogue *testpki.Leaf
	pkiOther *testpki.Leaf
)

func rogueLeaves(t testing.TB) (*testpki.Leaf, *testpki.Leaf) {
	pkiOnce.Do(func() {
		root := testpki.NewRoot(t, "Compromised Root")
		inter := root.NewIntermediate(t, "Compromised Issuing CA")
		pkiRogue = inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}})
		pkiOther = inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}})
	})
	return pkiRogue, pkiOther
}

// testCerts is the certificate cache of parseReport.
var testCerts = newCertCache()

// parseReport maps a report body as POST /v1/reports does.
func parseReport(body []byte) (store.ReportContent, string, error) {
	return reportContent(body, testCerts)
}

// rfc7469 returns a report as pin/report makes it.
func rfc7469(t testing.TB, host string, mode pin.Mode, leaf *testpki.Leaf, at time.Time) []byte {
	t.Helper()
	d := &pin.Domain{Name: host, Mode: mode, Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))}}
	r := report.New(&pin.Failure{Time: at, Host: host, Port: 443, Domain: d, Reason: pin.ReasonMismatch,
		Served: leaf.Chain, Chains: [][]*x509.Certificate{leaf.Chain}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trustKit returns a report as TrustKit (iOS) sends it.
func trustKit(t testing.TB, host, appVersion, vendor string, enforce bool, leaf *testpki.Leaf) []byte {
	t.Helper()
	chain := make([]string, len(leaf.Chain))
	for i, c := range leaf.Chain {
		chain[i] = string(testpki.CertPEM(c))
	}
	b, err := json.Marshal(map[string]any{
		"app-bundle-id":               "com.example.wallet",
		"app-version":                 appVersion,
		"app-platform":                "IOS",
		"app-platform-version":        "18.1.0",
		"app-vendor-id":               vendor,
		"trustkit-version":            "3.0.4",
		"date-time":                   "2026-11-25T10:00:00Z",
		"hostname":                    host,
		"port":                        443,
		"noted-hostname":              host,
		"include-subdomains":          false,
		"enforce-pinning":             enforce,
		"validated-certificate-chain": chain,
		"known-pins":                  []string{`pin-sha256="ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w="`, `pin-sha256="ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="`},
		"validation-result":           1,
		"known-pins-expiration-date":  nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

func errorMessage(t *testing.T, b []byte) string {
	t.Helper()
	return decode[struct {
		Error string `json:"error"`
	}](t, b).Error
}

func wantStatus(t *testing.T, what string, got, want int, body []byte) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d: %s", what, got, want, strings.TrimSpace(string(body)))
	}
}
