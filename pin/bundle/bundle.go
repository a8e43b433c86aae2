package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"golang.org/x/net/publicsuffix"

	"github.com/rampartsec/rampart/pin"
)

// Type is the value of the protected "typ" header of every bundle (explicit
// typing, RFC 8725 §3.11): a JWS made for another purpose with the same key
// is never taken for a bundle.
const Type = "rampart-pin-bundle+jws"

// MaxSize is the largest bundle, in bytes of compact serialization, that
// [Verify] and the [Updater] read. It is checked before any parsing.
const MaxSize = 1 << 20

// ClockSkew is how far in the future a bundle's issue time may be before
// [Verify] refuses it as not yet valid ([ErrNotYetValid]).
const ClockSkew = 5 * time.Minute

// MaxLifetime is the longest a bundle may be valid: [Sign] and [Verify]
// refuse an expiry more than MaxLifetime after the issue time
// ([ErrMalformed]). A year, with a day to spare for an inclusive expiry
// date. It bounds how long a client can be held on one bundle by a control
// plane that keeps serving it (a freeze), how long a bundle can be replayed
// to a client that has not seen a newer one, and keeps every time of a
// valid bundle within the years that JSON and RFC 3339 can write (RFC 8725
// §3.10: validate lifetimes).
const MaxLifetime = 366 * 24 * time.Hour

// Errors that callers branch on. Every error of [Verify] wraps exactly one of
// ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired and
// ErrNotYetValid, with detail; the [Updater] adds ErrWrongName,
// ErrRollback and ErrControlPlaneNotPinned.
var (
	// ErrMalformed: the input is not a well-formed bundle: too large, not
	// a JWS in compact serialization, a protected header other than
	// {"alg","kid","typ"} with typ [Type], a payload that does not follow
	// the schema, a lifetime (exp - iat) over [MaxLifetime], a policy
	// that package pin refuses (on its own or, in the [Updater], combined
	// with the embedded policy), or a rule with include_subdomains on a
	// public suffix.
	ErrMalformed = errors.New("bundle: malformed")
	// ErrUnknownKey: the bundle's kid names none of the trusted keys.
	ErrUnknownKey = errors.New("bundle: signed by an unknown key")
	// ErrBadSignature: the signature does not verify with the trusted key
	// the kid names, or the alg is not one that key signs with (never
	// "none", never HMAC).
	ErrBadSignature = errors.New("bundle: bad signature")
	// ErrExpired: the bundle's expiry time has passed.
	ErrExpired = errors.New("bundle: expired")
	// ErrNotYetValid: the bundle's issue time is more than [ClockSkew]
	// ahead of the clock.
	ErrNotYetValid = errors.New("bundle: not yet valid")
	// ErrRollback: the bundle is older than one already accepted or than
	// the [Updater]'s MinVersion, or has the same version as one already
	// accepted but other content (equivocation: the signer issued two
	// different bundles under one version).
	ErrRollback = errors.New("bundle: rollback refused")
	// ErrWrongName: the bundle is authentic but made for another bundle
	// name than the one the [Updater] expects.
	ErrWrongName = errors.New("bundle: wrong bundle name")
	// ErrControlPlaneNotPinned: the [Updater]'s URL is on a host that the
	// embedded policy does not pin in enforce mode, or whose embedded rule
	// has expired; fetching pins over a connection that is not itself
	// pinned would defeat their purpose.
	ErrControlPlaneNotPinned = errors.New("bundle: the control plane is not pinned by the embedded policy (add an enforced rule for its host)")
)

// A Bundle is a verified pin bundle.
type Bundle struct {
	// Name names the set of clients the bundle is for ("mobile").
	Name string
	// Version increases with every bundle of a name.
	Version int64
	// IssuedAt and ExpiresAt are the iat and exp of the payload, in UTC.
	// The bundle is valid in [IssuedAt-ClockSkew, ExpiresAt).
	IssuedAt, ExpiresAt time.Time
	// KeyID is the RFC 7638 thumbprint of the key that signed it.
	KeyID string
	// Policy is the bundle's pinning policy, as parsed by
	// [pin.ParsePolicy].
	Policy *pin.Policy
	// JWS is the bundle in compact serialization, as verified.
	JWS string
}

// payload is the JWS payload. Every field is required.
type payload struct {
	Bundle  string          `json:"bundle"`
	Version int64           `json:"version"`
	IAT     int64           `json:"iat"`
	EXP     int64           `json:"exp"`
	Policy  json.RawMessage `json:"policy"`
}

