package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// world is a CA with a server and certificates for clients.
type world struct {
	ca     *CA
	roots  *x509bundle.Bundle // the CA's root, pay.internal's bundle
	server tls.Certificate    // ledger's
}

func newWorld(t *testing.T) *world {
	now := time.Now()
	ca := newCA(t, td, now.Add(-24*time.Hour))
	return &world{ca: ca, roots: mustBundle(t, td, ca.Root), server: issue(t, ca, ledger, time.Hour, now)}
}

func mustBundle(t testing.TB, d spiffeid.TrustDomain, roots ...*x509.Certificate) *x509bundle.Bundle {
	t.Helper()
	b, err := NewBundle(d, roots...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clientWith(c *tls.Certificate) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true} // the server is not under test
	if c != nil {
		cfg.Certificates = []tls.Certificate{*c}
	}
	return cfg
}

// A service refuses, at the handshake, every client but one with a current
// certificate from its CA for an allowed ID.
func TestServerRefusals(t *testing.T) {
	for _, tv := range versions {
		t.Run(tv.name, func(t *testing.T) {
			w := newWorld(t)
			now := time.Now()
			good := issue(t, w.ca, gateway, time.Hour, now)
			expired := issue(t, w.ca, gateway, time.Hour, now.Add(-3*time.Hour))
			otherCA := newCA(t, td, now.Add(-24*time.Hour)) // same trust domain name, another CA
			foreign := issue(t, otherCA, gateway, time.Hour, now)
			wrongID := issue(t, w.ca, intruder, time.Hour, now)
			serverOnly := w.server // a server certificate: still a workload, but not allowed
			scfg := ServerConfig(NewStatic(w.server), w.roots, gateway)
			scfg.MaxVersion = tv.v

			if serr, cerr := handshake(t, scfg, clientWith(&good)); serr != nil || cerr != nil {
				t.Fatalf("allowed client: server err %v, client err %v", serr, cerr)
			}
			for _, tc := range []struct {
				name  string
				cert  *tls.Certificate
				check func(t *testing.T, err error)
			}{
				{"expired client certificate", &expired, func(t *testing.T, err error) {
					if e := wantErrAs[x509.CertificateInvalidError](t, err); e.Reason != x509.Expired {
						t.Fatalf("reason %v, want Expired", e.Reason)
					}
				}},
				{"client certificate from another CA", &foreign, func(t *testing.T, err error) {
					wantErrAs[x509.UnknownAuthorityError](t, err)
				}},
				{"wrong SPIFFE ID", &wrongID, func(t *testing.T, err error) {
					e := wantErrAs[*IDMismatchError](t, err)
					if e.Got != intruder || len(e.Want) != 1 || e.Want[0] != gateway {
						t.Fatalf("mismatch %+v", e)
					}
					if want := "mtls: peer SPIFFE ID spiffe://pay.internal/ns/dev/sa/intruder is not allowed (want spiffe://pay.internal/ns/prod/sa/gateway)"; err.Error() != want {
						t.Fatalf("message %q, want %q", err, want)
					}
				}},
				{"another workload of the trust domain", &serverOnly, func(t *testing.T, err error) {
					wantErrAs[*IDMismatchError](t, err)
				}},
				{"no client certificate", nil, func(t *testing.T, err error) {
					if err == nil || !strings.Contains(err.Error(), "certificate") {
						t.Fatalf("err = %v, want a refusal for the missing certificate", err)
					}
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					serr, cerr := handshake(t, scfg, clientWith(tc.cert))
					if cerr == nil {
						t.Error("the client's handshake and first read succeeded")
					}
					tc.check(t, serr)
				})
			}
		})
	}
}

// With no allowed list, a server accepts any workload of the trust
// domains it has bundles for, each vouched for by its own bundle: bank's
// root cannot vouch for a pay.internal ID, and a trust domain without a
// bundle is refused.
func TestServerTrustDomains(t *testing.T) {
	w := newWorld(t)
	bankRoot, certs := foreignRoot(t, bankTD, teller, gateway)
	bankClient, forged := certs[0], certs[1] // forged: bank's root vouching for a pay.internal ID
	set := x509bundle.NewSet(w.roots, mustBundle(t, bankTD, bankRoot))
	scfg := ServerConfig(NewStatic(w.server), set)
	for name, c := range map[string]tls.Certificate{
		"pay.internal workload":  issue(t, w.ca, intruder, time.Hour, time.Now()),
		"bank.internal workload": bankClient,
	} {
		if serr, cerr := handshake(t, scfg, clientWith(&c)); serr != nil || cerr != nil {
			t.Errorf("%s: server err %v, client err %v", name, serr, cerr)
		}
	}
	serr, _ := handshake(t, scfg, clientWith(&forged))
	wantErrAs[x509.UnknownAuthorityError](t, serr)
	if want := "mtls: peer certificate for spiffe://pay.internal/ns/prod/sa/gateway does not verify against the roots of trust domain pay.internal: x509: certificate signed by unknown authority"; !strings.HasPrefix(serr.Error(), want) {
		t.Errorf("message %q, want it to start %q", serr, want)
	}

	// Only pay.internal's bundle: bank's workloads have no roots.
	serr, _ = handshake(t, ServerConfig(NewStatic(w.server), w.roots), clientWith(&bankClient))
	if !errors.Is(serr, ErrUnknownTrustDomain) || !strings.Contains(serr.Error(), "spiffe://bank.internal/teller is in trust domain bank.internal") {
		t.Errorf("a trust domain without a bundle: %v", serr)
	}
}

