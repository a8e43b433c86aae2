package mtls

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrRootTrustDomain is the refusal, by [NewBundle], [ParseBundle] and
// [LoadBundle], of a root certificate that names a trust domain other than
// the one it is configured for (or several): a partner's root that claims
// spiffe://pay.internal cannot be loaded as bank.internal's.
var ErrRootTrustDomain = newError("a root names another trust domain than the one it is configured for")

// ErrUnknownTrustDomain is the refusal of a peer whose SPIFFE ID is in a
// trust domain the bundle source has no roots for.
var ErrUnknownTrustDomain = newError("no roots for the peer's trust domain")

// NewBundle returns the trust bundle of td: roots, which vouch for SPIFFE
// IDs of td alone. The binding is the caller's (configuration), never the
// certificates' word; what a root says is only checked against it. Each
// root must be a CA certificate, and name td or no trust domain: one
// whose spiffe:// URI SANs name another trust domain, or more than one ID,
// is refused with [ErrRootTrustDomain].
func NewBundle(td spiffeid.TrustDomain, roots ...*x509.Certificate) (*x509bundle.Bundle, error) {
	if td.IsZero() {
		return nil, newError("a bundle needs a trust domain")
	}
	if len(roots) == 0 {
		return nil, errorf("no roots for trust domain %s", td.Name())
	}
	for _, root := range roots {
		if err := checkRoot(td, root); err != nil {
			return nil, err
		}
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}

// checkRoot refuses a root that cannot serve as td's.
func checkRoot(td spiffeid.TrustDomain, root *x509.Certificate) error {
	if root == nil {
		return newError("a nil root")
	}
	name := rootName(root)
	if !root.BasicConstraintsValid || !root.IsCA {
		return errorf("root %s is not a CA certificate", name)
	}
	var ids []string
	for _, u := range root.URIs {
		if u.Scheme == "spiffe" {
			ids = append(ids, u.String())
		}
	}
	switch len(ids) {
	case 0:
		return nil // bound to td by the configuration alone
	case 1:
		id, err := spiffeid.FromString(ids[0])
		if err != nil {
			return fmt.Errorf("%w: root %s names %s, which is not a SPIFFE ID (%v); configured for %s", ErrRootTrustDomain, name, ids[0], err, td.Name())
		}
		if id.TrustDomain() != td {
			return fmt.Errorf("%w: root %s names trust domain %s, but is configured for %s", ErrRootTrustDomain, name, id.TrustDomain().Name(), td.Name())
		}
		return nil
	}
	return fmt.Errorf("%w: root %s names %d SPIFFE IDs (%v), configured for %s: a root names one trust domain at most", ErrRootTrustDomain, name, len(ids), ids, td.Name())
}

func rootName(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("with serial %x", c.SerialNumber)
}

// BundlesOf binds roots that come without a trust domain (a file of roots
// in a configuration that does not say whose they are) to the one each
// names: every root must be a CA certificate whose URI SANs hold exactly
// one SPIFFE ID, spiffe://TRUST-DOMAIN, as those of rampart ca init and
// SPIRE do, and no two roots may name the same trust domain. Anything else
// is refused with [ErrRootTrustDomain]: a root that names no trust domain
// would speak for whichever one its holder mints, and a second root
// naming ours — a partner's claiming pay.internal — would speak for ours.
// Bind such roots explicitly with [NewBundle] (several roots of one trust
// domain, as during a root rollover, included).
func BundlesOf(roots ...*x509.Certificate) (*x509bundle.Set, error) {
	if len(roots) == 0 {
		return nil, newError("no roots")
	}
	set := x509bundle.NewSet()
	for _, root := range roots {
		if root == nil {
			return nil, newError("a nil root")
		}
		var ids []string
		for _, u := range root.URIs {
			if u.Scheme == "spiffe" {
				ids = append(ids, u.String())
			}
		}
		if len(ids) != 1 {
			return nil, fmt.Errorf("%w: root %s names %d SPIFFE IDs %v, and nothing else says which trust domain it is for: a root listed without one names exactly one (spiffe://TRUST-DOMAIN), or is bound to one explicitly",
				ErrRootTrustDomain, rootName(root), len(ids), ids)
		}
		id, err := spiffeid.FromString(ids[0])
		if err != nil {
			return nil, fmt.Errorf("%w: root %s names %s, which is not a SPIFFE ID (%v)", ErrRootTrustDomain, rootName(root), ids[0], err)
		}
		td := id.TrustDomain()
		if set.Has(td) {
			return nil, fmt.Errorf("%w: root %s names trust domain %s, which another root listed with it names too: bind the roots of one trust domain to it explicitly",
				ErrRootTrustDomain, rootName(root), td.Name())
		}
		b, err := NewBundle(td, root)
		if err != nil {
			return nil, err
		}
		set.Add(b)
	}
	return set, nil
}

// ParseBundle reads PEM certificates as the roots of td ([NewBundle]).
// Anything but CERTIFICATE blocks is refused.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*x509bundle.Bundle, error) {
	roots, err := parseRoots(data, " of "+td.Name())
	if err != nil {
		return nil, err
	}
	return NewBundle(td, roots...)
}

