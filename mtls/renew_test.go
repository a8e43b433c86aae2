package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var controlPlane = spiffeid.RequireFromPath(td, "/rampart/control-plane")

// renewWorld is a control plane with a renewal endpoint, whose clock the
// test may move (skew), and a workload with a Reloader that renews there.
type renewWorld struct {
	*world
	otherCA *CA
	url     string
	skew    atomic.Int64 // added to the handler's clock
	r       *Reloader
	client  *http.Client
}

// The workload's first certificate, valid for an hour, was issued age ago.
func newRenewWorld(t *testing.T, age time.Duration) *renewWorld {
	t.Helper()
	rw := &renewWorld{world: newWorld(t)}
	rw.otherCA = newCA(t, td, time.Now().Add(-time.Hour))
	now := func() time.Time { return time.Now().Add(time.Duration(rw.skew.Load())) }
	// The control plane also accepts certificates of another CA (as
	// rampart serve does with --client-ca): TLS lets them through, the
	// handler must not.
	cfg := &tls.Config{
		Certificates: []tls.Certificate{issue(t, rw.ca, controlPlane, time.Hour, time.Now())},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool(rw.ca.Root, rw.otherCA.Root),
	}
	rw.url = "https://" + serveTLS(t, cfg, RenewHandler(rw.ca, RenewPolicy{MaxLifetime: 2 * time.Hour, Now: now})) + "/v1/ca/renew"
	initial := issue(t, rw.ca, gateway, time.Hour, time.Now().Add(-age), "gateway.pay.internal")
	dir := t.TempDir()
	rw.r = &Reloader{CertFile: filepath.Join(dir, "gw.pem"), KeyFile: filepath.Join(dir, "gw.key"), Logger: discard}
	writePair(t, rw.r.CertFile, rw.r.KeyFile, initial)
	rw.client = &http.Client{Transport: &http.Transport{TLSClientConfig: ClientConfig(rw.r, rw.roots, controlPlane)}}
	rw.r.Renew = Renewer(rw.url, rw.client, nil)
	return rw
}

