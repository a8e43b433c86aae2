package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Lifetimes of what the CA makes.
const (
	// MaxTTL is the longest lifetime of a workload certificate: they are
	// meant to be short-lived and renewed, never revoked.
	MaxTTL = 30 * 24 * time.Hour
	// DefaultTTL is a sensible lifetime for workload certificates, renewed
	// after about 16 hours.
	DefaultTTL = 24 * time.Hour
	// RootLifetime and IssuingLifetime are the validity of the root and
	// of the issuing certificate NewCA makes.
	RootLifetime    = 10 * 365 * 24 * time.Hour
	IssuingLifetime = 365 * 24 * time.Hour
	// Backdate is how far before the issuing time certificates become
	// valid, for peers whose clocks are a little behind.
	Backdate = time.Minute
)

// ErrOutsideTrustDomain is returned when asked for a certificate whose
// SPIFFE ID is not in the CA's trust domain.
var ErrOutsideTrustDomain = newError("SPIFFE ID outside the CA's trust domain")

// ErrCANotValid is returned by [CA.Issue] when the issuing certificate is
// not valid at the given time (expired, most likely): a fault of the CA,
// not of the request.
var ErrCANotValid = newError("the issuing CA certificate is not valid now")

// CA is a small internal certificate authority: a root, whose key is kept
// offline, and an issuing intermediate that signs workload certificates.
// The issuing certificate may sign only for TrustDomain (a URI name
// constraint, checked by every verifier), and only end-entity certificates
// (path length 0).
//
// A CA is safe for concurrent use; its fields must not change after first
// use.
type CA struct {
	// Root is the trust anchor workloads verify their peers against.
	Root *x509.Certificate
	// Issuing signs workload certificates; Key is its private key.
	Issuing *x509.Certificate
	Key     crypto.Signer
	// TrustDomain is the domain of every ID the CA issues for, such as
	// pay.internal.
	TrustDomain spiffeid.TrustDomain
}

// NewCA makes a CA for td at time now: an ECDSA P-256 root valid
// [RootLifetime] and an issuing certificate valid [IssuingLifetime], both
// carrying td's SPIFFE ID (spiffe://td) as their URI SAN. It returns the
// root's private key separately: keep it offline, it is needed only to make
// a new issuing certificate.
//
// Both certificates permit URI names in td alone (and not its
// subdomains, which are other trust domains): a stolen issuing key cannot
// mint a certificate that verifies for another trust domain. DNS names are
// not constrained.
func NewCA(td spiffeid.TrustDomain, now time.Time) (ca *CA, rootKey crypto.Signer, err error) {
	if td.IsZero() {
		return nil, nil, newError("NewCA needs a trust domain")
	}
	rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, errorf("%w", err)
	}
	issuingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, errorf("%w", err)
	}
	rootTmpl := constrain(td, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Rampart"}, CommonName: td.Name() + " root CA"},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		URIs:                  []*url.URL{td.ID().URL()},
	})
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, nil, errorf("making the root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, errorf("%w", err)
	}
	issuing, err := newIssuing(root, rootKey, issuingKey, now)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Root: root, Issuing: issuing, Key: issuingKey, TrustDomain: td}, rootKey, nil
}

// constrain limits c, a CA certificate, to URI names in td (and not its
// subdomains, which are other trust domains).
func constrain(td spiffeid.TrustDomain, c *x509.Certificate) *x509.Certificate {
	c.PermittedDNSDomainsCritical = true // RFC 5280 §4.2.1.10: MUST be critical
	c.PermittedURIDomains = []string{td.Name()}
	c.ExcludedURIDomains = []string{"." + td.Name()}
	return c
}

// newIssuing signs an issuing certificate for key with root's key rootKey,
// valid [IssuingLifetime] from now but never past the root, for the root's
// trust domain.
func newIssuing(root *x509.Certificate, rootKey crypto.Signer, key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	if len(root.URIs) != 1 {
		return nil, newError("the root names no trust domain")
	}
	td, err := spiffeid.TrustDomainFromURI(root.URIs[0])
	if err != nil {
		return nil, errorf("the root's trust domain: %w", err)
	}
	notAfter := now.Add(IssuingLifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl := constrain(td, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Rampart"}, CommonName: td.Name() + " issuing CA"},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{td.ID().URL()},
	})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, errorf("making the issuing certificate: %w", err)
	}
	issuing, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return issuing, nil
}

