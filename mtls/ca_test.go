package mtls

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func verifyAt(t *testing.T, ca *CA, chain []*x509.Certificate, at time.Time) error {
	t.Helper()
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: pool(ca.Root), Intermediates: pool(chain[1:]...), CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

func TestNewCA(t *testing.T) {
	ca := newCA(t, td, t0)
	r, i := ca.Root, ca.Issuing
	if !r.IsCA || r.MaxPathLen != 1 || !i.IsCA || i.MaxPathLen != 0 || !i.MaxPathLenZero {
		t.Errorf("path length constraints: root IsCA=%v MaxPathLen=%d; issuing IsCA=%v MaxPathLen=%d zero=%v",
			r.IsCA, r.MaxPathLen, i.IsCA, i.MaxPathLen, i.MaxPathLenZero)
	}
	if got := r.NotAfter.Sub(t0); got != RootLifetime {
		t.Errorf("root lifetime %v, want %v", got, RootLifetime)
	}
	if got := i.NotAfter.Sub(t0); got != IssuingLifetime {
		t.Errorf("issuing lifetime %v, want %v", got, IssuingLifetime)
	}
	if err := i.CheckSignatureFrom(r); err != nil {
		t.Errorf("issuing not signed by root: %v", err)
	}
	for _, c := range []*x509.Certificate{r, i} {
		if len(c.PermittedURIDomains) != 1 || c.PermittedURIDomains[0] != "pay.internal" || !c.PermittedDNSDomainsCritical {
			t.Errorf("%s: permitted URI domains %v (critical %v)", c.Subject.CommonName, c.PermittedURIDomains, c.PermittedDNSDomainsCritical)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://pay.internal" {
			t.Errorf("%s: URI SANs %v, want spiffe://pay.internal", c.Subject.CommonName, c.URIs)
		}
		if _, err := NewBundle(td, c); err != nil {
			t.Errorf("%s: not a root of pay.internal: %v", c.Subject.CommonName, err)
		}
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	if _, _, err := NewCA(spiffeid.TrustDomain{}, t0); err == nil {
		t.Error("NewCA without a trust domain succeeded")
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t, td, t0)
	k := newKey(t)
	now := t0.Add(time.Hour)
	chain, err := ca.Issue(ledger, []string{"ledger.pay.internal"}, 24*time.Hour, k.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[1] != ca.Issuing {
		t.Fatalf("chain of %d, want leaf and issuing certificate", len(chain))
	}
	leaf := chain[0]
	if id, err := IDOf(leaf); err != nil || id != ledger {
		t.Errorf("IDOf = %v, %v; want %v", id, err, ledger)
	}
	if len(leaf.URIs) != 1 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "ledger.pay.internal" {
		t.Errorf("SANs: URIs %v DNS %v", leaf.URIs, leaf.DNSNames)
	}
	if !leaf.NotBefore.Equal(now.Add(-time.Minute)) || !leaf.NotAfter.Equal(now.Add(24*time.Hour)) {
		t.Errorf("validity %v to %v, want %v to %v", leaf.NotBefore, leaf.NotAfter, now.Add(-time.Minute), now.Add(24*time.Hour))
	}
	if leaf.IsCA || len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("IsCA %v, ExtKeyUsage %v", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if err := verifyAt(t, ca, chain, now); err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	if err := verifyAt(t, ca, chain, now.Add(25*time.Hour)); err == nil {
		t.Error("chain verifies after expiry")
	}
	// What SPIFFE libraries make of it: a valid X509-SVID.
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.Root})
	if id, _, err := x509svid.Verify(chain, bundle, x509svid.WithTime(now)); err != nil || id != ledger {
		t.Errorf("x509svid.Verify = %v, %v", id, err)
	}

	// Capped at the issuing certificate's expiry.
	late := ca.Issuing.NotAfter.Add(-time.Hour)
	chain, err = ca.Issue(ledger, nil, 24*time.Hour, k.Public(), late)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(ca.Issuing.NotAfter) {
		t.Errorf("NotAfter %v, want the issuing certificate's %v", chain[0].NotAfter, ca.Issuing.NotAfter)
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := newCA(t, td, t0)
	k := newKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	other := spiffeid.RequireFromString("spiffe://bank.internal/ns/prod/sa/ledger")
	sub := spiffeid.RequireFromString("spiffe://evil.pay.internal/x")
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name string
		id   spiffeid.ID
		dns  []string
		ttl  time.Duration
		pub  any
		now  time.Time
		want string
	}{
		{"other trust domain", other, nil, time.Hour, k.Public(), now, "outside the CA's trust domain"},
		{"subdomain trust domain", sub, nil, time.Hour, k.Public(), now, "outside the CA's trust domain"},
		{"trust domain ID", td.ID(), nil, time.Hour, k.Public(), now, "names the trust domain"},
		{"zero ID", spiffeid.ID{}, nil, time.Hour, k.Public(), now, "no SPIFFE ID"},
		{"zero ttl", ledger, nil, 0, k.Public(), now, "lifetime 0s"},
		{"negative ttl", ledger, nil, -time.Hour, k.Public(), now, "lifetime -1h0m0s"},
		{"ttl over 30 days", ledger, nil, MaxTTL + time.Second, k.Public(), now, "at most 720h0m0s"},
		{"bad DNS name", ledger, []string{"a b.test"}, time.Hour, k.Public(), now, `DNS name "a b.test"`},
		{"empty DNS name", ledger, []string{""}, time.Hour, k.Public(), now, `DNS name ""`},
		{"weak RSA key", ledger, nil, time.Hour, &rsaKey.PublicKey, now, "RSA key of 1024 bits"},
		{"no key", ledger, nil, time.Hour, nil, now, "no public key"},
		{"before the CA", ledger, nil, time.Hour, k.Public(), t0.Add(-time.Hour), "not valid now"},
		{"after the CA", ledger, nil, time.Hour, k.Public(), ca.Issuing.NotAfter, "not valid now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Issue(tc.id, tc.dns, tc.ttl, tc.pub, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mtls: ") {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ca.Issue(other, nil, time.Hour, k.Public(), now); !errors.Is(err, ErrOutsideTrustDomain) {
		t.Errorf("err = %v, want ErrOutsideTrustDomain", err)
	}
	if _, err := ca.Issue(ledger, nil, time.Hour, k.Public(), ca.Issuing.NotAfter); !errors.Is(err, ErrCANotValid) {
		t.Errorf("err = %v, want ErrCANotValid", err)
	}
	if _, err := ca.Issue(ledger, []string{"*.ledger.test", "x-1.test"}, MaxTTL, edPub, now); err != nil {
		t.Errorf("wildcard DNS, Ed25519 key, MaxTTL: %v", err)
	}
}

// The name constraints hold even against the issuing key itself: a
// certificate for another trust domain (or a subdomain, which is another
// trust domain) does not verify.
func TestNameConstraints(t *testing.T) {
	ca := newCA(t, td, t0)
	k := newKey(t)
	now := t0.Add(time.Hour)
	for _, u := range []string{"spiffe://bank.internal/ns/prod/sa/ledger", "spiffe://evil.pay.internal/x", "spiffe://pay.internal.evil/x"} {
		t.Run(u, func(t *testing.T) {
			uri, _ := url.Parse(u)
			leaf := rawCert(t, &x509.Certificate{
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), URIs: []*url.URL{uri},
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}, ca.Issuing, ca.Key, k.Public())
			err := verifyAt(t, ca, []*x509.Certificate{leaf, ca.Issuing}, now)
			if _, ok := errors.AsType[x509.CertificateInvalidError](err); !ok || !strings.Contains(err.Error(), "not authorized to sign for this name") {
				t.Fatalf("err = %v, want a name constraint violation", err)
			}
		})
	}
	// The constraint is on URIs: an in-domain ID with any DNS name is fine.
	chain, err := ca.Issue(ledger, []string{"ledger.example.com"}, time.Hour, k.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyAt(t, ca, chain, now); err != nil {
		t.Fatal(err)
	}
}

func TestIssueCSR(t *testing.T) {
	ca := newCA(t, td, t0)
	k := newKey(t)
	now := t0.Add(time.Hour)
	csr := func(tmpl *x509.CertificateRequest) *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := csr(&x509.CertificateRequest{URIs: []*url.URL{ledger.URL()}, DNSNames: []string{"ledger.pay.internal"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})
	chain, err := ca.IssueCSR(good, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := IDOf(chain[0]); id != ledger || chain[0].DNSNames[0] != "ledger.pay.internal" || !k.PublicKey.Equal(chain[0].PublicKey) {
		t.Errorf("issued %v %v for another key or ID", chain[0].URIs, chain[0].DNSNames)
	}
	if len(chain[0].IPAddresses) != 1 || !chain[0].IPAddresses[0].Equal(net.IPv4(10, 0, 0, 1)) {
		t.Errorf("issued IP addresses %v, want 10.0.0.1", chain[0].IPAddresses)
	}
	if err := verifyAt(t, ca, chain, now); err != nil {
		t.Error(err)
	}

	tampered := csr(&x509.CertificateRequest{URIs: []*url.URL{ledger.URL()}})
	tampered.Signature[len(tampered.Signature)-3] ^= 1
	other, _ := url.Parse("spiffe://bank.internal/x")
	notSpiffe, _ := url.Parse("https://pay.internal/x")
	for _, tc := range []struct {
		name string
		csr  *x509.CertificateRequest
		want string
	}{
		{"bad signature", tampered, "signature"},
		{"no URI", csr(&x509.CertificateRequest{DNSNames: []string{"a.test"}}), "0 URI SANs"},
		{"two URIs", csr(&x509.CertificateRequest{URIs: []*url.URL{ledger.URL(), gateway.URL()}}), "2 URI SANs"},
		{"not SPIFFE", csr(&x509.CertificateRequest{URIs: []*url.URL{notSpiffe}}), "URI SAN"},
		{"other trust domain", csr(&x509.CertificateRequest{URIs: []*url.URL{other}}), "outside the CA's trust domain"},
		{"email SAN", csr(&x509.CertificateRequest{URIs: []*url.URL{ledger.URL()}, EmailAddresses: []string{"ops@pay.test"}}), "email SANs"},
		{"nil", nil, "no certificate request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.IssueCSR(tc.csr, time.Hour, now); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestIDOf(t *testing.T) {
	k := newKey(t)
	now := time.Now()
	mk := func(uris ...string) *x509.Certificate {
		var us []*url.URL
		for _, s := range uris {
			u, _ := url.Parse(s)
			us = append(us, u)
		}
		tmpl := &x509.Certificate{NotBefore: now, NotAfter: now.Add(time.Hour), URIs: us, DNSNames: []string{"x.test"}}
		return rawCert(t, tmpl, tmpl, k, k.Public())
	}
	if id, err := IDOf(mk(ledger.String())); err != nil || id != ledger {
		t.Errorf("IDOf = %v, %v", id, err)
	}
	for name, c := range map[string]*x509.Certificate{
		"none":       mk(),
		"two":        mk(ledger.String(), gateway.String()),
		"not SPIFFE": mk("https://pay.internal/x"),
		"nil":        nil,
	} {
		if _, err := IDOf(c); err == nil || !strings.HasPrefix(err.Error(), "mtls: ") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
