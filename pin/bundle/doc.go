// Package bundle implements signed pin bundles: pin policies that a
// control plane distributes to clients, so that pins can change without
// shipping a new client, while the pins built into the client stay the
// floor.
//
// An operator signs a bundle with [Sign]; a client checks it with
// [Verify] against the public keys it ships with ([Keys]), or lets an
// [Updater] fetch, check and apply bundles to its [pin.Verifier].
//
// # Format
//
// A bundle is a JWS (RFC 7515) in compact serialization, with exactly one
// signature:
//
//	BASE64URL(protected header) "." BASE64URL(payload) "." BASE64URL(signature)
//
// The protected header has exactly three members,
//
//	{"alg":"ES256","kid":"<thumbprint>","typ":"rampart-pin-bundle+jws"}
//
// where:
//
//   - alg is ES256 (ECDSA P-256, the default), ES384 (ECDSA P-384) or EdDSA
//     (Ed25519), and is the one algorithm of the key that kid names. No
//     other value is ever accepted: not "none", not HMAC, not RSA.
//   - kid is the RFC 7638 JWK thumbprint, SHA-256, base64url without
//     padding, of the signing public key ([KeyID]).
//   - typ is [Type] (explicit typing, RFC 8725 §3.11), so that no other JWS
//     signed with the same key passes for a bundle. It is required, and
//     compared as RFC 7515 §4.1.9 says: without regard to case, with or
//     without an "application/" prefix.
//
// Other header members (crit, b64, jwk, jku, x5c...) are refused. The
// payload is a JSON object with exactly these members:
//
//	{
//	  "bundle":  "mobile",       // name: [a-z0-9][a-z0-9._-]{0,63}
//	  "version": 7,              // integer >= 1, increasing with each bundle of a name
//	  "iat":     1764000000,     // issue time, NumericDate (integer seconds)
//	  "exp":     1766600000,     // expiry, NumericDate, after iat, at most 366 days after it
//	  "policy":  {"version":1, "report_uri":"https://...", "domains":[...]}
//	}
//
// policy is a pin policy in exactly the schema of a policy file, as
// [pin.Policy.MarshalJSON] writes it and [pin.ParsePolicy] reads it, with
// all of its rules (an enforced rule needs a backup pin, and so on), and
// no rule may set include_subdomains on a public suffix ("test", "co.uk":
// it would pin every site registered under it). exp is at most
// [MaxLifetime] (366 days) after iat. Unknown, missing or duplicated
// members are errors.
//
// To verify a bundle with any JOSE library: refuse input over [MaxSize]
// bytes; parse it as a compact JWS allowing only ES256, ES384 and EdDSA;
// require typ "rampart-pin-bundle+jws"; find the trusted public key whose
// RFC 7638 thumbprint is kid and require alg to be that key's algorithm;
// verify the signature; decode the payload strictly; check the bundle name
// is the one you expect; refuse exp - iat over 366 days ([MaxLifetime]);
// refuse it when now >= exp, or when iat is more than five minutes
// ([ClockSkew]) in the future; refuse a version below the highest you have
// accepted or below the minimum the client ships with, and the same
// version with other content.
//
// # Keys
//
// [GenerateKey] makes a signing key, [MarshalPrivateKey] and
// [ParsePrivateKey] store it (keep it offline or in a KMS: [Sign] takes any
// crypto.Signer), and [MarshalPublicKey] writes its public half, which
// clients embed. [ParseKeys] reads public keys as PEM "PUBLIC KEY" blocks,
// a JWK or a JWK Set, and refuses private keys. Trust several keys to
// rotate the signing key: ship the new public key next to the old one,
// sign with the new key, drop the old one in a later release.
//
// # Updater
//
// An [Updater] polls the control plane for the bundle of one name and
// keeps a [pin.Verifier]'s policy current:
//
//   - The connection to the control plane is pinned by the embedded policy
//     alone: the Updater refuses to run ([ErrControlPlaneNotPinned]) when
//     that policy has no enforced rule for the control plane's host, and
//     a bundle never changes how the control plane itself is pinned. When
//     that rule's Expires date has passed, the connection would get CA
//     validation only, so the Updater stops fetching: every
//     [Updater.Update] fails with ErrControlPlaneNotPinned, logged at error
//     level, and the bundle in effect stays until it expires.
//   - The effective policy is the embedded policy with each rule that the
//     bundle also names (same domain) replaced by the bundle's rule, and
//     the bundle's other rules added. A bundle cannot unpin a host by
//     leaving it out. The default report URI is the bundle's if it has one,
//     else the embedded policy's; a rule keeps the report URI it had in its
//     own policy. The combination is validated by [pin.NewPolicy]; a bundle
//     whose combination is invalid is refused.
//   - A bundle is refused when it does not verify ([Verify]), is for
//     another name ([ErrWrongName]), has a version lower than the highest
//     accepted or than MinVersion, or the same version with other content
//     ([ErrRollback]).
//     The same bundle again changes nothing. A refused bundle changes
//     nothing but the Updater's [State].
//   - Applying a policy goes through [pin.Verifier.SetPolicy], which also
//     stops the resumption of TLS sessions made under the old pins and
//     closes connections the new pins refuse.
//   - The last accepted bundle is kept in CacheFile (mode 0600, written to a
//     temporary file, synced and renamed into place). [Updater.Load]
//     applies it at start-up, before any network access, after verifying
//     it like a fetched one. The cache also holds the rollback floor: the
//     highest version accepted, which therefore survives restarts. An
//     expired cached bundle is not applied but still sets the floor. The
//     file is read only if no one but this user could have written it (on
//     Unix: opened without following symbolic links, a regular file of
//     this user, not writable by group or others, one hard link, in a
//     directory others cannot write to; else [ErrCacheRefused]).
//   - The floor never goes below [Updater.MinVersion], a version shipped
//     with the client. When the cache is missing, the floor is
//     MinVersion; when it is present but refused, unreadable, corrupt,
//     for another name, below MinVersion or signed by a key no longer
//     trusted, it is not applied, the floor is MinVersion, and this is
//     logged at error level and shown in [State].CacheError.
//   - When the bundle in effect expires, the embedded policy applies alone
//     again; [Updater.Run] does this when the expiry comes, without
//     waiting for the next poll.
//   - [Updater.Run] polls every Interval (15 minutes by default) with
//     If-None-Match; after a failure it retries after 5 s, doubling the
//     wait with each further failure up to MaxBackoff, with ±20% jitter.
//     Until a fetch succeeds, the bundle in effect stays.
//
// # What a control plane can and cannot do
//
// The control plane holds no signing key, so it cannot make a bundle: every
// policy a client applies was signed with the offline key. But it chooses
// which signed bundle a client gets, and when:
//
//   - Freeze: answering 304 Not Modified, or the same bundle, for ever
//     keeps a client on the bundle it has until that bundle's exp (at most
//     [MaxLifetime] after its iat), then the embedded policy applies. A
//     signed freshness statement (TUF's timestamp role) would bound this
//     more tightly; bundles do not have one. Choose expiries as short as
//     your signing routine allows: the expiry is the longest freeze.
//   - Rollback: a client refuses versions below the highest it has
//     accepted and below MinVersion. A fresh install or a client whose
//     cache is gone can be given any unexpired bundle at or above
//     MinVersion. Keep MinVersion current in each client release.
//   - Withholding: serving nothing, or errors, leaves the bundle in effect
//     until it expires, then the embedded policy.
//
// A local user who can write the cache file as the client's own user can
// replace it with an older authentic bundle; MinVersion bounds that too.
//
// The Updater logs bundle names, versions and key IDs, never policy
// contents.
package bundle