// ParseBundles reads PEM certificates as roots that name their trust
// domains ([BundlesOf]).
func ParseBundles(data []byte) (*x509bundle.Set, error) {
	roots, err := parseRoots(data, "")
	if err != nil {
		return nil, err
	}
	return BundlesOf(roots...)
}

// LoadBundles reads a PEM file of roots that name their trust domains
// ([ParseBundles]).
func LoadBundles(file string) (*x509bundle.Set, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, errorf("%w", err)
	}
	s, err := ParseBundles(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// parseRoots reads PEM certificates, of which there must be one at least;
// whose names them in errors (" of pay.internal").
func parseRoots(data []byte, whose string) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, errorf("a PEM %q among the roots%s, want CERTIFICATE", b.Type, whose)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, errorf("a root%s: %w", whose, err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, errorf("no PEM certificate for the roots%s", whose)
	}
	return roots, nil
}

// LoadBundle reads a PEM file of roots as the bundle of td
// ([ParseBundle]).
func LoadBundle(td spiffeid.TrustDomain, file string) (*x509bundle.Bundle, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, errorf("%w", err)
	}
	b, err := ParseBundle(td, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return b, nil
}

// verifySVID verifies certs, a peer's certificates as sent (leaf first,
// then intermediates), as an X509-SVID for usage at now, by the SPIFFE
// X509-SVID specification's validation rules (those of go-spiffe's
// x509svid.Verify, which does not check the extended key usage): the leaf
// is an end-entity certificate (not a CA, no keyCertSign or cRLSign) whose
// one URI SAN is the SPIFFE ID of a workload, and its chain verifies
// against the bundle of that ID's own trust domain, and nothing else. So a
// root vouches only for IDs of the trust domain its bundle is for,
// whatever its certificate says.
func verifySVID(certs []*x509.Certificate, bundles x509bundle.Source, usage x509.ExtKeyUsage, now time.Time) (spiffeid.ID, [][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return spiffeid.ID{}, nil, newError("the peer sent no certificate")
	}
	leaf := certs[0]
	if leaf.IsCA {
		return spiffeid.ID{}, nil, newError("peer certificate is a CA certificate")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return spiffeid.ID{}, nil, newError("peer certificate may sign certificates or CRLs")
	}
	id, err := IDOf(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, errorf("peer certificate: %w", err)
	}
	if id.Path() == "" {
		return id, nil, errorf("peer SPIFFE ID %s names a trust domain, not a workload", id)
	}
	td := id.TrustDomain()
	bundle, err := bundles.GetX509BundleForTrustDomain(td)
	if err != nil || bundle == nil || bundle.TrustDomain() != td {
		return id, nil, fmt.Errorf("%w: peer SPIFFE ID %s is in trust domain %s", ErrUnknownTrustDomain, id, td.Name())
	}
	roots := x509.NewCertPool()
	for _, c := range bundle.X509Authorities() {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return id, nil, errorf("peer certificate for %s does not verify against the roots of trust domain %s: %w", id, td.Name(), err)
	}
	return id, chains, nil
}
