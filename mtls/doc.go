// Package mtls gives services an identity and lets them talk to each other
// over mutual TLS: a small internal CA issuing short-lived certificates
// named by SPIFFE IDs, certificates that renew or reload while serving,
// and authorization by peer identity.
//
// # Identities
//
// A workload is named by a SPIFFE ID such as
// spiffe://pay.internal/ns/prod/sa/ledger (package
// [github.com/spiffe/go-spiffe/v2/spiffeid]), carried as the one URI SAN of
// its certificate (an X509-SVID, so Istio, Linkerd and SPIRE peers
// understand it). [IDOf] reads it back.
//
// # The CA
//
// A [CA] is a root, kept offline, and an issuing intermediate that signs
// workload certificates ([NewCA], [CA.Issue], [CA.IssueCSR]). The issuing
// certificate is name-constrained to its trust domain: even with its key,
// nobody can mint a certificate that verifies for another trust domain.
// Certificates are short-lived (at most [MaxTTL]); a workload renews its
// own with [RenewHandler] and [Renewer], authenticated by the certificate it
// holds. The rampart command line keeps a CA on disk (rampart ca init,
// rampart ca issue) and rampart serve offers the renewal endpoint.
//
// # Serving and calling
//
// A [Reloader] holds a service's current certificate and swaps it
// atomically, either reloading files when they change or renewing at two
// thirds of the certificate's lifetime; handshakes in flight are never
// disturbed. [ServerConfig] and [ClientConfig] build tls.Configs that
// require a certificate from the peer, verify it against a root pool, and
// check its SPIFFE ID in a VerifyConnection hook, which crypto/tls runs on
// resumed sessions too. A refused peer fails with an [*IDMismatchError]
// naming the ID it presented and the ones expected.
//
// # Authorization
//
// [Authorize] is net/http middleware that lets through only requests whose
// verified client certificate carries one of a list of SPIFFE IDs, and
// puts that ID in the request context ([PeerID]).
package mtls