// post sends body to the renewal endpoint with client c.
func (rw *renewWorld) post(t *testing.T, c *http.Client, method string, body []byte) (int, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(method, rw.url, bytes.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

func csrPEM(t *testing.T, id spiffeid.ID, dns ...string) []byte {
	t.Helper()
	b, err := newCSR(id, dns, nil, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A workload renews its certificate with the certificate itself, over
// mutual TLS: same ID and names, new key, new validity, of the lifetime it
// was first issued with (an hour; the endpoint allows up to two).
func TestRenewEndToEnd(t *testing.T) {
	rw := newRenewWorld(t, 0)
	started(t, rw.r)
	first := rw.r.Certificate()
	renewed, err := rw.r.Renew(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	leaf := renewed.Leaf
	if id, err := IDOf(leaf); err != nil || id != gateway {
		t.Errorf("renewed ID %v, %v; want %v", id, err, gateway)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "gateway.pay.internal" {
		t.Errorf("renewed DNS names %v", leaf.DNSNames)
	}
	if serial(renewed) == serial(first) || leaf.PublicKey.(*ecdsa.PublicKey).Equal(first.Leaf.PublicKey) {
		t.Error("renewal kept the serial or the key")
	}
	if d := time.Until(leaf.NotAfter); d < time.Hour-time.Minute || d > time.Hour || leaf.NotAfter.Before(first.Leaf.NotAfter) {
		t.Errorf("renewed certificate expires %v (in %v), want in 1h, as the first", leaf.NotAfter, d)
	}
	inter := pool()
	for _, der := range renewed.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(rw.ca.Root), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("renewed chain does not verify: %v", err)
	}
	// A given key is used as is.
	k := newKey(t)
	withKey, err := Renewer(rw.url, rw.client, k)(t.Context(), first)
	if err != nil || !k.PublicKey.Equal(withKey.Leaf.PublicKey) {
		t.Errorf("Renewer with a key: %v", err)
	}
	if _, err := rw.r.Renew(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "needs a current certificate") {
		t.Errorf("Renew(nil) = %v", err)
	}
}

// A Reloader renews through the endpoint by itself: a certificate read
// from a file at 5/6 of its life is renewed at once.
func TestReloaderRenewsOverHTTP(t *testing.T) {
	rw := newRenewWorld(t, 50*time.Minute)
	started(t, rw.r)
	old := rw.r.Certificate()
	if time.Until(old.Leaf.NotAfter) > 10*time.Minute {
		t.Fatalf("first certificate expires %v", old.Leaf.NotAfter)
	}
	waitFor(t, "the renewal", func() bool { return serial(rw.r.Certificate()) != serial(old) })
	if c := rw.r.Certificate(); time.Until(c.Leaf.NotAfter) < 55*time.Minute {
		t.Errorf("renewed certificate expires %v", c.Leaf.NotAfter)
	}
}

func TestRenewRefusals(t *testing.T) {
	rw := newRenewWorld(t, 0)
	started(t, rw.r)
	gw := rw.client
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	otherCert := NewStatic(issue(t, rw.otherCA, gateway, time.Hour, time.Now()))
	otherCA := &http.Client{Transport: &http.Transport{TLSClientConfig: ClientConfig(otherCert, rw.roots, controlPlane)}}

	for _, tc := range []struct {
		name   string
		client *http.Client
		method string
		body   []byte
		code   int
		desc   string
	}{
		{"another ID", gw, "POST", csrPEM(t, ledger), 403, "the request is for spiffe://pay.internal/ns/prod/sa/ledger, the client certificate for spiffe://pay.internal/ns/prod/sa/gateway"},
		{"another DNS name", gw, "POST", csrPEM(t, gateway, "gateway.pay.internal", "api.payments.example"), 403, `DNS name "api.payments.example" is not in the current certificate`},
		{"no client certificate", noCert, "POST", csrPEM(t, gateway), 401, "a client certificate (the current one) is required"},
		{"certificate of another CA", otherCA, "POST", csrPEM(t, gateway), 401, "not issued by this CA"},
		{"not PEM", gw, "POST", []byte("hello"), 400, "PEM certificate request"},
		{"a certificate, not a request", gw, "POST", pemChain(*rw.r.Certificate()), 400, "PEM certificate request"},
		{"garbage request", gw, "POST", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("junk")}), 400, "does not parse"},
		{"too large", gw, "POST", bytes.Repeat([]byte("a"), MaxCSRSize+1), 413, "at most 16384 bytes"},
		{"GET", gw, "GET", nil, 405, "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, e := rw.post(t, tc.client, tc.method, tc.body)
			if code != tc.code || !strings.Contains(e["error_description"], tc.desc) {
				t.Fatalf("got %d %v, want %d %q", code, e, tc.code, tc.desc)
			}
		})
	}

	// TLS accepted the certificate when the connection was made, but it
	// has expired by the time the handler looks: refused. (The handler's
	// clock is moved; no TLS stack would take an expired certificate.)
	rw.skew.Store(int64(2 * time.Hour))
	if code, e := rw.post(t, gw, "POST", csrPEM(t, gateway)); code != 401 || !strings.Contains(e["error_description"], "has expired") {
		t.Errorf("expired at the handler: %d %v", code, e)
	}
	rw.skew.Store(0)

	// Renewer reports the refusal.
	_, err := Renewer(rw.url, noCert, nil)(t.Context(), rw.r.Certificate())
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "a client certificate (the current one) is required") {
		t.Errorf("Renewer without a client certificate: %v", err)
	}
	// A request with a bad signature.
	bad := csrPEM(t, gateway)
	b, _ := pem.Decode(bad)
	b.Bytes[len(b.Bytes)-2] ^= 1
	if code, e := rw.post(t, gw, "POST", pem.EncodeToMemory(b)); code != 400 {
		t.Errorf("bad signature: %d %v", code, e)
	}
}

func TestRenewHandlerPanics(t *testing.T) {
	ca := newCA(t, td, time.Now())
	for name, f := range map[string]func(){
		"nil CA":            func() { RenewHandler(nil, RenewPolicy{}) },
		"negative lifetime": func() { RenewHandler(ca, RenewPolicy{MaxLifetime: -time.Hour}) },
		"lifetime over max": func() { RenewHandler(ca, RenewPolicy{MaxLifetime: MaxTTL + 1}) },
		"negative lineage":  func() { RenewHandler(ca, RenewPolicy{MaxLineage: -time.Hour}) },
		"root of another TD": func() {
			RenewHandler(&CA{Root: ca.Root, Issuing: ca.Issuing, Key: ca.Key, TrustDomain: bankTD}, RenewPolicy{})
		},
		"Renewer no client": func() { Renewer("https://x", nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// The answer Renewer accepts: for its ID and its key.
func TestParseChain(t *testing.T) {
	ca := newCA(t, td, time.Now())
	k := newKey(t)
	chain, err := ca.Issue(gateway, nil, time.Hour, k.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data := pemChain(tlsCert(chain, k))
	if _, err := parseChain(data, k, gateway); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"other ID":  func() error { _, err := parseChain(data, k, ledger); return err },
		"other key": func() error { _, err := parseChain(data, newKey(t), gateway); return err },
		"empty":     func() error { _, err := parseChain(nil, k, gateway); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// After a rotation, a certificate of the previous issuing CA, still valid,
// renews onto the new one (its chain names the old issuing CA, which the
// root signed); a certificate from an unrelated CA still does not.
func TestRenewAcrossRotation(t *testing.T) {
	now := time.Now()
	old, rootKey, err := NewCA(td, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	next, err := old.Rotate(rootKey, now)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{issue(t, next, controlPlane, time.Hour, now)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool(next.Root),
	}
	url := "https://" + serveTLS(t, cfg, RenewHandler(next, RenewPolicy{MaxLifetime: time.Hour})) + "/renew"
	renew := func(c tls.Certificate) (*tls.Certificate, error) {
		r := NewStatic(c)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ClientConfig(r, mustBundle(t, td, next.Root), controlPlane)}}
		return Renewer(url, client, nil)(t.Context(), r.Certificate())
	}
	got, err := renew(issue(t, old, gateway, time.Hour, now))
	if err != nil {
		t.Fatalf("renewing a certificate of the previous issuing CA: %v", err)
	}
	if len(got.Certificate) != 2 {
		t.Fatalf("a chain of %d certificates", len(got.Certificate))
	}
	if issuer, _ := x509.ParseCertificate(got.Certificate[1]); !issuer.Equal(next.Issuing) {
		t.Errorf("renewed under %v, want the new issuing CA", issuer.Subject)
	}
	if id, _ := IDOf(got.Leaf); id != gateway {
		t.Errorf("renewed for %v, want %v", id, gateway)
	}

	// Another CA of the same trust domain name, its chain sent whole, is
	// not under the root.
	other := newCA(t, td, now.Add(-time.Hour))
	if _, err := renew(issue(t, other, gateway, time.Hour, now)); err == nil {
		t.Error("a certificate of another CA renewed")
	}
}

// A body that ends before its length is the client's fault: 400, not 500.
func TestRenewTruncatedBody(t *testing.T) {
	ca := newCA(t, td, time.Now().Add(-time.Hour))
	cert := issue(t, ca, gateway, time.Hour, time.Now())
	body := csrPEM(t, gateway)
	req, err := http.NewRequest(http.MethodPost, "/renew", io.MultiReader(bytes.NewReader(body[:50]), failingReader{io.ErrUnexpectedEOF}))
	if err != nil {
		t.Fatal(err)
	}
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf, ca.Issuing}}
	rec := httptest.NewRecorder()
	RenewHandler(ca, RenewPolicy{}).ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"bad_request"`) {
		t.Errorf("truncated body: %d %s", rec.Code, rec.Body)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// RenewalClient reaches the control plane as an HTTPS server (by its name,
// here its IP address 127.0.0.1) and presents the Reloader's certificate.
func TestRenewalClient(t *testing.T) {
	ca := newCA(t, td, time.Now().Add(-time.Hour))
	serve := func(names ...string) string {
		cfg := &tls.Config{
			Certificates: []tls.Certificate{issue(t, ca, controlPlane, time.Hour, time.Now(), names...)},
			ClientAuth:   tls.RequireAnyClientCert,
		}
		return "https://" + serveTLS(t, cfg, RenewHandler(ca, RenewPolicy{})) + "/v1/certificates/renew"
	}
	url := serve("127.0.0.1")
	dir := t.TempDir()
	r := &Reloader{CertFile: filepath.Join(dir, "gw.pem"), KeyFile: filepath.Join(dir, "gw.key"), Logger: discard}
	writePair(t, r.CertFile, r.KeyFile, issue(t, ca, gateway, time.Hour, time.Now()))
	r.Renew = Renewer(url, RenewalClient(r, pool(ca.Root)), nil)
	started(t, r)
	first := r.Certificate()
	next, err := r.Renew(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := IDOf(next.Leaf); id != gateway || serial(next) == serial(first) {
		t.Errorf("renewed %v serial %s", id, serial(next))
	}

	// Another CA's control plane, or one whose certificate does not name
	// the address it is reached at: refused as any HTTPS client would.
	if _, err := Renewer(url, RenewalClient(r, pool(newCA(t, td, time.Now()).Root)), nil)(t.Context(), first); !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("another CA's control plane: %v", err)
	}
	if _, err := Renewer(serve("cp.pay.internal"), RenewalClient(r, pool(ca.Root)), nil)(t.Context(), first); !errors.As(err, new(x509.HostnameError)) {
		t.Errorf("a control plane certificate without 127.0.0.1: %v", err)
	}
}

// SaveRenewals writes each renewal to the Reloader's files, replacing them
// whole, so that a restart begins from the latest certificate: the key
// 0600, the chain keeping its mode, no leftovers.
func TestSaveRenewals(t *testing.T) {
	rw := newRenewWorld(t, 0)
	if err := os.Chmod(rw.r.CertFile, 0o640); err != nil {
		t.Fatal(err)
	}
	rw.r.Renew = SaveRenewals(rw.r.Renew, rw.r.CertFile, rw.r.KeyFile)
	started(t, rw.r)
	first := rw.r.Certificate()
	next, err := rw.r.Renew(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := tls.LoadX509KeyPair(rw.r.CertFile, rw.r.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Leaf.SerialNumber.Cmp(next.Leaf.SerialNumber) != 0 || len(onDisk.Certificate) != len(next.Certificate) {
		t.Errorf("the files hold serial %s, want the renewal's %s", onDisk.Leaf.SerialNumber, next.Leaf.SerialNumber)
	}
	for file, mode := range map[string]os.FileMode{rw.r.KeyFile: 0o600, rw.r.CertFile: 0o640} {
		if st, err := os.Stat(file); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %o", file, st.Mode(), mode)
		}
		if _, err := os.Stat(file + ".new"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s.new left behind: %v", file, err)
		}
	}
	// A renewal that cannot be written is a failed renewal, and the files
	// in place are left alone.
	missing := filepath.Join(t.TempDir(), "missing")
	bad := SaveRenewals(Renewer(rw.url, rw.client, nil), filepath.Join(missing, "gw.pem"), filepath.Join(missing, "gw.key"))
	if _, err := bad(t.Context(), next); err == nil {
		t.Error("a renewal written to a missing directory succeeded")
	}
	again, err := tls.LoadX509KeyPair(rw.r.CertFile, rw.r.KeyFile)
	if err != nil || again.Leaf.SerialNumber.Cmp(onDisk.Leaf.SerialNumber) != 0 {
		t.Errorf("the pair on disk changed: %v", err)
	}
}

// RenewPolicy.Check reports what RenewHandler would panic on, without
// building anything; a valid policy, the zero value included, passes.
func TestRenewPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    RenewPolicy
		ok   bool
	}{
		{"zero value", RenewPolicy{}, true},
		{"MaxTTL", RenewPolicy{MaxLifetime: MaxTTL, MaxLineage: time.Hour}, true},
		{"negative lifetime", RenewPolicy{MaxLifetime: -time.Hour}, false},
		{"lifetime over max", RenewPolicy{MaxLifetime: MaxTTL + 1}, false},
		{"negative lineage", RenewPolicy{MaxLineage: -time.Hour}, false},
	} {
		err := tc.p.Check()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "mtls: ") {
			t.Errorf("%s: %q lacks the package prefix", tc.name, err)
		}
	}
}