var payloadFields = []string{"bundle", "version", "iat", "exp", "policy"}

// Algorithms accepted, and the only ones: each trusted key signs with
// exactly one of them (see algFor).
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA}

// Sign returns a bundle in JWS compact serialization, signed by key.
//
// The algorithm follows from the key: ECDSA P-256 signs with ES256, P-384
// with ES384, Ed25519 with EdDSA; other keys are refused. key may be any
// crypto.Signer of those types, such as a key held in a KMS or HSM. name
// must match [a-z0-9][a-z0-9._-]{0,63}, version must be at least 1, and
// expiresAt must be after issuedAt and at most [MaxLifetime] after it;
// both times are kept to the second. The policy must not set
// include_subdomains on a public suffix ("com", "co.uk", "test"), which
// would pin every site registered under it.
//
// Sign verifies what it signed before returning it, so a signer whose
// Public method does not match its signatures is caught here and not by
// every client.
func Sign(key crypto.Signer, name string, version int64, issuedAt, expiresAt time.Time, p *pin.Policy) (string, error) {
	if key == nil {
		return "", errors.New("bundle: no signing key")
	}
	pub := key.Public()
	alg, err := algFor(pub)
	if err != nil {
		return "", err
	}
	kid, err := KeyID(pub)
	if err != nil {
		return "", err
	}
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	if version < 1 {
		return "", fmt.Errorf("bundle: version %d: want 1 or more", version)
	}
	iat, exp := issuedAt.Unix(), expiresAt.Unix()
	if issuedAt.IsZero() || iat <= 0 {
		return "", errors.New("bundle: issue time is not set")
	}
	if exp <= iat {
		return "", fmt.Errorf("bundle: expiry %s is not after issue time %s", expiresAt.UTC().Format(time.RFC3339), issuedAt.UTC().Format(time.RFC3339))
	}
	if err := checkLifetime(iat, exp); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	if p == nil {
		return "", errors.New("bundle: no policy")
	}
	raw, err := p.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("bundle: encoding policy: %w", err)
	}
	// What clients will parse, not what the caller holds: a Policy that
	// is not usable (the zero Policy) is refused here.
	parsed, err := pin.ParsePolicy(raw)
	if err != nil {
		return "", fmt.Errorf("bundle: policy: %w", err)
	}
	if err := checkScope(parsed); err != nil {
		return "", fmt.Errorf("bundle: policy: %w", err)
	}
	body, err := json.Marshal(payload{Bundle: name, Version: version, IAT: iat, EXP: exp, Policy: raw})
	if err != nil {
		return "", fmt.Errorf("bundle: encoding payload: %w", err)
	}

	var signingKey any
	switch k := key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
		signingKey = k
	default:
		signingKey = cryptosigner.Opaque(key)
	}
	opts := new(jose.SignerOptions).WithType(Type).WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signingKey}, opts)
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	obj, err := signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("bundle: signing: %w", err)
	}
	jws, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	keys, err := NewKeys(pub)
	if err != nil {
		return "", err
	}
	if _, err := Verify(jws, keys, issuedAt); err != nil {
		return "", fmt.Errorf("bundle: the signed bundle does not verify: %w", err)
	}
	return jws, nil
}

