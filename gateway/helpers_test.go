package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// The identities of the tests: the gateway calls the payments service.
var (
	testTD       = spiffeid.RequireTrustDomainFromString("pay.internal")
	gatewayID    = spiffeid.RequireFromPath(testTD, "/ns/prod/sa/gateway")
	paymentsID   = spiffeid.RequireFromPath(testTD, "/ns/prod/sa/payments")
	impostorID   = spiffeid.RequireFromPath(testTD, "/ns/prod/sa/ledger")
	testIssuer   = "https://auth.pay.example"
	testAudience = "https://api.pay.example"
)

var discardLog = slog.New(slog.DiscardHandler)

// testPKI is an internal CA (mtls.NewCA) and the pool of its root.
type testPKI struct {
	ca    *mtls.CA
	roots *x509bundle.Bundle // testTD's: the CA's root
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, _, err := mtls.NewCA(testTD, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, roots: x509bundle.FromX509Authorities(testTD, []*x509.Certificate{ca.Root})}
}

// issue makes a certificate for id, on a new key, valid for ttl from now.
func (p *testPKI) issue(t testing.TB, id spiffeid.ID, ttl time.Duration) *tls.Certificate {
	t.Helper()
	c, err := p.issueNow(id, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *testPKI) issueNow(id spiffeid.ID, ttl time.Duration) (*tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	chain, err := p.ca.Issue(id, nil, ttl, k.Public(), time.Now())
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: k, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// static is a Reloader holding a certificate for id.
func (p *testPKI) static(t testing.TB, id spiffeid.ID) *mtls.Reloader {
	return mtls.NewStatic(*p.issue(t, id, time.Hour))
}

// renewing is a started Reloader whose certificates live ttl and are
// renewed at about two thirds of it, until the test ends.
func (p *testPKI) renewing(t testing.TB, id spiffeid.ID, ttl time.Duration) *mtls.Reloader {
	t.Helper()
	r := &mtls.Reloader{Logger: discardLog, Renew: func(context.Context, *tls.Certificate) (*tls.Certificate, error) {
		return p.issueNow(id, ttl)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// seen is what the upstream saw of one request.
type seen struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	RawQuery string `json:"raw_query"`
	// RequestURI is the request target as the service received it.
	RequestURI string      `json:"request_uri"`
	Header     http.Header `json:"header"`
	BodyLen    int         `json:"body_len"`
	Proto      string      `json:"proto"`
	// PeerSerial is the serial of the client certificate the gateway
	// presented; PeerID its SPIFFE ID.
	PeerSerial string `json:"peer_serial"`
	PeerID     string `json:"peer_id"`
}

// testUpstream is a payment service: HTTPS that requires a client
// certificate (mtls.ServerConfig allowing the gateway's ID) and echoes the
// request it saw as JSON. Paths ending in /slow answer only when the
// request is abandoned (or after 10 s); paths ending in /hold wait for
// release to be closed.
type testUpstream struct {
	URL     string
	srv     *httptest.Server
	release chan struct{}

	mu    sync.Mutex
	reqs  []seen
	peers map[string]bool // client certificate serials
	// closeEvery makes every closeEvery-th response close its
	// connection, so that the gateway makes new handshakes. (Over HTTP/2
	// that is a GOAWAY, after which Go's server waits a second before
	// closing: use HTTP/1.1.)
	closeEvery int
	n          int
	// headers are added to every response.
	headers http.Header
}

// startUpstream serves the echo handler over mutual TLS with the
// certificate of r, accepting only clients with allowedIDs verified
// against roots.
//
// The listener is wrapped by hand rather than with StartTLS: StartTLS adds
// httptest's own certificate to Certificates, and crypto/tls prefers
// Certificates over GetCertificate when the client sends no SNI, which is
// the case when dialing an IP address.
func startUpstream(t testing.TB, r *mtls.Reloader, roots x509bundle.Source, allowedIDs ...spiffeid.ID) *testUpstream {
	t.Helper()
	return startUpstreamProtos(t, []string{"h2", "http/1.1"}, r, roots, allowedIDs...)
}

// startUpstreamProtos is startUpstream offering the ALPN protocols protos.
func startUpstreamProtos(t testing.TB, protos []string, r *mtls.Reloader, roots x509bundle.Source, allowedIDs ...spiffeid.ID) *testUpstream {
	t.Helper()
	u := &testUpstream{release: make(chan struct{}), peers: map[string]bool{}}
	cfg := mtls.ServerConfig(r, roots, allowedIDs...)
	cfg.NextProtos = protos
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.Listener = tls.NewListener(u.srv.Listener, cfg)
	u.srv.Start()
	u.URL = "https://" + u.srv.Listener.Addr().String()
	// Cleanups run last first: release held handlers before Close waits
	// for them.
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
	})
	return u
}

func (u *testUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI, Header: r.Header.Clone(), BodyLen: len(body), Proto: r.Proto}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		s.PeerSerial = leaf.SerialNumber.String()
		if id, err := mtls.IDOf(leaf); err == nil {
			s.PeerID = id.String()
		}
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, s)
	u.peers[s.PeerSerial] = true
	u.n++
	closeConn := u.closeEvery > 0 && u.n%u.closeEvery == 0
	for k, v := range u.headers {
		w.Header()[k] = v
	}
	u.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/slow"):
		select {
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
		}
	case strings.HasSuffix(r.URL.Path, "/hold"):
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
	}
	if closeConn {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}

