package payments_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/examples/payments"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

var (
	td        = spiffeid.RequireTrustDomainFromString("pay.internal")
	gatewayID = spiffeid.RequireFromPath(td, "/ns/prod/sa/gateway")
	serviceID = spiffeid.RequireFromPath(td, "/ns/prod/sa/payments")
	ledgerID  = spiffeid.RequireFromPath(td, "/ns/prod/sa/ledger")
)

const (
	issuer   = "https://auth.pay.test"
	audience = "https://api.pay.test"
)

var allScopes = []string{payments.ScopeRead, payments.ScopeWrite, payments.ScopeWithdraw}

var discard = slog.New(slog.DiscardHandler)

// clock is an injectable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pki is the internal CA of trust domain pay.internal. It was made three
// hours ago, so that it can also have issued certificates that have
// expired since.
type pki struct {
	ca    *mtls.CA
	roots *x509bundle.Bundle
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, _, err := mtls.NewCA(td, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, roots: x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.Root})}
}

// issue makes a certificate for id, on a new key, valid from at for ttl.
func (p *pki) issue(t testing.TB, id spiffeid.ID, at time.Time, ttl time.Duration) tls.Certificate {
	t.Helper()
	return issueBy(t, p.ca, id, at, ttl)
}

func issueBy(t testing.TB, ca *mtls.CA, id spiffeid.ID, at time.Time, ttl time.Duration) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Issue(id, nil, ttl, k.Public(), at)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Certificate{PrivateKey: k, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// client calls the payment service over mutual TLS, presenting cert;
// without cert it presents none. It verifies the service's certificate
// either way.
func (p *pki) client(t testing.TB, cert *tls.Certificate) *http.Client {
	t.Helper()
	var cfg *tls.Config
	if cert != nil {
		cfg = mtls.ClientConfig(mtls.NewStatic(*cert), p.roots, serviceID)
	} else {
		// The config of a real client, with the certificate taken away.
		cfg = mtls.ClientConfig(mtls.NewStatic(tls.Certificate{}), p.roots, serviceID)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tls.Certificate{}, nil
		}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// server is h on 127.0.0.1 behind the exact tls.Config cfg (no httptest
// certificate: crypto/tls would serve that one to clients without SNI).
type server struct {
	url string
	// handshakeErrs receives the server's log lines: the reasons of
	// refused handshakes.
	handshakeErrs chan string
}

func serve(t testing.TB, h http.Handler, cfg *tls.Config) *server {
	t.Helper()
	s := &server{handshakeErrs: make(chan string, 64)}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(chanWriter(s.handshakeErrs), "", 0)
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	s.url = "https://" + srv.Listener.Addr().String()
	return s
}

// serveService serves the service the way it must be served: only the
// gateway gets through the handshake.
func (p *pki) serveService(t testing.TB, h http.Handler, allowed ...spiffeid.ID) *server {
	t.Helper()
	cert := p.issue(t, serviceID, time.Now(), time.Hour)
	return serve(t, h, mtls.ServerConfig(mtls.NewStatic(cert), p.roots, allowed...))
}

// drain forgets the log lines of earlier handshakes.
func (s *server) drain() {
	for {
		select {
		case <-s.handshakeErrs:
		default:
			return
		}
	}
}

// refusal waits for the server to log a refused handshake.
func (s *server) refusal(t testing.TB) string {
	t.Helper()
	select {
	case line := <-s.handshakeErrs:
		return line
	case <-time.After(5 * time.Second):
		t.Fatal("the server logged no refused handshake")
		return ""
	}
}

type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	select {
	case c <- string(p):
	default: // never block the server
	}
	return len(p), nil
}

// tokenIssuer mints access tokens as authserver.Server would, signed with a
// key that its Validator knows.
type tokenIssuer struct {
	key *ecdsa.PrivateKey
	kid string
	v   *token.Validator
}

func newTokenIssuer(t testing.TB, now func() time.Time) *tokenIssuer {
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
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	v := &token.Validator{Issuer: issuer, Audience: audience, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}, Now: now}
	return &tokenIssuer{key: k, kid: pub.KeyID, v: v}
}