// Verify checks a bundle in JWS compact serialization against trusted keys
// at time now and returns it. In order, it refuses:
//
//   - more than [MaxSize] bytes, anything but the compact serialization
//     (three base64url parts, canonically encoded), a protected header with
//     members other than alg, kid and typ or a typ other than [Type]
//     ([ErrMalformed]);
//   - an alg other than ES256, ES384 and EdDSA ([ErrBadSignature]);
//   - a kid that names none of keys ([ErrUnknownKey]);
//   - an alg that is not the one of the key kid names, or a signature that
//     does not verify ([ErrBadSignature]);
//   - a payload with unknown, missing, duplicate or mistyped members, a
//     bad name or version, an expiry not after the issue time or more than
//     [MaxLifetime] after it, a policy that [pin.ParsePolicy] refuses, or
//     a rule with include_subdomains on a public suffix ([ErrMalformed]);
//   - now at or after the expiry ([ErrExpired]), or before the issue time
//     minus [ClockSkew] ([ErrNotYetValid]).
//
// Verify is stateless: refusing a version older than one already seen, or
// a bundle for another name, is the caller's job (the [Updater] does both).
func Verify(jws string, keys *Keys, now time.Time) (*Bundle, error) {
	b, err := verify(jws, keys, now)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// verify is Verify, but also returns the bundle, authentic and well formed,
// along with ErrExpired and ErrNotYetValid: the Updater takes its rollback
// floor from an expired cache.
func verify(jws string, keys *Keys, now time.Time) (*Bundle, error) {
	if len(jws) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxSize)
	}
	hdr, err := checkCompact(jws)
	if err != nil {
		return nil, err
	}
	if !allowedAlg(hdr.alg) {
		return nil, fmt.Errorf("%w: alg %q is not accepted (only ES256, ES384 and EdDSA)", ErrBadSignature, truncate(hdr.alg))
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: no trusted keys", ErrUnknownKey)
	}
	k, ok := keys.get(hdr.kid)
	if !ok {
		return nil, fmt.Errorf("%w: kid %q is not a trusted key (trusted: %s)", ErrUnknownKey, truncate(hdr.kid), strings.Join(keys.IDs(), ", "))
	}
	if hdr.alg != string(k.alg) {
		return nil, fmt.Errorf("%w: alg %s, but key %s signs with %s", ErrBadSignature, hdr.alg, hdr.kid, k.alg)
	}
	obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{k.alg})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrMalformed)
	}
	// Our reading of the header and go-jose's must agree, so that what was
	// checked above is what the signature is verified under.
	if ph := obj.Signatures[0].Protected; ph.Algorithm != hdr.alg || ph.KeyID != hdr.kid {
		return nil, fmt.Errorf("%w: ambiguous protected header", ErrMalformed)
	}
	body, err := obj.Verify(k.pub)
	if err != nil {
		return nil, fmt.Errorf("%w: the signature does not verify with key %s", ErrBadSignature, hdr.kid)
	}
	b, err := decodePayload(body)
	if err != nil {
		return nil, err
	}
	b.KeyID = hdr.kid
	b.JWS = jws
	if !now.Before(b.ExpiresAt) {
		return b, fmt.Errorf("%w: %s version %d expired at %s", ErrExpired, b.Name, b.Version, b.ExpiresAt.Format(time.RFC3339))
	}
	if b.IssuedAt.After(now.Add(ClockSkew)) {
		return b, fmt.Errorf("%w: %s version %d is issued at %s, more than %s after now (%s): check the clock", ErrNotYetValid, b.Name, b.Version, b.IssuedAt.Format(time.RFC3339), ClockSkew, now.UTC().Format(time.RFC3339))
	}
	return b, nil
}

// header is the protected header of a bundle.
type header struct {
	alg, kid string
}

