package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// IDMismatchError is the refusal of a peer whose verified certificate
// carries a SPIFFE ID other than the expected ones. It names both, which
// is what whoever is on call needs to know.
type IDMismatchError struct {
	// Got is the peer's ID.
	Got spiffeid.ID
	// Want are the IDs allowed; when empty, any ID of TrustDomains was.
	Want []spiffeid.ID
	// TrustDomains are the trust domains of the roots the peer's chains
	// verified to (empty if those roots name none).
	TrustDomains []spiffeid.TrustDomain
}

func (e *IDMismatchError) Error() string {
	names := func(tds []spiffeid.TrustDomain) string {
		s := make([]string, len(tds))
		for i, td := range tds {
			s[i] = td.Name()
		}
		return strings.Join(s, " or ")
	}
	if slices.Contains(e.Want, e.Got) {
		// Listed, but vouched for by another trust domain's root.
		return fmt.Sprintf("mtls: peer SPIFFE ID %s is vouched for by a root of trust domain %s, not of its own", e.Got, names(e.TrustDomains))
	}
	var want string
	switch {
	case len(e.Want) > 0:
		s := make([]string, len(e.Want))
		for i, id := range e.Want {
			s[i] = id.String()
		}
		want = strings.Join(s, " or ")
	case len(e.TrustDomains) > 0:
		want = "an ID in trust domain " + names(e.TrustDomains)
	default:
		want = "an ID in the trust domain of its root, which names none (its certificate has no spiffe://TRUST-DOMAIN URI SAN): list the allowed IDs"
	}
	return fmt.Sprintf("mtls: peer SPIFFE ID %s is not allowed (want %s)", e.Got, want)
}

// ServerConfig returns a tls.Config for a service that accepts only mutual
// TLS: it serves r's certificate, requires a client certificate that
// verifies against roots, and, in a VerifyConnection hook, refuses a
// client whose certificate's SPIFFE ID is not one of allowed (any ID, if
// allowed is empty) or is not in the trust domain of the root its chain
// verified to (the root's spiffe://TRUST-DOMAIN URI SAN, as NewCA and
// SPIRE make them): with the roots of several trust domains in one pool,
// each vouches only for its own. A root that names no trust domain
// vouches only for the IDs listed. VerifyConnection runs on resumed
// sessions too, unlike VerifyPeerCertificate. The minimum version is TLS
// 1.2.
//
// Do not replace VerifyConnection on the result; wrap it. ServerConfig
// panics if r or roots is nil: a nil pool would mean the system roots.
func ServerConfig(r *Reloader, roots *x509.CertPool, allowed ...spiffeid.ID) *tls.Config {
	if r == nil || roots == nil {
		panic("mtls: ServerConfig needs a Reloader and a root pool")
	}
	allowed = slices.Clone(allowed)
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 {
				return errors.New("mtls: no verified client certificate")
			}
			_, err := checkPeer(cs.VerifiedChains, allowed)
			return err
		},
	}
}

// ClientConfig returns a tls.Config for calling the service server over
// mutual TLS: it presents r's certificate, and accepts only a server whose
// certificate chain verifies against roots and carries the SPIFFE ID
// server.
//
// Host name verification does not apply to SPIFFE identities (a workload
// certificate may have no DNS name at all), so the config sets
// InsecureSkipVerify and does all of the verification itself in
// VerifyConnection. That is as safe as crypto/tls's own verification:
//
//   - InsecureSkipVerify turns off only crypto/tls's chain and host name
//     checks. The handshake still proves that the server holds the private
//     key of the leaf it sent (its CertificateVerify or key exchange
//     signature is always checked).
//   - VerifyConnection then verifies that leaf with x509.Verify against
//     roots alone (the other certificates the server sent serve only as
//     intermediates), at the current time, for server authentication, with
//     the CA's name constraints enforced — what crypto/tls does, without
//     the host name — and checks the leaf's SPIFFE ID instead.
//   - crypto/tls calls VerifyConnection on every handshake, resumed
//     sessions included, before any application data is sent; an error
//     aborts the handshake.
//
// So never replace or drop VerifyConnection on the result (wrap it): it is
// the only verification. ClientConfig panics if r or roots is nil or
// server is zero.
func ClientConfig(r *Reloader, roots *x509.CertPool, server spiffeid.ID) *tls.Config {
	if r == nil || roots == nil || server.IsZero() {
		panic("mtls: ClientConfig needs a Reloader, a root pool and the server's SPIFFE ID")
	}
	want := []spiffeid.ID{server}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: r.GetClientCertificate,
		RootCAs:              roots,
		// Verification is done in full by VerifyConnection, below.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) == 0 {
				return errors.New("mtls: the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			chains, err := certs[0].Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: inter,
				CurrentTime:   time.Now(),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("mtls: server certificate: %w", err)
			}
			_, err = checkPeer(chains, want)
			return err
		},
	}
}

// checkPeer checks the leaf of verified chains: an end-entity certificate
// with a workload SPIFFE ID, vouched for by a root of the ID's own trust
// domain, and one of allowed if any are given.
//
// A root that names its trust domain (a spiffe://TRUST-DOMAIN URI SAN, as
// rampart ca's and SPIRE's do) vouches only for IDs in it, list or no
// list: with several trust domains' roots in one pool (federation), one
// domain's CA cannot speak for another's workloads. A root that names none
// vouches for the IDs listed in allowed, and for nothing without a list.
func checkPeer(chains [][]*x509.Certificate, allowed []spiffeid.ID) (spiffeid.ID, error) {
	leaf := chains[0][0]
	if leaf.IsCA {
		return spiffeid.ID{}, errors.New("mtls: peer certificate is a CA certificate")
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mtls: peer certificate: %w", err)
	}
	if id.Path() == "" {
		return id, fmt.Errorf("mtls: peer SPIFFE ID %s names a trust domain, not a workload", id)
	}
	listed := len(allowed) > 0 && slices.Contains(allowed, id)
	if len(allowed) > 0 && !listed {
		return id, &IDMismatchError{Got: id, Want: allowed}
	}
	var tds []spiffeid.TrustDomain
	for _, chain := range chains {
		td, ok := trustDomainOf(chain[len(chain)-1])
		if !ok {
			if listed {
				return id, nil
			}
			continue
		}
		if id.MemberOf(td) {
			return id, nil
		}
		if !slices.Contains(tds, td) {
			tds = append(tds, td)
		}
	}
	return id, &IDMismatchError{Got: id, Want: allowed, TrustDomains: tds}
}

// trustDomainOf returns the trust domain a CA certificate names with a
// spiffe://TRUST-DOMAIN URI SAN.
func trustDomainOf(ca *x509.Certificate) (spiffeid.TrustDomain, bool) {
	for _, u := range ca.URIs {
		if id, err := spiffeid.FromURI(u); err == nil && id.Path() == "" {
			return id.TrustDomain(), true
		}
	}
	return spiffeid.TrustDomain{}, false
}
