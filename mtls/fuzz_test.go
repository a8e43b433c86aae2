package mtls

import (
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/url"
	"testing"
	"time"
)

// Whatever certificate request comes in, IssueCSR either refuses it or
// issues a certificate that verifies to the root, carries exactly one URI
// SAN — the request's, a workload ID of the trust domain — no IP or email
// SANs, and lives no longer than asked.
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
		if len(leaf.IPAddresses) > 0 || len(leaf.EmailAddresses) > 0 || leaf.IsCA || leaf.NotAfter.After(now.Add(time.Hour)) {
			t.Fatalf("issued %+v", leaf)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
			t.Fatalf("issued a certificate that does not verify: %v", err)
		}
	})
}