// requests returns the requests the upstream saw, in order.
func (u *testUpstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// count returns how many requests for path the upstream saw.
func (u *testUpstream) count(path string) int {
	n := 0
	for _, s := range u.requests() {
		if s.Path == path {
			n++
		}
	}
	return n
}

func (u *testUpstream) peerCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.peers)
}

// keyStore is the control plane's API-key store, on a real SQLite file,
// with two clients: shop and partner.
type keyStore struct {
	m *apikey.Manager
	v *apikey.Verifier
}

func newKeyStore(t testing.TB) *keyStore {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	ks := &keyStore{
		m: &apikey.Manager{Store: st.APIKeys(), Pepper: pepper},
		v: &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper, Logger: discardLog},
	}
	t.Cleanup(func() { ks.v.Close() })
	for _, c := range []string{"shop", "partner"} {
		if _, err := ks.m.CreateClient(ctx, apikey.Client{ID: c, Scopes: []string{"payment.read", "payment.write"}}); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

// key makes an API key for client.
func (ks *keyStore) key(t testing.TB, client string) string {
	t.Helper()
	k, _, err := ks.m.Create(context.Background(), client, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

// tokenIssuer signs access tokens (RFC 9068) as authserver.Server would, and
// makes a Validator that knows its key.
type tokenIssuer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newTokenIssuer(t testing.TB) *tokenIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: k.Public(), Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &tokenIssuer{key: k, kid: base64.RawURLEncoding.EncodeToString(tp)}
}

func (ti *tokenIssuer) validator() *token.Validator {
	pub := jose.JSONWebKey{Key: ti.key.Public(), Algorithm: string(jose.ES256), Use: "sig", KeyID: ti.kid}
	return &token.Validator{Issuer: testIssuer, Audience: testAudience, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}
}

// mint signs a token for client, issued at iat and valid for life.
func (ti *tokenIssuer) mint(t testing.TB, client string, iat time.Time, life time.Duration) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", ti.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ti.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jti := make([]byte, 12)
	rand.Read(jti)
	payload, err := json.Marshal(map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": client, "client_id": client,
		"iat": iat.Unix(), "exp": iat.Add(life).Unix(), "jti": base64.RawURLEncoding.EncodeToString(jti),
		"scope": "payment.read payment.write",
	})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncBuffer is a log sink that tests read while servers write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// eventually waits until cond holds, for what happens after a response
// has reached the client (the access log line, the metrics): the handler
// records them once it returns.
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

// testGateway is a Gateway served over TLS with HTTP/2 on loopback.
type testGateway struct {
	g      *Gateway
	srv    *httptest.Server
	URL    string
	client *http.Client
}

// startGateway builds a gateway from o and serves its Handler with
// httptest over TLS, HTTP/2 enabled.
func startGateway(t testing.TB, o Options) *testGateway {
	t.Helper()
	if o.Logger == nil {
		o.Logger = discardLog
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	srv := httptest.NewUnstartedServer(g.Handler())
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.Timeout = 10 * time.Second
	return &testGateway{g: g, srv: srv, URL: srv.URL, client: c}
}

// do sends a request to the gateway; hdr are header name, value pairs.
func (tg *testGateway) do(t testing.TB, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, tg.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, b
}

// get is do for GET without a body.
func (tg *testGateway) get(t testing.TB, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return tg.do(t, http.MethodGet, path, nil, hdr...)
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

// routeTo is a Route for prefix to upstream (an https one presents
// paymentsID); with changes it.
func routeTo(prefix, upstream string, with ...func(*Route)) Route {
	r := Route{Prefix: prefix, Upstream: mustURL(upstream)}
	if r.Upstream.Scheme == "https" {
		r.UpstreamID = paymentsID
	}
	for _, f := range with {
		f(&r)
	}
	return r
}

// anonymous is a route that does not authenticate.
func anonymous(r *Route) { r.AllowAnonymous = true }

// timeout300ms is a route with a timeout of 300 ms.
func timeout300ms(r *Route) { r.Timeout = 300 * time.Millisecond }

// rule is an edge rate limit of rate requests per per (burst rate),
// keyed by by, on routes (ServeMux patterns; every request without).
func rule(name string, rate int, per time.Duration, by []ratelimit.By, routes ...string) ratelimit.Rule {
	return ratelimit.Rule{Name: name, Limit: ratelimit.Limit{Rate: rate, Period: per, Burst: rate}, By: by, Routes: routes}
}

// byAddr and byClient are rule keys.
var (
	byAddr   = []ratelimit.By{ratelimit.ByAddr}
	byClient = []ratelimit.By{ratelimit.ByClient}
)

// freeAddr is a loopback address nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