// checkCompact checks that s is a JWS in compact serialization whose three
// parts are canonical unpadded base64url (go-jose's decoder would also
// accept line breaks and non-zero trailing bits, so that many strings
// would carry one signature), and reads the protected header strictly.
func checkCompact(s string) (header, error) {
	if strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
		return header{}, fmt.Errorf("%w: JWS JSON serialization is not accepted; want the compact serialization", ErrMalformed)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return header{}, fmt.Errorf("%w: want a JWS in compact serialization (three parts separated by dots), got %d parts", ErrMalformed, len(parts))
	}
	names := [3]string{"protected header", "payload", "signature"}
	var decoded [3][]byte
	for i, p := range parts {
		for j := 0; j < len(p); j++ {
			c := p[j]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return header{}, fmt.Errorf("%w: %s: invalid character %q in base64url", ErrMalformed, names[i], c)
			}
		}
		d, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil {
			return header{}, fmt.Errorf("%w: %s: %v", ErrMalformed, names[i], err)
		}
		decoded[i] = d
	}
	if len(decoded[1]) == 0 {
		return header{}, fmt.Errorf("%w: empty payload", ErrMalformed)
	}
	m, err := decodeObject(decoded[0])
	if err != nil {
		return header{}, fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
	}
	for k := range m {
		switch k {
		case "alg", "kid", "typ":
		default:
			// crit, b64, jwk, jku, x5c, x5u...: nothing a bundle needs,
			// and each a way to change how the JWS is read.
			return header{}, fmt.Errorf("%w: protected header: member %q is not accepted (only alg, kid and typ)", ErrMalformed, truncate(k))
		}
	}
	var h header
	var typ string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"alg", &h.alg}, {"kid", &h.kid}, {"typ", &typ}} {
		raw, ok := m[f.name]
		if !ok {
			return header{}, fmt.Errorf("%w: protected header: %q is missing", ErrMalformed, f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || *f.dst == "" {
			return header{}, fmt.Errorf("%w: protected header: %q must be a non-empty string", ErrMalformed, f.name)
		}
	}
	// RFC 7515 §4.1.9: media types are case-insensitive and "application/"
	// may be omitted.
	if t := strings.ToLower(typ); t != Type && t != "application/"+Type {
		return header{}, fmt.Errorf("%w: typ %q: want %q", ErrMalformed, truncate(typ), Type)
	}
	return h, nil
}

// decodePayload decodes a verified payload strictly.
func decodePayload(body []byte) (*Bundle, error) {
	m, err := decodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	for k := range m {
		if !contains(payloadFields, k) {
			return nil, fmt.Errorf("%w: payload: unknown member %q (want bundle, version, iat, exp and policy)", ErrMalformed, truncate(k))
		}
	}
	for _, f := range payloadFields {
		if _, ok := m[f]; !ok {
			return nil, fmt.Errorf("%w: payload: %q is missing", ErrMalformed, f)
		}
	}
	var p payload
	for _, f := range []struct {
		name string
		dst  any
	}{{"bundle", &p.Bundle}, {"version", &p.Version}, {"iat", &p.IAT}, {"exp", &p.EXP}} {
		if err := json.Unmarshal(m[f.name], f.dst); err != nil {
			return nil, fmt.Errorf("%w: payload: %q: %v", ErrMalformed, f.name, err)
		}
	}
	if err := checkName(p.Bundle); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if p.Version < 1 {
		return nil, fmt.Errorf("%w: payload: version %d: want 1 or more", ErrMalformed, p.Version)
	}
	if p.IAT <= 0 || p.EXP <= p.IAT {
		return nil, fmt.Errorf("%w: payload: want 0 < iat < exp, got iat %d, exp %d", ErrMalformed, p.IAT, p.EXP)
	}
	if err := checkLifetime(p.IAT, p.EXP); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	raw := bytes.TrimSpace(m["policy"])
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: payload: policy must be an object", ErrMalformed)
	}
	policy, err := pin.ParsePolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if err := checkScope(policy); err != nil {
		return nil, fmt.Errorf("%w: payload: policy: %v", ErrMalformed, err)
	}
	return &Bundle{
		Name:      p.Bundle,
		Version:   p.Version,
		IssuedAt:  time.Unix(p.IAT, 0).UTC(),
		ExpiresAt: time.Unix(p.EXP, 0).UTC(),
		Policy:    policy,
	}, nil
}

// decodeObject decodes one JSON object into its members, refusing
// duplicate members (which JSON parsers resolve differently) and trailing
// data. Member names are compared exactly, unlike encoding/json's struct
// decoding, which ignores case.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not JSON")
		}
		k, ok := tok.(string)
		if !ok {
			return nil, errors.New("not JSON")
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("member %q appears twice", truncate(k))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("not JSON")
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("not JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// checkLifetime refuses an exp more than MaxLifetime after iat (both
// NumericDates, 0 < iat < exp, so exp - iat does not overflow).
func checkLifetime(iat, exp int64) error {
	if maxSecs := int64(MaxLifetime / time.Second); exp-iat > maxSecs {
		return fmt.Errorf("expiry %s is %d days after the issue time %s; a bundle may live at most %d days (MaxLifetime)",
			formatNumericDate(exp), (exp-iat)/86400, formatNumericDate(iat), maxSecs/86400)
	}
	return nil
}

// formatNumericDate writes a NumericDate as RFC 3339, whatever its year.
func formatNumericDate(s int64) string {
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

// checkScope refuses a rule with include_subdomains on a public suffix
// (the rule "public-suffix" of rampart pin lint): it would pin every site
// registered under it, none of them the signer's.
func checkScope(p *pin.Policy) error {
	for _, d := range p.Domains() {
		// pin refuses include_subdomains on an IP address.
		if !d.IncludeSubdomains {
			continue
		}
		if ps, _ := publicsuffix.PublicSuffix(d.Name); ps == d.Name {
			return fmt.Errorf("rule %s: include_subdomains on a public suffix would pin every site registered under it (public-suffix)", truncate(d.Name))
		}
	}
	return nil
}

// checkName checks a bundle name: [a-z0-9][a-z0-9._-]{0,63}.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("bundle name %q: want 1 to 64 characters", truncate(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("bundle name %q: want lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", truncate(name))
		}
	}
	return nil
}

func allowedAlg(alg string) bool {
	for _, a := range algorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// truncate keeps attacker-chosen text in errors short.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
