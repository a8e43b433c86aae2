package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/mtls"
)

// partner is another organization's CA, without name constraints, whose
// root certificate carries the URI SANs uris: it can mint any ID.
type partner struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPartner(t *testing.T, uris ...string) *partner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bank root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	for _, s := range uris {
		u, _ := url.Parse(s)
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &partner{root: root, key: k}
}

// static is a Reloader holding the partner's certificate for id.
func (p *partner) static(t *testing.T, id spiffeid.ID) *mtls.Reloader {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{id.URL()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, p.root, k.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return mtls.NewStatic(tls.Certificate{Certificate: [][]byte{der, p.root.Raw}, PrivateKey: k, Leaf: leaf})
}

// P2 at the gateway: an upstream's certificate verifies against the roots
// of its own trust domain alone, and which roots those are is the
// configuration's word: identity.roots binds each root to the one trust
// domain it names, identity.bundles binds files by name. A partner's root
// cannot vouch for pay.internal's payments service: pooled with ours it
// speaks for its own trust domain only, and a root that would speak for
// ours, or for nobody in particular, is refused at load.
func TestIdentityRootsByTrustDomain(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	bankTD := spiffeid.RequireTrustDomainFromString("bank.internal")
	bankLedger := spiffeid.RequireFromPath(bankTD, "/ledger")
	dir := t.TempDir()
	certFile, keyFile, rootsFile := pki.writeIdentity(t, dir, "gw", gatewayID)
	write := func(name string, certs ...*x509.Certificate) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, testpki.CertPEM(certs...), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	bank := newPartner(t, "spiffe://bank.internal")
	claimsPay := newPartner(t, "spiffe://pay.internal")
	anonymous := newPartner(t)
	bankFile, claimsPayFile, anonFile := write("bank.pem", bank.root), write("claims-pay.pem", claimsPay.root), write("anon.pem", anonymous.root)

	identity := func(roots string, bundles ...string) string {
		s := fmt.Sprintf("identity:\n  cert: %s\n  key: %s\n", certFile, keyFile)
		if roots != "" {
			s += "  roots: " + roots + "\n"
		}
		if len(bundles) > 0 {
			s += "  bundles: {" + strings.Join(bundles, ", ") + "}\n"
		}
		return s
	}
	build := func(yml string) error {
		e, err := buildEdge(t, t.TempDir(), yml)
		if err == nil {
			e.Close()
		}
		return err
	}

	// Refused at load.
	ours := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
	route := "routes:\n" + httpsRoute("/v1/", ours.URL, "auth: none")
	for _, tc := range []struct{ name, yml, want string }{
		{"a partner's root claiming pay.internal, pooled with ours", identity(write("pooled-claims.pem", pki.ca.Root, claimsPay.root)) + route,
			`root "CN=bank root" names trust domain pay.internal, which another root listed with it names too`},
		{"a partner's root naming no trust domain, pooled with ours", identity(write("pooled-anon.pem", pki.ca.Root, anonymous.root)) + route,
			`root "CN=bank root" names 0 SPIFFE IDs [], and nothing else says which trust domain it is for`},
		{"a partner's root claiming pay.internal, bound to bank.internal", identity(rootsFile, "bank.internal: "+claimsPayFile) + route,
			"bundles: " + claimsPayFile + `: mtls: a root names another trust domain than the one it is configured for: root "CN=bank root" names trust domain pay.internal, but is configured for bank.internal`},
		{"a trust domain in roots and bundles", identity(rootsFile, "pay.internal: "+rootsFile) + route,
			"pay.internal has roots in identity.roots too"},
		{"an upstream of a trust domain without roots", identity(rootsFile) + "routes:\n" +
			"  - prefix: /bank/\n    upstream: " + ours.URL + "\n    upstream_id: spiffe://bank.internal/ledger\n    auth: none\n",
			`route "/bank/": upstream_id spiffe://bank.internal/ledger: no roots for trust domain bank.internal: add identity.bundles: {bank.internal: FILE}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := build(tc.yml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := build(identity(write("pooled-claims.pem", pki.ca.Root, claimsPay.root)) + route); !errors.Is(err, mtls.ErrRootTrustDomain) {
		t.Errorf("pooled roots: %v, want mtls.ErrRootTrustDomain", err)
	}
	if _, err := Parse([]byte(identity(rootsFile, "Bank.Internal: "+bankFile) + route)); err == nil || !strings.Contains(err.Error(), `identity.bundles: trust domain "Bank.Internal"`) {
		t.Errorf("a malformed trust domain in bundles: %v", err)
	}

	// Bank's ledger is reached with bank's roots, pooled with ours (bank's
	// root names bank.internal) or bound by name (a root naming none);
	// bank's root minting our payments service is refused (502, the
	// service never sees the request).
	for name, id := range map[string]string{
		"pooled":         identity(write("pooled-bank.pem", pki.ca.Root, bank.root)),
		"bound by name":  identity(rootsFile, "bank.internal: "+bankFile),
		"anonymous root": identity("", "pay.internal: "+rootsFile, "bank.internal: "+anonFile),
	} {
		t.Run(name, func(t *testing.T) {
			p := bank
			if name == "anonymous root" {
				p = anonymous
			}
			bankUp := startUpstream(t, p.static(t, bankLedger), pki.roots, gatewayID)
			forged := startUpstream(t, p.static(t, paymentsID), pki.roots, gatewayID)
			gw := startEdge(t, t.TempDir(), id+"routes:\n"+
				httpsRoute("/v1/", ours.URL, "auth: none")+
				"  - prefix: /bank/\n    upstream: "+bankUp.URL+"\n    upstream_id: "+bankLedger.String()+"\n    auth: none\n"+
				httpsRoute("/forged/", forged.URL, "auth: none"))
			resp, body := gw.get(t, "/v1/payments")
			wantStatus(t, resp, body, http.StatusOK)
			resp, body = gw.get(t, "/bank/ledger")
			wantStatus(t, resp, body, http.StatusOK)
			resp, body = gw.get(t, "/forged/payments")
			wantProblem(t, resp, body, http.StatusBadGateway)
			if n := forged.requests(); n != 0 {
				t.Errorf("the forged upstream got %d requests", n)
			}
		})
	}
}
