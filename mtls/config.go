package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// IDMismatchError is the refusal of a peer whose verified certificate
// carries a SPIFFE ID other than the expected ones. It names both, which
// is what whoever is on call needs to know.
type IDMismatchError struct {
	// Got is the peer's ID.
	Got spiffeid.ID
	// Want are the IDs allowed.
	Want []spiffeid.ID
}

func (e *IDMismatchError) Error() string {
	s := make([]string, len(e.Want))
	for i, id := range e.Want {
		s[i] = id.String()
	}
	return fmt.Sprintf("mtls: peer SPIFFE ID %s is not allowed (want %s)", e.Got, strings.Join(s, " or "))
}

// ServerConfig returns a tls.Config for a service that accepts only mutual
// TLS: it serves r's certificate, requires a client certificate, and, in a
// VerifyConnection hook, verifies it as an X509-SVID against bundles and
// refuses a client whose SPIFFE ID is not one of allowed (if allowed is
// empty, any workload ID of a trust domain bundles has roots for).
//
// The trust rule: a client certificate for spiffe://TD/... is verified
// against the bundle bundles holds for TD, and nothing else. A bundle
// speaks only for its own trust domain, whatever its certificates say: a
// federated partner's root, even one whose certificate names
// spiffe://pay.internal, cannot vouch for pay.internal's workloads. Build
// bundles with [NewBundle] or [LoadBundle] (which also refuse, at load, a
// root that names another trust domain than its own), an
// x509bundle.Set of them for several trust domains, or use any other
// x509bundle.Source (a SPIFFE Workload API client); it is asked on every
// handshake, so its updates apply at once.
//
// The leaf must be an end-entity certificate for client authentication,
// valid at the config's Time (time.Now if nil), with one URI SAN naming a
// workload (not a bare trust domain). VerifyConnection runs on resumed
// sessions too, unlike VerifyPeerCertificate, so a resumed session is
// checked against today's bundles and list. Since the verification is
// this hook's, crypto/tls is told only to require a certificate
// (RequireAnyClientCert; it still checks that the client holds the key):
// tls.ConnectionState.VerifiedChains stays empty, and [Authorize] checks
// PeerCertificates itself. The minimum version is TLS 1.2.
//
// Do not replace VerifyConnection on the result; wrap it. ServerConfig
// panics if r or bundles is nil.
func ServerConfig(r *Reloader, bundles x509bundle.Source, allowed ...spiffeid.ID) *tls.Config {
	if r == nil || bundles == nil {
		panic("mtls: ServerConfig needs a Reloader and a bundle source")
	}
	allowed = slices.Clone(allowed)
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		// Verification is done in full by VerifyConnection, below.
		ClientAuth: tls.RequireAnyClientCert,
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := checkPeer(cs.PeerCertificates, bundles, x509.ExtKeyUsageClientAuth, allowed, configTime(cfg))
		return err
	}
	return cfg
}

// ClientConfig returns a tls.Config for calling the service server over
// mutual TLS: it presents r's certificate, and accepts only a server whose
// certificate verifies, as an X509-SVID for server authentication,
// against the bundle bundles holds for server's trust domain, and carries
// the SPIFFE ID server. The trust rule is [ServerConfig]'s: no other
// trust domain's roots can vouch for server.
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
//     the roots of server's trust domain alone (the other certificates the
//     server sent serve only as intermediates), at the config's Time
//     (time.Now if nil), for server authentication, with the CA's name
//     constraints enforced — what crypto/tls does, without the host name —
//     and checks the leaf's SPIFFE ID instead.
//   - crypto/tls calls VerifyConnection on every handshake, resumed
//     sessions included, before any application data is sent; an error
//     aborts the handshake.
//
// So never replace or drop VerifyConnection on the result (wrap it): it is
// the only verification. ClientConfig panics if r or bundles is nil or
// server is zero.
func ClientConfig(r *Reloader, bundles x509bundle.Source, server spiffeid.ID) *tls.Config {
	if r == nil || bundles == nil || server.IsZero() {
		panic("mtls: ClientConfig needs a Reloader, a bundle source and the server's SPIFFE ID")
	}
	want := []spiffeid.ID{server}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: r.GetClientCertificate,
		// Verification is done in full by VerifyConnection, below.
		InsecureSkipVerify: true,
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := checkPeer(cs.PeerCertificates, bundles, x509.ExtKeyUsageServerAuth, want, configTime(cfg))
		return err
	}
	return cfg
}

// configTime is the time a config verifies at.
func configTime(cfg *tls.Config) time.Time {
	if cfg.Time != nil {
		return cfg.Time()
	}
	return time.Now()
}

// checkPeer verifies a peer's certificates as an X509-SVID of its own
// trust domain's bundle (verifySVID) and checks that its ID is one of
// allowed, if any are given.
func checkPeer(certs []*x509.Certificate, bundles x509bundle.Source, usage x509.ExtKeyUsage, allowed []spiffeid.ID, now time.Time) (spiffeid.ID, error) {
	id, _, err := verifySVID(certs, bundles, usage, now)
	if err != nil {
		return id, err
	}
	if len(allowed) > 0 && !slices.Contains(allowed, id) {
		return id, &IDMismatchError{Got: id, Want: allowed}
	}
	return id, nil
}
