package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	bankTD = spiffeid.RequireTrustDomainFromString("bank.internal")
	teller = spiffeid.RequireFromPath(bankTD, "/teller")
)

// partnerRoot is a root of another organization whose certificate carries
// the URI SANs uris (no name constraints), and certificates it issued for
// ids: what a federated partner, or whoever holds its root key, can make.
func partnerRoot(t testing.TB, uris []string, ids ...spiffeid.ID) (*x509.Certificate, []tls.Certificate) {
	t.Helper()
	rk := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "bank root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	root := rawCert(t, tmpl, tmpl, rk, rk.Public())
	var certs []tls.Certificate
	for _, id := range ids {
		lk := newKey(t)
		leaf := rawCert(t, &x509.Certificate{
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), URIs: []*url.URL{id.URL()},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		}, root, rk, lk.Public())
		certs = append(certs, tlsCert([]*x509.Certificate{leaf, root}, lk))
	}
	return root, certs
}

// The probe's table (finding P2): our CA (pay.internal) and a federated
// partner's root, configured for bank.internal, which mints a certificate
// for spiffe://pay.internal/ns/prod/sa/gateway. Whatever the partner's root
// names — bank.internal, pay.internal, both, or nothing — it vouches for
// bank.internal's IDs alone: the forged gateway is refused by
// ServerConfig with the ID listed and with no list, by Authorize, and, as a
// server, by ClientConfig, over real TLS handshakes. A root that names
// another trust domain than the one it is configured for is refused at
// load. SPIFFE X509-SVID specification, "Validation": an SVID is verified
// against the bundle of its own trust domain.
func TestFederatedRootClaimsOurTrustDomain(t *testing.T) {
	for _, row := range []struct {
		name      string
		uris      []string
		loadErr   bool // NewBundle(bank.internal, root) refuses it
		pooledErr bool // BundlesOf(our root, root), a pool without trust domains, refuses it
	}{
		{"partner root names bank.internal (control)", []string{"spiffe://bank.internal"}, false, false},
		{"partner root names pay.internal", []string{"spiffe://pay.internal"}, true, true},
		{"partner root names pay.internal and bank.internal", []string{"spiffe://pay.internal", "spiffe://bank.internal"}, true, true},
		{"partner root names no trust domain", nil, false, true},
	} {
		t.Run(row.name, func(t *testing.T) {
			w := newWorld(t)
			root, certs := partnerRoot(t, row.uris, gateway, ledger, teller)
			forgedClient, forgedServer, bankTeller := certs[0], certs[1], certs[2]
			realGateway := issue(t, w.ca, gateway, time.Hour, time.Now())

			_, err := NewBundle(bankTD, root)
			if row.loadErr != (err != nil) {
				t.Fatalf("NewBundle(bank.internal, partner root) = %v, want an error: %v", err, row.loadErr)
			}
			if row.loadErr && !errors.Is(err, ErrRootTrustDomain) {
				t.Errorf("load error %v, want ErrRootTrustDomain", err)
			}
			// Pooled with ours, without trust domains (the old
			// configurations): each root is bound to the one trust domain it
			// names, or refused.
			pooled, err := BundlesOf(w.ca.Root, root)
			if row.pooledErr != (err != nil) || (err != nil && !errors.Is(err, ErrRootTrustDomain)) {
				t.Fatalf("BundlesOf(our root, partner root) = %v, %v; want an error: %v", pooled, err, row.pooledErr)
			}
			if err == nil {
				if b, _ := pooled.Get(td); len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(w.ca.Root) {
					t.Errorf("pay.internal's bundle from the pool holds %d roots", len(b.X509Authorities()))
				}
			}
			// Whatever the load check says, the handshake rule holds on its
			// own: the partner's bundle built without it.
			ours, err := NewBundle(td, w.ca.Root)
			if err != nil {
				t.Fatal(err)
			}
			set := x509bundle.NewSet(ours, x509bundle.FromX509Authorities(bankTD, []*x509.Certificate{root}))

			for _, server := range []struct {
				name    string
				allowed []spiffeid.ID
			}{{"ServerConfig(gateway)", []spiffeid.ID{gateway}}, {"ServerConfig()", nil}} {
				scfg := ServerConfig(NewStatic(w.server), set, server.allowed...)
				serr, cerr := handshake(t, scfg, clientWith(&forgedClient))
				if serr == nil || cerr == nil {
					t.Errorf("%s: the partner's certificate for %s was accepted", server.name, gateway)
				} else {
					wantErrAs[x509.UnknownAuthorityError](t, serr)
				}
				if serr, cerr := handshake(t, scfg, clientWith(&realGateway)); serr != nil || cerr != nil {
					t.Errorf("%s: the real gateway: %v, %v", server.name, serr, cerr)
				}
			}
			// Federation still works for the partner's own IDs.
			if serr, cerr := handshake(t, ServerConfig(NewStatic(w.server), set), clientWith(&bankTeller)); serr != nil || cerr != nil {
				t.Errorf("ServerConfig(): the partner's %s: %v, %v", teller, serr, cerr)
			}
			if serr, cerr := handshake(t, ServerConfig(NewStatic(w.server), set, teller), clientWith(&bankTeller)); serr != nil || cerr != nil {
				t.Errorf("ServerConfig(teller): the partner's %s: %v, %v", teller, serr, cerr)
			}

			// Authorize, behind servers that let the certificate through
			// the handshake: one that only asks for it, and one whose pool
			// holds both roots (the pooled configuration of old).
			for name, cfg := range map[string]*tls.Config{
				"RequireAnyClientCert":           {Certificates: []tls.Certificate{w.server}, ClientAuth: tls.RequireAnyClientCert},
				"VerifyClientCertIfGiven (pool)": {Certificates: []tls.Certificate{w.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool(w.ca.Root, root)},
			} {
				var reached atomic.Bool
				addr := serveTLS(t, cfg, Authorize(set, gateway)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Store(true) })))
				for who, c := range map[string]tls.Certificate{"forged": forgedClient, "real": realGateway} {
					reached.Store(false)
					code, _ := get(t, &http.Client{Transport: &http.Transport{TLSClientConfig: clientWith(&c)}}, "https://"+addr+"/")
					want := http.StatusOK
					if who == "forged" {
						want = http.StatusForbidden
					}
					if code != want || reached.Load() != (want == http.StatusOK) {
						t.Errorf("Authorize(gateway) behind %s, %s gateway: %d (handler reached %v), want %d", name, who, code, reached.Load(), want)
					}
				}
			}

			// ClientConfig: a server the partner vouches for as ledger.
			ccfg := ClientConfig(NewStatic(realGateway), set, ledger)
			_, cerr := handshake(t, &tls.Config{Certificates: []tls.Certificate{forgedServer}, ClientAuth: tls.RequireAnyClientCert}, ccfg)
			if cerr == nil {
				t.Errorf("ClientConfig(ledger): the partner's server certificate for %s was accepted", ledger)
			} else {
				wantErrAs[x509.UnknownAuthorityError](t, cerr)
			}
			if serr, cerr := handshake(t, &tls.Config{Certificates: []tls.Certificate{w.server}, ClientAuth: tls.RequireAnyClientCert}, ccfg); serr != nil || cerr != nil {
				t.Errorf("ClientConfig(ledger): the real ledger: %v, %v", serr, cerr)
			}
		})
	}
}
