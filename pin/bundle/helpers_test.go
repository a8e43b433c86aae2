package bundle_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const (
	cpHost     = "cp.payments.test"     // the control plane
	mirrorHost = "mirror.payments.test" // also on the control plane's certificate, not pinned
	apiHost    = "api.payments.test"    // the payment API the bundles pin
	payHost    = "pay.payments.test"    // a host only bundles pin
	bundleURL  = "https://" + cpHost + "/v1/bundles/mobile"
)

// t0 is the tests' clock: bundles are issued at t0 and the clock reads
// t0 + 1h unless a test moves it.
var t0 = time.Unix(1764000000, 0).UTC()

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0.Add(time.Hour)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a payment company's PKI, an attacker's trusted rogue CA, the
// bundle signing keys and the policy embedded in the mobile app.
type world struct {
	root          *testpki.CA
	cpLeaf        *testpki.Leaf // control plane, for cpHost and mirrorHost
	apiLeaf       *testpki.Leaf
	rogueCPLeaf   *testpki.Leaf // for cpHost, from a trusted but compromised CA
	pool          *x509.CertPool
	backupPin     pin.Pin
	apiPin, pinB  pin.Pin // the API's current key and the one bundles move it to
	key, otherKey crypto.Signer
	keys          *bundle.Keys // trusts key only
	embedded      *pin.Policy
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{}
	w.root = testpki.NewRoot(t, "Payments Root CA")
	inter := w.root.NewIntermediate(t, "Payments Issuing CA")
	w.cpLeaf = inter.Issue(t, testpki.LeafOptions{DNSNames: []string{cpHost, mirrorHost}})
	w.apiLeaf = inter.Issue(t, testpki.LeafOptions{DNSNames: []string{apiHost}})
	rogue := testpki.NewRoot(t, "Compromised Public CA")
	w.rogueCPLeaf = rogue.Issue(t, testpki.LeafOptions{DNSNames: []string{cpHost}})
	w.pool = testpki.Pool(w.root, rogue)
	w.backupPin = mustPin(t, testpki.NewKey(t, testpki.ECDSAP256))
	w.apiPin = pin.FromCertificate(w.apiLeaf.Cert)
	w.pinB = mustPin(t, testpki.NewKey(t, testpki.ECDSAP256))
	w.key = mustKey(t, "ES256")
	w.otherKey = mustKey(t, "ES256")
	var err error
	if w.keys, err = bundle.NewKeys(w.key.Public()); err != nil {
		t.Fatal(err)
	}
	w.embedded = mustPolicy(t, "",
		pin.Domain{Name: cpHost, Pins: []pin.Pin{pin.FromCertificate(w.cpLeaf.Cert), w.backupPin}},
		pin.Domain{Name: apiHost, Pins: []pin.Pin{w.apiPin, w.backupPin}},
	)
	return w
}

