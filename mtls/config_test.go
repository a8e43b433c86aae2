package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// world is a CA with a server and certificates for clients.
type world struct {
	ca     *CA
	roots  *x509.CertPool
	server tls.Certificate // ledger's
}

func newWorld(t *testing.T) *world {
	now := time.Now()
	ca := newCA(t, td, now.Add(-24*time.Hour))
	return &world{ca: ca, roots: pool(ca.Root), server: issue(t, ca, ledger, time.Hour, now)}
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

// With no allowed list, a server accepts any workload of the trust domain
// named by the root its chain verified to, and no other: a trusted root of
// another organization cannot vouch for pay.internal IDs.
func TestServerTrustDomains(t *testing.T) {
	w := newWorld(t)
	bank := spiffeid.RequireTrustDomainFromString("bank.internal")
	bankRoot, certs := foreignRoot(t, bank, spiffeid.RequireFromPath(bank, "/teller"), gateway)
	bankClient, forged := certs[0], certs[1] // forged: bank's root vouching for a pay.internal ID
	scfg := ServerConfig(NewStatic(w.server), pool(w.ca.Root, bankRoot))
	for name, c := range map[string]tls.Certificate{
		"pay.internal workload":  issue(t, w.ca, intruder, time.Hour, time.Now()),
		"bank.internal workload": bankClient,
	} {
		if serr, cerr := handshake(t, scfg, clientWith(&c)); serr != nil || cerr != nil {
			t.Errorf("%s: server err %v, client err %v", name, serr, cerr)
		}
	}
	serr, _ := handshake(t, scfg, clientWith(&forged))
	e := wantErrAs[*IDMismatchError](t, serr)
	if e.Got != gateway || len(e.TrustDomains) != 1 || e.TrustDomains[0] != bank {
		t.Fatalf("mismatch %+v", e)
	}
	if !strings.Contains(serr.Error(), "want an ID in trust domain bank.internal") {
		t.Errorf("message %q", serr)
	}
}

// A list of allowed IDs does not let another trust domain's root speak
// for them: in a federated pool, bank.internal's CA (a real root, with no
// name constraints) issuing spiffe://pay.internal/... is refused by the
// server, by Authorize and by the client, though the ID is listed. A root
// that names no trust domain vouches for listed IDs only.
func TestTrustDomainBinding(t *testing.T) {
	w := newWorld(t)
	bank := spiffeid.RequireTrustDomainFromString("bank.internal")
	bankRoot, certs := foreignRoot(t, bank, gateway, ledger)
	forgedClient, forgedServer := certs[0], certs[1]
	roots := pool(w.ca.Root, bankRoot)

	scfg := ServerConfig(NewStatic(w.server), roots, gateway)
	serr, _ := handshake(t, scfg, clientWith(&forgedClient))
	e := wantErrAs[*IDMismatchError](t, serr)
	if e.Got != gateway || len(e.TrustDomains) != 1 || e.TrustDomains[0] != bank {
		t.Errorf("mismatch %+v", e)
	}
	if want := "mtls: peer SPIFFE ID spiffe://pay.internal/ns/prod/sa/gateway is vouched for by a root of trust domain bank.internal, not of its own"; serr.Error() != want {
		t.Errorf("message %q, want %q", serr, want)
	}
	// The real gateway still gets in.
	real := issue(t, w.ca, gateway, time.Hour, time.Now())
	if serr, cerr := handshake(t, scfg, clientWith(&real)); serr != nil || cerr != nil {
		t.Errorf("the real gateway: %v, %v", serr, cerr)
	}

	// Authorize, behind a server that lets any verified client through.
	open := ServerConfig(NewStatic(w.server), roots)
	open.VerifyConnection = nil
	var through bool
	addr := serveTLS(t, open, Authorize(gateway)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { through = true })))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientWith(&forgedClient)}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if through || resp.StatusCode != http.StatusForbidden {
		t.Errorf("Authorize(gateway) with the forged certificate: %d, handler reached %v", resp.StatusCode, through)
	}

	// The client side: a server vouched for by bank's root.
	ccfg := ClientConfig(NewStatic(real), roots, ledger)
	bad := &tls.Config{Certificates: []tls.Certificate{forgedServer}, ClientAuth: tls.RequireAnyClientCert}
	_, cerr := handshake(t, bad, ccfg)
	wantErrAs[*IDMismatchError](t, cerr)

	// A root that names no trust domain: listed IDs only.
	anon, anonCerts := foreignRoot(t, spiffeid.TrustDomain{}, gateway)
	anonRoots := pool(w.ca.Root, anon)
	if serr, cerr := handshake(t, ServerConfig(NewStatic(w.server), anonRoots, gateway), clientWith(&anonCerts[0])); serr != nil || cerr != nil {
		t.Errorf("a listed ID from a root without a trust domain: %v, %v", serr, cerr)
	}
	serr, _ = handshake(t, ServerConfig(NewStatic(w.server), anonRoots), clientWith(&anonCerts[0]))
	if !strings.Contains(fmt.Sprint(serr), "which names none") {
		t.Errorf("no list, a root without a trust domain: %v", serr)
	}
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
		"server without roots":    func() { ServerConfig(r, nil) },
		"server without reloader": func() { ServerConfig(nil, w.roots) },
		"client without roots":    func() { ClientConfig(r, nil, ledger) },
		"client without ID":       func() { ClientConfig(r, w.roots, spiffeid.ID{}) },
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