// ErrNotRootKey is returned by [CA.Rotate] when the key given is not the
// root's.
var ErrNotRootKey = newError("the key is not the root's private key")

// Rotate makes a new issuing key and certificate under ca's root, which
// rootKey (the root's private key, brought back from offline for this)
// signs, valid [IssuingLifetime] from now or until the root expires if
// that is sooner. It returns a CA that issues with them; ca is unchanged.
//
// Rotate before the issuing certificate expires: [CA.Issue] caps every
// certificate at its expiry, and refuses once it has passed. Workload
// certificates the old issuing CA signed keep verifying under the same
// root until they expire, since their chains carry it; nothing needs to
// be redistributed but the new chains, which renewal brings.
func (ca *CA) Rotate(rootKey crypto.Signer, now time.Time) (*CA, error) {
	if ca == nil || ca.Root == nil {
		return nil, newError("Rotate needs a CA with a root")
	}
	pub, ok := ca.Root.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if rootKey == nil || !ok || !pub.Equal(rootKey.Public()) {
		return nil, ErrNotRootKey
	}
	if now.Before(ca.Root.NotBefore) || !now.Before(ca.Root.NotAfter) {
		return nil, errorf("the root is not valid now (it is valid from %s to %s): make a new CA",
			ca.Root.NotBefore.UTC().Format(time.RFC3339), ca.Root.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, errorf("%w", err)
	}
	issuing, err := newIssuing(ca.Root, rootKey, key, now)
	if err != nil {
		return nil, err
	}
	return &CA{Root: ca.Root, Issuing: issuing, Key: key, TrustDomain: ca.TrustDomain}, nil
}

// Issue signs a certificate for the workload id with public key pub, valid
// from now (less [Backdate]) for ttl, or until the issuing certificate
// expires if that is sooner. The certificate carries id as its one URI SAN
// and names (optional) as further SANs: a DNS name as a DNS SAN, an IP
// address (192.0.2.1, 2001:db8::1, as netip.ParseAddr reads them) as an IP
// SAN. It may serve as both a TLS server and client certificate, and
// starts a renewal lineage ([LineageOf]): its renewals at a
// [RenewHandler] keep ttl, and stop after the handler's
// [RenewPolicy.MaxLineage]. Issue returns the certificate followed by the
// issuing certificate: the chain a workload serves.
//
// Issue refuses an id outside the CA's trust domain
// ([ErrOutsideTrustDomain]) or naming the trust domain itself, a ttl that
// is not positive or exceeds [MaxTTL], malformed names, weak keys (RSA
// under 2048 bits, unknown types), and any time at which the issuing
// certificate is not valid ([ErrCANotValid]).
func (ca *CA) Issue(id spiffeid.ID, names []string, ttl time.Duration, pub crypto.PublicKey, now time.Time) ([]*x509.Certificate, error) {
	var dns []string
	var ips []net.IP
	for _, n := range names {
		ip, err := parseIP(n)
		switch {
		case err != nil:
			return nil, err
		case ip != nil:
			ips = append(ips, ip)
		default:
			dns = append(dns, n)
		}
	}
	return ca.issue(id, dns, ips, ttl, pub, now, Lineage{Since: now, TTL: ttl})
}

// parseIP returns the IP address s spells, nil if it is not one.
func parseIP(s string) (net.IP, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, nil
	}
	if a.Zone() != "" {
		return nil, errorf("IP address %q: a zone has no place in a certificate", s)
	}
	return net.IP(a.Unmap().AsSlice()), nil
}

