package edge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/mtls"
)

// The identities of the tests: the gateway calls the payments service.
var (
	testTD     = spiffeid.RequireTrustDomainFromString("pay.internal")
	gatewayID  = spiffeid.RequireFromPath(testTD, "/ns/prod/sa/gateway")
	paymentsID = spiffeid.RequireFromPath(testTD, "/ns/prod/sa/payments")
)

var discardLog = slog.New(slog.DiscardHandler)

// testPKI is an internal CA (mtls.NewCA) and the bundle of its root.
type testPKI struct {
	ca    *mtls.CA
	roots *x509bundle.Bundle
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, _, err := mtls.NewCA(testTD, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, roots: x509bundle.FromX509Authorities(testTD, []*x509.Certificate{ca.Root})}
}

// issueAt makes a certificate for id on a new key, issued at at for ttl,
// with the DNS names given.
func issueAt(t testing.TB, ca *mtls.CA, id spiffeid.ID, at time.Time, ttl time.Duration, dns ...string) *tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Issue(id, dns, ttl, k.Public(), at)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{PrivateKey: k, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// static is a Reloader holding a certificate for id.
func (p *testPKI) static(t testing.TB, id spiffeid.ID) *mtls.Reloader {
	return mtls.NewStatic(*issueAt(t, p.ca, id, time.Now(), time.Hour))
}

// writePair writes c's chain and key as PEM.
func writePair(t testing.TB, certFile, keyFile string, c *tls.Certificate) {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, x)
	}
	if err := os.WriteFile(certFile, testpki.CertPEM(chain...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, testpki.KeyPEM(t, c.PrivateKey.(crypto.Signer)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeIdentity writes a certificate for id, its key and the CA root as
// PEM files under dir, named prefix.pem, prefix.key and roots.pem.
func (p *testPKI) writeIdentity(t testing.TB, dir, prefix string, id spiffeid.ID) (certFile, keyFile, rootsFile string) {
	t.Helper()
	certFile, keyFile, rootsFile = filepath.Join(dir, prefix+".pem"), filepath.Join(dir, prefix+".key"), filepath.Join(dir, "roots.pem")
	writePair(t, certFile, keyFile, issueAt(t, p.ca, id, time.Now(), time.Hour))
	if err := os.WriteFile(rootsFile, testpki.CertPEM(p.ca.Root), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, rootsFile
}

// seen is what the upstream saw of one request.
type seen struct {
	Path string `json:"path"`
	// PeerSerial is the serial of the client certificate the gateway
	// presented.
	PeerSerial string `json:"peer_serial"`
	HasKey     bool   `json:"has_key"`
}

// testUpstream is a payment service: HTTPS that requires a client
// certificate (mtls.ServerConfig allowing the gateway's ID), or plain
// HTTP, and echoes what it saw as JSON.
type testUpstream struct {
	URL string
	mu  sync.Mutex
	n   int
	// closeEvery makes every closeEvery-th response close its
	// connection, so that the gateway makes new handshakes.
	closeEvery int
}

func (u *testUpstream) serve(w http.ResponseWriter, r *http.Request) {
	s := seen{Path: r.URL.Path, HasKey: r.Header.Get("X-Api-Key") != ""}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.PeerSerial = r.TLS.PeerCertificates[0].SerialNumber.String()
	}
	u.mu.Lock()
	u.n++
	if u.closeEvery > 0 && u.n%u.closeEvery == 0 {
		w.Header().Set("Connection", "close")
	}
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}

// requests is how many requests the upstream answered.
func (u *testUpstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// startUpstream serves the echo handler over mutual TLS (HTTP/1.1) with
// the certificate of r, accepting only clients with allowed verified
// against roots.
func startUpstream(t testing.TB, r *mtls.Reloader, roots x509bundle.Source, allowed ...spiffeid.ID) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	cfg := mtls.ServerConfig(r, roots, allowed...)
	cfg.NextProtos = []string{"http/1.1"}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	u.URL = "https://" + srv.Listener.Addr().String()
	return u
}

// startPlainUpstream serves the echo handler over plain HTTP on loopback.
func startPlainUpstream(t testing.TB) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	srv := httptest.NewServer(http.HandlerFunc(u.serve))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// testEdge is an Edge serving on loopback.
type testEdge struct {
	e      *Edge
	file   string // its configuration
	client *http.Client
}

// writeFile writes the configuration file yml in dir.
func writeFile(t testing.TB, dir, yml string) string {
	t.Helper()
	file := filepath.Join(dir, "gateway.yaml")
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// buildEdge builds the edge of the configuration yml, written to a file
// in dir, on a loopback listener; with changes the options.
func buildEdge(t testing.TB, dir, yml string, with ...func(*Options)) (*Edge, error) {
	t.Helper()
	f, err := Load(writeFile(t, dir, yml))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{File: f, Logger: discardLog, Listener: ln, Warn: func(string) {}}
	for _, w := range with {
		w(&o)
	}
	return New(context.Background(), o)
}

// startEdge builds the edge of yml (buildEdge) and serves it until the
// test ends.
func startEdge(t testing.TB, dir, yml string, with ...func(*Options)) *testEdge {
	t.Helper()
	e, err := buildEdge(t, dir, yml, with...)
	if err != nil {
		t.Fatalf("New: %v\n%s", err, yml)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.Close()
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEdge{e: e, file: filepath.Join(dir, "gateway.yaml"), client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// get sends GET path to the edge; hdr are header name, value pairs.
func (te *testEdge) get(t testing.TB, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, te.e.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// wantStatus fails the test unless resp has status code.
func wantStatus(t testing.TB, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, code, body)
	}
}

// wantProblem checks an RFC 9457 problem details answer.
func wantProblem(t testing.TB, resp *http.Response, body []byte, code int) {
	t.Helper()
	wantStatus(t, resp, body, code)
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != code || p.Title == "" || p.Type == "" {
		t.Errorf("problem body %s: %+v %v", body, p, err)
	}
}

// echoed decodes what the upstream saw from its answer.
func echoed(t testing.TB, body []byte) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("upstream answer %q: %v", body, err)
	}
	return s
}

// eventually waits until cond holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpsRoute is a route to an mTLS upstream, as YAML.
func httpsRoute(prefix, upstream string, extra ...string) string {
	s := fmt.Sprintf("  - prefix: %s\n    upstream: %s\n    upstream_id: %s\n", prefix, upstream, paymentsID)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}