// A bundle source that lies (a bundle of another trust domain than the one
// asked for) is not believed.
type lyingSource struct{ b *x509bundle.Bundle }

func (s lyingSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.b, nil
}

func TestBundleOfAnotherTrustDomainIsNotUsed(t *testing.T) {
	w := newWorld(t)
	bankRoot, certs := foreignRoot(t, bankTD, gateway)
	scfg := ServerConfig(NewStatic(w.server), lyingSource{mustBundle(t, bankTD, bankRoot)}, gateway)
	if serr, _ := handshake(t, scfg, clientWith(&certs[0])); !errors.Is(serr, ErrUnknownTrustDomain) {
		t.Errorf("bank's bundle handed out for pay.internal: %v", serr)
	}
}

// NewBundle binds roots to the trust domain it is given, and refuses, at
// load, a root whose certificate says otherwise.
func TestNewBundle(t *testing.T) {
	w := newWorld(t)
	noTD, _ := foreignRoot(t, spiffeid.TrustDomain{})
	bank, _ := foreignRoot(t, bankTD)
	two, _ := partnerRoot(t, []string{"spiffe://bank.internal", "spiffe://bank.internal/ca"})
	bad, _ := partnerRoot(t, []string{"spiffe://Bank.Internal"})
	withPath, _ := partnerRoot(t, []string{"spiffe://bank.internal/ca"})
	other, _ := partnerRoot(t, []string{"https://bank.example/ca"}) // not a SPIFFE ID: ignored
	leaf := issue(t, w.ca, gateway, time.Hour, time.Now()).Leaf

	for _, tc := range []struct {
		name  string
		td    spiffeid.TrustDomain
		roots []*x509.Certificate
		err   error  // errors.Is, if set
		msg   string // the error contains it ("" for success)
	}{
		{"our CA", td, []*x509.Certificate{w.ca.Root}, nil, ""},
		{"a root naming no trust domain", bankTD, []*x509.Certificate{noTD}, nil, ""},
		{"a root naming its own", bankTD, []*x509.Certificate{bank, withPath, other}, nil, ""},
		{"a root naming another", td, []*x509.Certificate{w.ca.Root, bank}, ErrRootTrustDomain, `root "CN=bank.internal root" names trust domain bank.internal, but is configured for pay.internal`},
		{"our root as bank's", bankTD, []*x509.Certificate{w.ca.Root}, ErrRootTrustDomain, "names trust domain pay.internal, but is configured for bank.internal"},
		{"two SPIFFE IDs", bankTD, []*x509.Certificate{two}, ErrRootTrustDomain, "names 2 SPIFFE IDs"},
		{"a malformed SPIFFE ID", bankTD, []*x509.Certificate{bad}, ErrRootTrustDomain, "not a SPIFFE ID"},
		{"not a CA", td, []*x509.Certificate{leaf}, nil, "is not a CA certificate"},
		{"no roots", td, nil, nil, "no roots for trust domain pay.internal"},
		{"no trust domain", spiffeid.TrustDomain{}, []*x509.Certificate{noTD}, nil, "needs a trust domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBundle(tc.td, tc.roots...)
			if tc.msg == "" {
				if err != nil || b.TrustDomain() != tc.td || len(b.X509Authorities()) != len(tc.roots) {
					t.Fatalf("NewBundle = %v, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err = %v, want %q (%v)", err, tc.msg, tc.err)
			}
		})
	}

	// From PEM, and from a file.
	dir := t.TempDir()
	file := filepath.Join(dir, "roots.pem")
	write := func(data []byte) {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pemCerts(w.ca.Root, noTD))
	if b, err := LoadBundle(td, file); err != nil || len(b.X509Authorities()) != 2 {
		t.Errorf("LoadBundle = %v, %v", b, err)
	}
	write(pemCerts(w.ca.Root, bank))
	if _, err := LoadBundle(td, file); !errors.Is(err, ErrRootTrustDomain) || !strings.HasPrefix(err.Error(), file+": ") {
		t.Errorf("LoadBundle with bank's root as pay.internal's: %v", err)
	}
	write(append(pemCerts(w.ca.Root), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})...))
	if _, err := LoadBundle(td, file); err == nil || !strings.Contains(err.Error(), `a PEM "PRIVATE KEY" among the roots of pay.internal`) {
		t.Errorf("LoadBundle with a key: %v", err)
	}
	write([]byte("nothing"))
	if _, err := LoadBundle(td, file); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("LoadBundle without PEM: %v", err)
	}
	if _, err := LoadBundle(td, filepath.Join(dir, "missing.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadBundle of a missing file: %v", err)
	}
}