// issue signs a certificate as Issue does, in lineage lin.
func (ca *CA) issue(id spiffeid.ID, dnsNames []string, ips []net.IP, ttl time.Duration, pub crypto.PublicKey, now time.Time, lin Lineage) ([]*x509.Certificate, error) {
	if ca == nil || ca.Issuing == nil || ca.Key == nil {
		return nil, newError("CA without an issuing certificate and key")
	}
	if id.IsZero() {
		return nil, newError("no SPIFFE ID to issue for")
	}
	if !id.MemberOf(ca.TrustDomain) {
		return nil, fmt.Errorf("%w: %s is not in %s", ErrOutsideTrustDomain, id, ca.TrustDomain)
	}
	if id.Path() == "" {
		return nil, errorf("%s names the trust domain, not a workload", id)
	}
	if ttl <= 0 || ttl > MaxTTL {
		return nil, errorf("lifetime %v: want more than 0 and at most %v", ttl, MaxTTL)
	}
	for _, n := range dnsNames {
		if err := checkDNSName(n); err != nil {
			return nil, err
		}
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	if now.Before(ca.Issuing.NotBefore) || !now.Before(ca.Issuing.NotAfter) {
		return nil, fmt.Errorf("%w (it is valid from %s to %s)", ErrCANotValid,
			ca.Issuing.NotBefore.UTC().Format(time.RFC3339), ca.Issuing.NotAfter.UTC().Format(time.RFC3339))
	}
	ext, err := lin.extension()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(ca.Issuing.NotBefore) {
		notBefore = ca.Issuing.NotBefore
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Issuing.NotAfter) {
		notAfter = ca.Issuing.NotAfter
	}
	tmpl := &x509.Certificate{
		// No subject, as in SPIFFE's X509-SVIDs: the identity is the URI
		// SAN (an empty subject makes the SAN extension critical).
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              slices.Clone(dnsNames),
		IPAddresses:           slices.Clone(ips),
		ExtraExtensions:       []pkix.Extension{ext},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Issuing, pub, ca.Key)
	if err != nil {
		return nil, errorf("signing the certificate for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return []*x509.Certificate{leaf, ca.Issuing}, nil
}

// IssueCSR issues a certificate, as [CA.Issue] does, for a certificate
// request: its signature must verify, and it must carry exactly one URI
// SAN, a SPIFFE ID in the CA's trust domain, and optionally DNS and IP
// SANs. The request's subject and extensions are ignored; email SANs are
// refused.
func (ca *CA) IssueCSR(csr *x509.CertificateRequest, ttl time.Duration, now time.Time) ([]*x509.Certificate, error) {
	id, err := csrID(csr)
	if err != nil {
		return nil, err
	}
	return ca.issue(id, csr.DNSNames, csr.IPAddresses, ttl, csr.PublicKey, now, Lineage{Since: now, TTL: ttl})
}

// csrID checks a request's signature and returns its SPIFFE ID.
func csrID(csr *x509.CertificateRequest) (spiffeid.ID, error) {
	if csr == nil {
		return spiffeid.ID{}, newError("no certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return spiffeid.ID{}, errorf("certificate request signature: %w", err)
	}
	if len(csr.EmailAddresses) > 0 {
		return spiffeid.ID{}, newError("certificate request with email SANs: only a SPIFFE ID, DNS names and IP addresses are issued")
	}
	if len(csr.URIs) != 1 {
		return spiffeid.ID{}, errorf("certificate request with %d URI SANs, want exactly one SPIFFE ID", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return spiffeid.ID{}, errorf("certificate request URI SAN: %w", err)
	}
	return id, nil
}

// IDOf returns the SPIFFE ID of a certificate: its URI SAN, which must be
// the only one and a valid SPIFFE ID. It does not verify the certificate.
func IDOf(cert *x509.Certificate) (spiffeid.ID, error) {
	if cert == nil {
		return spiffeid.ID{}, newError("no certificate")
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return spiffeid.ID{}, errorf("%w", err)
	}
	return id, nil
}

// checkDNSName accepts host names (letters, digits, hyphens; a leading
// "*." label for a wildcard), which is what TLS clients can match.
func checkDNSName(name string) error {
	bad := func(why string) error { return errorf("DNS name %q: %s", name, why) }
	if name == "" || len(name) > 253 {
		return bad("want 1 to 253 characters")
	}
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("empty or over-long label")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("a label starts or ends with a hyphen")
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return bad("only letters, digits, hyphens and dots, with an optional leading *.")
			}
		}
	}
	return nil
}

// checkPublicKey refuses keys a workload should not have.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return newError("ECDSA key on an unsupported curve")
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return nil
	case nil:
		return newError("no public key")
	}
	return errorf("unsupported public key type %T", pub)
}
