package mtls

import (
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Whatever certificate request comes in, IssueCSR either refuses it or
// issues a certificate that verifies to the root, carries exactly one URI
// SAN — the request's, a workload ID of the trust domain — the request's
// DNS names and IP addresses, no email SANs, and lives no longer than
// asked.
func FuzzIssueCSR(f *testing.F) {
	k := newKey(f)
	other, _ := url.Parse("spiffe://bank.internal/x")
	for _, tmpl := range []*x509.CertificateRequest{
		{URIs: []*url.URL{ledger.URL()}, DNSNames: []string{"ledger.pay.internal"}},
		{URIs: []*url.URL{ledger.URL(), gateway.URL()}},
		{URIs: []*url.URL{other}},
		{URIs: []*url.URL{td.ID().URL()}},
		{URIs: []*url.URL{ledger.URL()}, IPAddresses: []net.IP{net.IPv6loopback}},
		{URIs: []*url.URL{ledger.URL()}, DNSNames: []string{"*.x.test", "-bad-.test"}},
	} {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	ca := newCA(f, td, t0)
	now := t0.Add(time.Hour)
	roots, inter := pool(ca.Root), pool(ca.Issuing)
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		chain, err := ca.IssueCSR(csr, time.Hour, now)
		if err != nil {
			return
		}
		leaf := chain[0]
		if len(leaf.URIs) != 1 || len(csr.URIs) != 1 || leaf.URIs[0].String() != csr.URIs[0].String() {
			t.Fatalf("issued URIs %v for requested %v", leaf.URIs, csr.URIs)
		}
		id, err := IDOf(leaf)
		if err != nil || !id.MemberOf(td) || id.Path() == "" {
			t.Fatalf("issued for %v (%v)", id, err)
		}
		if len(leaf.EmailAddresses) > 0 || leaf.IsCA || leaf.NotAfter.After(now.Add(time.Hour)) {
			t.Fatalf("issued %+v", leaf)
		}
		if !slices.Equal(leaf.DNSNames, csr.DNSNames) || !slices.EqualFunc(leaf.IPAddresses, csr.IPAddresses, net.IP.Equal) {
			t.Fatalf("issued names %v %v for requested %v %v", leaf.DNSNames, leaf.IPAddresses, csr.DNSNames, csr.IPAddresses)
		}
		if l, ok := LineageOf(leaf); !ok || !l.Since.Equal(now.Truncate(time.Second)) || l.TTL != time.Hour {
			t.Fatalf("issued lineage %+v %v, want since %v for 1h", l, ok, now)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
			t.Fatalf("issued a certificate that does not verify: %v", err)
		}
	})
}

// Whatever PEM comes in as pay.internal's roots, ParseBundle either
// refuses it or returns pay.internal's bundle of CA certificates, none of
// which names another trust domain, or more than one SPIFFE ID; and
// ParseBundles either refuses it or returns one bundle per trust domain,
// of one CA certificate naming exactly that trust domain.
func FuzzParseBundle(f *testing.F) {
	ca := newCA(f, td, t0)
	bank, _ := foreignRoot(f, bankTD)
	anon, _ := foreignRoot(f, spiffeid.TrustDomain{})
	f.Add(pemCerts(ca.Root))
	f.Add(pemCerts(ca.Root, anon))
	f.Add(pemCerts(bank))
	f.Add(pemCerts(ca.Root, ca.Issuing))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if set, err := ParseBundles(data); err == nil {
			for _, b := range set.Bundles() {
				roots := b.X509Authorities()
				if len(roots) != 1 || !roots[0].IsCA || len(roots[0].URIs) == 0 {
					t.Fatalf("bundle of %v: %d roots", b.TrustDomain(), len(roots))
				}
				n := 0
				for _, u := range roots[0].URIs {
					if u.Scheme == "spiffe" {
						n++
						if id, err := spiffeid.FromURI(u); err != nil || id.TrustDomain() != b.TrustDomain() {
							t.Fatalf("a root naming %v in the bundle of %v", u, b.TrustDomain())
						}
					}
				}
				if n != 1 {
					t.Fatalf("a root with %d SPIFFE IDs", n)
				}
			}
		}
		b, err := ParseBundle(td, data)
		if err != nil {
			return
		}
		if b.TrustDomain() != td || b.Empty() {
			t.Fatalf("bundle of %v, empty %v", b.TrustDomain(), b.Empty())
		}
		for _, c := range b.X509Authorities() {
			if !c.IsCA {
				t.Fatalf("a root that is not a CA: %v", c.Subject)
			}
			n := 0
			for _, u := range c.URIs {
				if u.Scheme != "spiffe" {
					continue
				}
				n++
				if id, err := spiffeid.FromURI(u); err != nil || id.TrustDomain() != td {
					t.Fatalf("a root naming %v accepted as pay.internal's", u)
				}
			}
			if n > 1 {
				t.Fatalf("a root with %d SPIFFE IDs accepted", n)
			}
		}
	})
}
