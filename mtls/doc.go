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
// # Trust: one bundle per trust domain
//
// Peers are verified against trust bundles keyed by trust domain
// ([github.com/spiffe/go-spiffe/v2/bundle/x509bundle]: a Bundle, a Set of
// them, or any Source, such as a SPIFFE Workload API client). A peer
// certificate for spiffe://TD/... is verified against the bundle of TD
// alone: a bundle vouches only for IDs of its own trust domain, whatever
// its certificates say. Which roots speak for which trust domain is the
// relying party's configuration, never the roots' own word: [NewBundle]
// and [LoadBundle] bind roots to the trust domain they are given, and
// refuse, at load, a root whose certificate names another one
// ([ErrRootTrustDomain]); for a list of roots that comes without trust
// domains, [BundlesOf] and [LoadBundles] bind each root to the one trust
// domain it names, and refuse roots that name none or several, and two
// roots naming the same. So a federated partner's root, configured for
// bank.internal, cannot mint pay.internal's workloads, even if its
// certificate claims spiffe://pay.internal. [ServerConfig], [ClientConfig]
// and [Authorize] apply the same rule.
//
// # The CA
//
// A [CA] is a root, kept offline, and an issuing intermediate that signs
// workload certificates ([NewCA], [CA.Issue], [CA.IssueCSR]). The issuing
// certificate is name-constrained to its trust domain: even with its key,
// nobody can mint a certificate that verifies for another trust domain.
// Certificates are short-lived (at most [MaxTTL]); a workload renews its
// own with [RenewHandler] and [Renewer], authenticated by the certificate it
// holds. A renewal keeps the lifetime the first certificate was issued with
// and its lineage ([LineageOf]), and renewal stops [RenewPolicy.MaxLineage]
// after the first issuance, so that a stolen key does not keep its identity
// for ever. The rampart command line keeps a CA on disk (rampart ca init,
// rampart ca issue), renews certificate files for programs that are not Go
// (rampart ca renew), and rampart serve offers the renewal endpoint.
//
// # Serving and calling
//
// A [Reloader] holds a service's current certificate and swaps it
// atomically, either reloading files when they change or renewing at two
// thirds of the certificate's lifetime; handshakes in flight are never
// disturbed. [ServerConfig] and [ClientConfig] build tls.Configs that
// require a certificate from the peer, verify it against the bundle of its
// trust domain, and check its SPIFFE ID, in a VerifyConnection hook, which
// crypto/tls runs on resumed sessions too. A refused peer fails with an
// [*IDMismatchError] naming the ID it presented and the ones expected, or
// an error wrapping the x509 verification error.
//
// # Authorization
//
// [Authorize] is net/http middleware that lets through only requests whose
// client certificate verifies against the bundle of its trust domain and
// carries one of a list of SPIFFE IDs, and puts that ID in the request
// context ([PeerID]).
package mtls
