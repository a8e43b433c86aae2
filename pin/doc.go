// Package pin implements certificate and public-key pinning for TLS clients:
// a client that pins its server's key refuses a certificate from a
// compromised or coerced CA even though every CA check passes.
//
// # Pins
//
// A [Pin] is the SHA-256 digest of a certificate's DER SubjectPublicKeyInfo,
// written "sha256/<standard base64>" — the format of HPKP (RFC 7469 §2.4),
// OkHttp, Android and TrustKit — or, as an explicit second kind, the SHA-256
// fingerprint of a whole certificate, written "cert-sha256:<hex>". Compute
// pins with [FromCertificate], [FromPublicKey], [FromPrivateKey], [FromCSR]
// and [Fingerprint]; read them with [Parse].
//
// # Policies
//
// A [Policy] maps host names to rules ([Domain]): the pins, whether the rule
// covers subdomains, enforce or report-only [Mode], an optional expiry, and
// a report URI. Policies are files in YAML or JSON ([ParsePolicy],
// [LoadPolicy]) or built in code ([NewPolicy]); they are checked when loaded:
// an enforced rule needs a backup pin unless it opts out, report URIs must
// be https and not on the pinned domain itself, unknown fields are errors.
//
// # Verification
//
// A [Verifier] checks connections against a policy from a
// tls.Config.VerifyConnection hook, so that:
//
//   - crypto/tls first verifies the chain and host name against the
//     configured roots; pinning only narrows what that accepts, and a
//     private CA is trusted through RootCAs, never by skipping verification;
//   - pins are matched against the verified chains, never against the
//     certificates the server sent (CVE-2016-2402), and a root the server
//     never sent matches;
//   - resumed sessions are checked too; [Verifier.SetPolicy] invalidates
//     session caches and closes the live connections the new pins refuse,
//     through a proxy too, and re-checks handshakes it overtook;
//   - every entry point matches a server name in one normal form
//     ([CanonicalHost]: trailing dots stripped, empty labels refused), so no
//     spelling of a pinned name escapes its rule;
//   - an expired pin set falls back to CA validation with a warning;
//   - in report-only mode failures are reported and the connection proceeds.
//
// Use [Verifier.Client] or [Verifier.Transport] for HTTP (HTTP/1.1 and
// HTTP/2), [Verifier.DialContext] for raw TLS, or [Verifier.TLSConfig] to pin
// a tls.Config used elsewhere. A client from [Verifier.Client] does not follow
// a redirect from a pinned host to an unpinned one ([ErrUnpinnedRedirect]),
// and a transport refuses a base ServerName that would pin every URL under
// one name ([ErrServerNameSet]). A refused connection fails with a
// [*MismatchError] listing the verified chain's pins and the expected ones.
//
// # Reports
//
// Every pin validation failure, in both modes, goes to the Verifier's
// [Reporter]. Package [github.com/rampartsec/rampart/pin/report] sends them
// as RFC 7469 §3 reports, asynchronously and at most once a day per
// distinct failure.
package pin
