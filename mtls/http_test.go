package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// peerHandler answers the peer ID Authorize put in the context.
var peerHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := PeerID(r.Context())
	fmt.Fprintf(w, "%v %v", id, ok)
})

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checkForbidden(t *testing.T, code int, body, desc string) {
	t.Helper()
	var e map[string]string
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || e["error"] != "forbidden" || e["error_description"] != desc {
		t.Fatalf("got %d %s, want 403 forbidden %q", code, body, desc)
	}
}

func TestAuthorize(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	// Any workload of the trust domain completes the handshake; the
	// middleware narrows it to one ID.
	addr := serveTLS(t, ServerConfig(NewStatic(w.server), w.roots), Authorize(w.roots, gateway)(peerHandler))
	client := func(id *tls.Certificate) *http.Client {
		r := NewStatic(issue(t, w.ca, gateway, time.Hour, now))
		if id != nil {
			r = NewStatic(*id)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: ClientConfig(r, w.roots, ledger)}}
	}

	code, body := get(t, client(nil), "https://"+addr+"/")
	if code != http.StatusOK || body != gateway.String()+" true" {
		t.Fatalf("allowed ID: %d %q", code, body)
	}
	other := issue(t, w.ca, intruder, time.Hour, now)
	code, body = get(t, client(&other), "https://"+addr+"/")
	checkForbidden(t, code, body, "SPIFFE ID spiffe://pay.internal/ns/dev/sa/intruder may not call this endpoint")

	// Plain HTTP, and TLS without a client certificate.
	plain := httptest.NewServer(Authorize(w.roots, gateway)(peerHandler))
	defer plain.Close()
	code, body = get(t, plain.Client(), plain.URL)
	checkForbidden(t, code, body, "a client certificate is required")
	optional := httptest.NewUnstartedServer(Authorize(w.roots, gateway)(peerHandler))
	optional.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool(w.ca.Root)}
	optional.StartTLS()
	defer optional.Close()
	code, body = get(t, optional.Client(), optional.URL)
	checkForbidden(t, code, body, "a client certificate is required")

	// Behind a server that verifies nothing (crypto/tls checks only that
	// the client holds the key), Authorize verifies: our CA's gateway
	// passes, another CA's certificate for the same ID does not.
	unverified := httptest.NewUnstartedServer(Authorize(w.roots, gateway)(peerHandler))
	unverified.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	unverified.StartTLS()
	defer unverified.Close()
	withCert := func(c tls.Certificate) *http.Client {
		cfg := clientWith(&c)
		cfg.RootCAs = unverified.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}} // a connection of its own
	}
	code, body = get(t, withCert(issue(t, w.ca, gateway, time.Hour, now)), unverified.URL)
	if code != http.StatusOK || body != gateway.String()+" true" {
		t.Errorf("our gateway behind RequireAnyClientCert: %d %q", code, body)
	}
	code, body = get(t, withCert(issue(t, newCA(t, td, now.Add(-time.Hour)), gateway, time.Hour, now)), unverified.URL)
	checkForbidden(t, code, body, invalidGateway)
	code, body = get(t, withCert(issue(t, w.ca, gateway, time.Hour, now.Add(-2*time.Hour))), unverified.URL)
	checkForbidden(t, code, body, invalidGateway)
	code, body = get(t, withCert(noIDCert(t, w.ca)), unverified.URL)
	checkForbidden(t, code, body, "the client certificate carries no workload SPIFFE ID")

	if id, ok := PeerID(t.Context()); ok || !id.IsZero() {
		t.Errorf("PeerID of a bare context = %v, %v", id, ok)
	}
}

// What Authorize remembers of a connection's chain is checked again on
// every request: a certificate that has expired since, or whose root has
// left the bundle, is refused on the same connection.
func TestAuthorizeChecksRememberedChains(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	var clock atomic.Int64 // offset from the real time
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{w.ca.Root})
	mw := authorize(bundle, func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }, gateway)
	addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{w.server}, ClientAuth: tls.RequireAnyClientCert}, mw(peerHandler))
	// One connection for every request.
	tr := &http.Transport{TLSClientConfig: clientWith(ptr(issue(t, w.ca, gateway, time.Hour, now))), MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i := range 3 {
		if code, body := get(t, c, "https://"+addr+"/"); code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	clock.Store(int64(2 * time.Hour)) // past the certificate's expiry
	code, body := get(t, c, "https://"+addr+"/")
	checkForbidden(t, code, body, invalidGateway)
	clock.Store(0)
	if code, _ := get(t, c, "https://"+addr+"/"); code != http.StatusOK {
		t.Fatalf("back in time: %d", code)
	}
	bundle.RemoveX509Authority(w.ca.Root) // the root is no longer trusted
	code, body = get(t, c, "https://"+addr+"/")
	checkForbidden(t, code, body, invalidGateway)
}

const invalidGateway = "the client certificate for spiffe://pay.internal/ns/prod/sa/gateway does not verify against the roots of its trust domain, or has expired"

func ptr[T any](v T) *T { return &v }

// The cost of Authorize per request on one connection: the chain is
// verified once, then only looked up (run with -bench Authorize).
func BenchmarkAuthorize(b *testing.B) {
	now := time.Now()
	ca := newCA(b, td, now.Add(-time.Hour))
	c := issue(b, ca, gateway, time.Hour, now)
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.Root})
	h := Authorize(bundle, gateway)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf, ca.Issuing}}
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// Concurrent requests, over HTTP/2 and many connections, share what
// Authorize remembers (run with -race).
func TestAuthorizeConcurrent(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	cfg := ServerConfig(NewStatic(w.server), w.roots)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	addr := serveTLS(t, cfg, Authorize(w.roots, gateway)(peerHandler))
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 8 {
		id := gateway
		if i%4 == 3 {
			id = intruder
		}
		c := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
			TLSClientConfig: ClientConfig(NewStatic(issue(t, w.ca, id, time.Hour, now)), w.roots, ledger)}}
		wg.Go(func() {
			defer c.CloseIdleConnections()
			for range 20 {
				resp, err := c.Get("https://" + addr + "/")
				if err != nil {
					failed.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if want := map[bool]int{true: 200, false: 403}[id == gateway]; resp.StatusCode != want || resp.ProtoMajor != 2 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests had the wrong answer", n)
	}
}