// mint returns a token for client with scopes; change edits the claims.
func (ti *tokenIssuer) mint(t testing.TB, client string, scopes []string, change func(map[string]any)) string {
	t.Helper()
	now := ti.v.Now()
	var jti [12]byte
	rand.Read(jti[:])
	claims := map[string]any{
		"iss": issuer, "aud": audience, "sub": client, "client_id": client,
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
		"jti": hex.EncodeToString(jti[:]), "scope": strings.Join(scopes, " "),
	}
	if change != nil {
		change(claims)
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", ti.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ti.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
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

// env is the payment service served over mutual TLS, with API keys in a
// real SQLite store and tokens from a test issuer, and the gateway's
// client.
type env struct {
	*pki
	clock   *clock
	svc     *payments.Service
	srv     *server
	gateway *http.Client
	keys    *apikey.Manager
	store   apikey.Store
	tokens  *tokenIssuer
}

// newEnv starts the service; edit, if set, changes its Config first.
func newEnv(t testing.TB, edit func(*payments.Config)) *env {
	t.Helper()
	e := &env{pki: newPKI(t), clock: newClock()}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st.APIKeys()
	pepper := make([]byte, 32)
	rand.Read(pepper)
	e.keys = &apikey.Manager{Store: e.store, Pepper: pepper, Scopes: allScopes}
	// RevocationCheck < 0: a revocation is seen by the next request.
	verifier := &apikey.Verifier{Store: e.store, Pepper: pepper, RevocationCheck: -1, Logger: discard}
	t.Cleanup(func() { verifier.Close() })
	for _, c := range []string{"shop-a", "shop-b"} {
		if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: c, Scopes: allScopes}); err != nil {
			t.Fatal(err)
		}
	}
	e.tokens = newTokenIssuer(t, time.Now)
	cfg := payments.Config{Gateways: []spiffeid.ID{gatewayID}, Roots: e.roots, APIKeys: verifier, Tokens: e.tokens.v, Now: e.clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	if e.svc, err = payments.New(cfg); err != nil {
		t.Fatal(err)
	}
	e.srv = e.serveService(t, e.svc, gatewayID)
	gw := e.issue(t, gatewayID, time.Now(), time.Hour)
	e.gateway = e.client(t, &gw)
	return e
}

// key makes an API key of client with scopes.
func (e *env) key(t testing.TB, client string, scopes ...string) cred {
	t.Helper()
	k, _, err := e.keys.Create(context.Background(), client, scopes, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return apiKey(k.String())
}

// bearer makes an access token of client with scopes.
func (e *env) bearer(t testing.TB, client string, scopes ...string) cred {
	t.Helper()
	return bearerToken(e.tokens.mint(t, client, scopes, nil))
}

// cred puts a credential on a request.
type cred func(http.Header)

func apiKey(k string) cred      { return func(h http.Header) { h.Set("X-API-Key", k) } }
func bearerToken(s string) cred { return func(h http.Header) { h.Set("Authorization", "Bearer "+s) } }

// response is an answer, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem is the JSON body of a refusal: RFC 9457 problem details from the
// service and package ratelimit, or the {"error", "error_description"} of
// packages token and mtls.
type problem struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Status      int    `json:"status"`
	Detail      string `json:"detail"`
	Rule        string `json:"rule"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Scope       string `json:"scope"`
}

func (r *response) problem(t testing.TB) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%d answer is not JSON: %v: %q", r.status, err, r.body)
	}
	return p
}

// call sends a request with c and fails the test on a transport error.
func (e *env) call(t testing.TB, c *http.Client, method, path string, cr cred, body string) *response {
	t.Helper()
	r, err := e.try(c, e.srv.url, method, path, cr, "application/json", body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// do is call by the gateway.
func (e *env) do(t testing.TB, method, path string, cr cred, body string) *response {
	t.Helper()
	return e.call(t, e.gateway, method, path, cr, body)
}

func (e *env) try(c *http.Client, base, method, path string, cr cred, ctype, body string) (*response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != "" && ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if cr != nil {
		cr(req.Header)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// want fails the test unless the answer has status.
func (r *response) want(t testing.TB, status int) *response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// failingStore is a rate-limit store that cannot be reached.
type failingStore struct{}

func (failingStore) AllowN(context.Context, string, ratelimit.Limit, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("redis: connection refused")
}