func mustPin(t testing.TB, k crypto.Signer) pin.Pin {
	t.Helper()
	p, err := pin.FromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	k, err := bundle.GenerateKey(bundle.Algorithm(alg))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPolicy(t testing.TB, reportURI string, domains ...pin.Domain) *pin.Policy {
	t.Helper()
	p, err := pin.NewPolicy(reportURI, domains...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bundlePolicy moves the API to pinB (keeping the backup) and pins
// payHost, which the embedded policy does not know.
func (w *world) bundlePolicy(t testing.TB) *pin.Policy {
	return mustPolicy(t, "",
		pin.Domain{Name: apiHost, Pins: []pin.Pin{w.pinB, w.backupPin}},
		pin.Domain{Name: payHost, Pins: []pin.Pin{w.pinB, w.backupPin}},
	)
}

// sign signs a "mobile" bundle of version v, issued at t0 for 30 days.
func (w *world) sign(t testing.TB, v int64) string {
	t.Helper()
	return signWith(t, w.key, "mobile", v, t0, t0.Add(30*24*time.Hour), w.bundlePolicy(t))
}

func signWith(t testing.TB, key crypto.Signer, name string, v int64, iat, exp time.Time, p *pin.Policy) string {
	t.Helper()
	jws, err := bundle.Sign(key, name, v, iat, exp, p)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// signRaw signs payload with go-jose directly: header members beyond alg
// are given in extra (typ and kid included), so tests can build bundles
// that Sign refuses to make.
func signRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, extra map[string]any, payload []byte) string {
	t.Helper()
	opts := new(jose.SignerOptions)
	for k, v := range extra {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// header is the standard protected header for key, beyond alg.
func (w *world) header(t testing.TB, key crypto.Signer) map[string]any {
	return map[string]any{"kid": kid(t, key), "typ": bundle.Type}
}

func kid(t testing.TB, k crypto.Signer) string {
	t.Helper()
	id, err := bundle.KeyID(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// payloadJSON is a bundle payload with the given policy JSON.
func payloadJSON(name string, version int64, iat, exp time.Time, policy string) []byte {
	return fmt.Appendf(nil, `{"bundle":%q,"version":%d,"iat":%d,"exp":%d,"policy":%s}`, name, version, iat.Unix(), exp.Unix(), policy)
}

func policyJSON(t testing.TB, p *pin.Policy) string {
	t.Helper()
	b, err := p.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parts splits a compact JWS.
func parts(jws string) (h, p, s string) {
	x := strings.Split(jws, ".")
	return x[0], x[1], x[2]
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// controlPlane is an HTTPS server serving one bundle with an ETag, behind
// a certificate, reached through a pinned client.
type controlPlane struct {
	srv  *httptest.Server
	down atomic.Bool // new connections are refused (the dial goes to a closed port)
	dead string      // a closed port

	mu       sync.Mutex
	body     string
	status   int    // if not 0 or 200, answer with it
	redirect string // if set, redirect there
	reqs     []http.Header
}

func newControlPlane(t *testing.T, cert tls.Certificate) *controlPlane {
	t.Helper()
	cp := &controlPlane{}
	cp.srv = httptest.NewUnstartedServer(http.HandlerFunc(cp.serve))
	cp.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	cp.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	cp.srv.StartTLS()
	t.Cleanup(cp.srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.dead = l.Addr().String()
	l.Close()
	return cp
}

func etagOf(body string) string {
	sum := sha256.Sum256([]byte(body))
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

func (cp *controlPlane) serve(w http.ResponseWriter, r *http.Request) {
	cp.mu.Lock()
	body, status, redirect := cp.body, cp.status, cp.redirect
	cp.reqs = append(cp.reqs, r.Header.Clone())
	cp.mu.Unlock()
	if redirect != "" && r.Host == cpHost {
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	}
	if status != 0 && status != http.StatusOK {
		http.Error(w, "unavailable", status)
		return
	}
	etag := etagOf(body)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/jose")
	io.WriteString(w, body+"\n")
}

// setDown takes the control plane off the network, or back: while down,
// its connections are closed and new ones refused.
func (cp *controlPlane) setDown(down bool) {
	cp.down.Store(down)
	if down {
		cp.srv.CloseClientConnections()
	}
}

func (cp *controlPlane) set(body string) {
	cp.mu.Lock()
	cp.body = body
	cp.mu.Unlock()
}

func (cp *controlPlane) setStatus(code int) {
	cp.mu.Lock()
	cp.status = code
	cp.mu.Unlock()
}

func (cp *controlPlane) requests() []http.Header {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]http.Header(nil), cp.reqs...)
}

// client is what a mobile app configured for the control plane uses: a
// client pinned by the embedded policy, trusting the test roots, every
// connection going to the control plane server.
func (cp *controlPlane) client(t testing.TB, w *world, embedded *pin.Policy) *http.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if cp.down.Load() {
				return d.DialContext(ctx, network, cp.dead)
			}
			return d.DialContext(ctx, network, cp.srv.Listener.Addr().String())
		},
		TLSClientConfig: &tls.Config{RootCAs: w.pool},
	}
	c, err := pin.NewVerifier(embedded).Client(tr)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 10 * time.Second
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// updater returns an Updater for cp with its own Verifier on the
// embedded policy.
func (w *world) updater(t *testing.T, cp *controlPlane, clk *clock, cache string) (*bundle.Updater, *pin.Verifier) {
	t.Helper()
	v := pin.NewVerifier(w.embedded)
	u := &bundle.Updater{
		URL:       bundleURL,
		Name:      "mobile",
		Keys:      w.keys,
		Embedded:  w.embedded,
		Verifier:  v,
		CacheFile: cache,
		Client:    cp.client(t, w, w.embedded),
		Now:       clk.Now,
	}
	return u, v
}

// mustJSON decodes JSON into a generic value.
func mustJSON(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