// BundlesOf, for roots listed without a trust domain, binds each to the one
// it names, and refuses what would let a root speak for a trust domain
// nobody bound it to: none named, several, or one another root names too
// (the probe's pooled configuration, P2).
func TestBundlesOf(t *testing.T) {
	w := newWorld(t)
	bank, _ := foreignRoot(t, bankTD)
	noTD, _ := foreignRoot(t, spiffeid.TrustDomain{})
	claimsPay, _ := partnerRoot(t, []string{"spiffe://pay.internal"})
	both, _ := partnerRoot(t, []string{"spiffe://pay.internal", "spiffe://bank.internal"})
	other, _ := partnerRoot(t, []string{"https://bank.example/ca", "spiffe://bank.internal"})

	set, err := BundlesOf(w.ca.Root, bank)
	if err != nil || set.Len() != 2 {
		t.Fatalf("BundlesOf(ours, bank's) = %v, %v", set, err)
	}
	for d, root := range map[spiffeid.TrustDomain]*x509.Certificate{td: w.ca.Root, bankTD: bank} {
		b, ok := set.Get(d)
		if !ok || len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(root) {
			t.Errorf("bundle of %s: %v", d, b)
		}
	}
	if set, err := BundlesOf(other); err != nil || !set.Has(bankTD) {
		t.Errorf("a root with a non-SPIFFE URI besides: %v, %v", set, err)
	}
	for _, tc := range []struct {
		name  string
		roots []*x509.Certificate
		msg   string
	}{
		{"a root naming no trust domain", []*x509.Certificate{w.ca.Root, noTD}, `root "CN=root without a trust domain" names 0 SPIFFE IDs []`},
		{"a root naming two", []*x509.Certificate{both}, "names 2 SPIFFE IDs"},
		{"a partner's root claiming ours", []*x509.Certificate{w.ca.Root, claimsPay}, `root "CN=bank root" names trust domain pay.internal, which another root listed with it names too`},
		{"none", nil, "no roots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BundlesOf(tc.roots...)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (len(tc.roots) > 0 && !errors.Is(err, ErrRootTrustDomain)) {
				t.Fatalf("err = %v, want %q", err, tc.msg)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(file, pemCerts(w.ca.Root, bank), 0o600); err != nil {
		t.Fatal(err)
	}
	if set, err := LoadBundles(file); err != nil || set.Len() != 2 {
		t.Errorf("LoadBundles = %v, %v", set, err)
	}
	if err := os.WriteFile(file, pemCerts(w.ca.Root, claimsPay), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBundles(file); !errors.Is(err, ErrRootTrustDomain) || !strings.HasPrefix(err.Error(), file+": ") {
		t.Errorf("LoadBundles with a partner's root claiming ours: %v", err)
	}
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// lineServer accepts connections with cfg, writes a line on each and
// closes it.
func lineServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					io.WriteString(c, "hello\n")
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dialLine connects, reads the line (which also processes TLS 1.3
// session tickets) and reports whether the session was resumed.
func dialLine(addr string, cfg *tls.Config) (resumed bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	c := nc.(*tls.Conn)
	if _, err := io.ReadAll(c); err != nil {
		return false, err
	}
	return c.ConnectionState().DidResume, nil
}

// The peer check runs in VerifyConnection, which crypto/tls calls on
// resumed sessions too: a session resumed at an instance whose allowed
// list no longer admits the client (instances sharing session ticket
// keys, one with a new configuration) is refused.
func TestResumedSessionsAreChecked(t *testing.T) {
	for _, tv := range versions {
		t.Run(tv.name, func(t *testing.T) {
			w := newWorld(t)
			client := issue(t, w.ca, gateway, time.Hour, time.Now())
			var ticketKey [32]byte
			var mu sync.Mutex
			var calls []bool // DidResume of each server hook call
			server := func(allowed ...spiffeid.ID) string {
				cfg := ServerConfig(NewStatic(w.server), w.roots, allowed...)
				cfg.MaxVersion = tv.v
				cfg.SetSessionTicketKeys([][32]byte{ticketKey})
				hook := cfg.VerifyConnection
				cfg.VerifyConnection = func(cs tls.ConnectionState) error {
					mu.Lock()
					calls = append(calls, cs.DidResume)
					mu.Unlock()
					return hook(cs)
				}
				return lineServer(t, cfg)
			}
			before := server(gateway)
			after := server(ledger) // gateway no longer allowed

			ccfg := ClientConfig(NewStatic(client), w.roots, ledger)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			ccfg.ServerName = "ledger" // one session cache entry for both addresses
			if resumed, err := dialLine(before, ccfg); err != nil || resumed {
				t.Fatalf("first connection: resumed=%v err=%v, want a full handshake", resumed, err)
			}
			if resumed, err := dialLine(before, ccfg); err != nil || !resumed {
				t.Fatalf("second connection: resumed=%v err=%v, want a resumed session", resumed, err)
			}
			if _, err := dialLine(after, ccfg); err == nil {
				t.Fatal("a resumed session was accepted by a server that does not allow the client")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 3 || calls[0] || !calls[1] || !calls[2] {
				t.Fatalf("server hook calls saw DidResume = %v, want [false true true]", calls)
			}
		})
	}
}

func TestClientRefusals(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	client := issue(t, w.ca, gateway, time.Hour, now)
	otherCA := newCA(t, td, now.Add(-24*time.Hour))
	ccfg := ClientConfig(NewStatic(client), w.roots, ledger)
	serverWith := func(c tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{c}, ClientAuth: tls.RequireAnyClientCert}
	}
	if serr, cerr := handshake(t, serverWith(w.server), ccfg); serr != nil || cerr != nil {
		t.Fatalf("right server: server err %v, client err %v", serr, cerr)
	}
	for _, tc := range []struct {
		name  string
		cert  tls.Certificate
		check func(t *testing.T, err error)
	}{
		{"wrong server ID", issue(t, w.ca, intruder, time.Hour, now), func(t *testing.T, err error) {
			e := wantErrAs[*IDMismatchError](t, err)
			if e.Got != intruder || e.Want[0] != ledger {
				t.Fatalf("mismatch %+v", e)
			}
		}},
		{"untrusted server chain", issue(t, otherCA, ledger, time.Hour, now), func(t *testing.T, err error) {
			wantErrAs[x509.UnknownAuthorityError](t, err)
		}},
		{"expired server certificate", issue(t, w.ca, ledger, time.Hour, now.Add(-3*time.Hour)), func(t *testing.T, err error) {
			if e := wantErrAs[x509.CertificateInvalidError](t, err); e.Reason != x509.Expired {
				t.Fatalf("reason %v, want Expired", e.Reason)
			}
		}},
		{"server certificate with no SPIFFE ID", noIDCert(t, w.ca), func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "no URI SAN") {
				t.Fatalf("err = %v", err)
			}
		}},
		{"client-only certificate", clientOnlyCert(t, w.ca), func(t *testing.T, err error) {
			if e := wantErrAs[x509.CertificateInvalidError](t, err); e.Reason != x509.IncompatibleUsage {
				t.Fatalf("reason %v, want IncompatibleUsage", e.Reason)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := handshake(t, serverWith(tc.cert), ccfg)
			tc.check(t, cerr)
		})
	}
	// A chain of the right CA whose leaf is served alone (no
	// intermediate) does not verify: intermediates come from the server.
	alone := w.server
	alone.Certificate = alone.Certificate[:1]
	if _, cerr := handshake(t, serverWith(alone), ccfg); cerr == nil {
		t.Error("a leaf without its issuing certificate verified")
	}
}

func noIDCert(t *testing.T, ca *CA) tls.Certificate {
	k := newKey(t)
	now := time.Now()
	leaf := rawCert(t, &x509.Certificate{
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), DNSNames: []string{"ledger.pay.internal"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.Issuing, ca.Key, k.Public())
	return tlsCert([]*x509.Certificate{leaf, ca.Issuing}, k)
}

func clientOnlyCert(t *testing.T, ca *CA) tls.Certificate {
	k := newKey(t)
	now := time.Now()
	leaf := rawCert(t, &x509.Certificate{
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), URIs: []*url.URL{ledger.URL()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.Issuing, ca.Key, k.Public())
	return tlsCert([]*x509.Certificate{leaf, ca.Issuing}, k)
}

func TestConfigPanics(t *testing.T) {
	w := newWorld(t)
	r := NewStatic(w.server)
	for name, f := range map[string]func(){
		"server without roots":     func() { ServerConfig(r, nil) },
		"server without reloader":  func() { ServerConfig(nil, w.roots) },
		"client without roots":     func() { ClientConfig(r, nil, ledger) },
		"client without ID":        func() { ClientConfig(r, w.roots, spiffeid.ID{}) },
		"authorize without roots":  func() { Authorize(nil, gateway) },
		"authorize without IDs":    func() { Authorize(w.roots) },
		"renewal client, no certs": func() { RenewalClient(nil, nil) },
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
