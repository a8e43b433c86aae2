package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// BundleFile is the file of bundle vectors (bundles.json).
type BundleFile struct {
	Format      string `json:"format"`
	Description string `json:"description"`
	// Name is the bundle name the client expects; MinVersion the lowest
	// version it accepts (shipped with it).
	Name       string `json:"name"`
	MinVersion int64  `json:"min_version"`
	// URL is the control plane's bundle URL (its host is pinned by the
	// embedded policy).
	URL string `json:"url"`
	// Keys are the trusted signing keys as a JWKS; PEMKeys the same keys
	// as PEM "PUBLIC KEY" blocks.
	Keys    json.RawMessage `json:"keys"`
	PEMKeys string          `json:"pem_keys"`
	// Embedded is the policy shipped with the client: the floor.
	Embedded json.RawMessage `json:"embedded_policy"`
	Cases    []BundleCase    `json:"cases"`
}

// BundleCase is one bundle vector: a client holding Floor (a bundle
// accepted earlier, read back from its cache) receives JWS at Now.
type BundleCase struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Now is the client's clock, in Unix seconds.
	Now int64 `json:"now"`
	// Floor is a bundle accepted before (the cache); empty: none.
	Floor string `json:"floor,omitempty"`
	// JWS is the bundle received. Oversize, when set instead, describes
	// an input too large to commit: Prefix followed by "A" up to Length
	// bytes.
	JWS      string    `json:"jws,omitempty"`
	Oversize *Oversize `json:"oversize,omitempty"`
	Expect   Expect    `json:"expect"`
	// Unsupported names the clients that cannot express the vector, with
	// the reason; they skip it (and must say so).
	Unsupported map[string]string `json:"unsupported,omitempty"`
}

// Oversize is an input of Length bytes: Prefix, then "A" repeated.
type Oversize struct {
	Prefix string `json:"prefix"`
	Length int    `json:"length"`
}

// Expect is the decision a client must reach.
type Expect struct {
	// Result is "apply" (the bundle takes effect), "unchanged" (the same
	// bundle as the one in effect: nothing changes) or "refuse".
	Result string `json:"result"`
	// Error is the class of a refusal: malformed, unknown-key,
	// bad-signature, expired, not-yet-valid, rollback or wrong-name.
	Error string `json:"error,omitempty"`
	// Version is the version in effect afterwards (0: the embedded
	// policy alone).
	Version int64 `json:"version"`
	// Effective is the effective policy's domains afterwards, in the
	// normalized policy-file form (pin.Policy.MarshalJSON's "domains").
	Effective json.RawMessage `json:"effective_domains"`
}

// Error classes of Expect.Error, one per sentinel of package bundle.
const (
	ErrMalformed    = "malformed"
	ErrUnknownKey   = "unknown-key"
	ErrBadSignature = "bad-signature"
	ErrExpired      = "expired"
	ErrNotYetValid  = "not-yet-valid"
	ErrRollback     = "rollback"
	ErrWrongName    = "wrong-name"
)

// Clients, as named in Unsupported.
const (
	Android = "android"
	JS      = "js"
)

// The fixed time of the bundle vectors: 2026-12-01T00:00:00Z.
var bundleNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// rule is a rule of a vector policy, in the policy-file form.
type rule struct {
	Domain            string   `json:"domain"`
	IncludeSubdomains bool     `json:"include_subdomains"`
	Mode              string   `json:"mode"`
	Expires           string   `json:"expires,omitempty"`
	Pins              []string `json:"pins"`
	AllowSinglePin    bool     `json:"allow_single_pin,omitempty"`
	ReportURI         string   `json:"report_uri,omitempty"`
}

type policyDoc struct {
	Version   int    `json:"version"`
	ReportURI string `json:"report_uri,omitempty"`
	Domains   []rule `json:"domains"`
}

const (
	embeddedReportURI = "https://reports.rampart.example/v1/reports"
	bundleReportURI   = "https://collector.rampart.example/v1/reports"
)

// fakePin is a pin of no real key, derived from a label, so that the file
// reads the same at every generation but for signatures.
func fakePin(label string) string {
	sum := sha256.Sum256([]byte("rampart vector pin " + label))
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// resolved is r as pin.Policy.MarshalJSON writes it in a policy whose
// default report URI is uri.
func (r rule) resolved(uri string) rule {
	if r.Mode == "" {
		r.Mode = "enforce"
	}
	if r.ReportURI == "" {
		r.ReportURI = uri
	}
	return r
}

func resolvedAll(rules []rule, uri string) []rule {
	out := make([]rule, len(rules))
	for i, r := range rules {
		out[i] = r.resolved(uri)
	}
	return out
}

type signer struct {
	key crypto.Signer
	alg string
	kid string
}

func newSigner(key crypto.Signer) (*signer, error) {
	kid, err := bundle.KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	alg := "EdDSA"
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		alg = map[int]string{256: "ES256", 384: "ES384"}[k.Curve.Params().BitSize]
	}
	return &signer{key: key, alg: alg, kid: kid}, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// sign signs header and payload (JSON texts) with s, as JOSE does: raw
// R‖S for ECDSA.
func (s *signer) sign(header, payload string) (string, error) {
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	sig, err := s.rawSign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

func (s *signer) rawSign(input []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input), nil
	case *ecdsa.PrivateKey:
		h := crypto.SHA256
		size := 32
		if k.Curve == elliptic.P384() {
			h, size = crypto.SHA384, 48
		}
		d := h.New()
		d.Write(input)
		r, ss, err := ecdsa.Sign(rand.Reader, k, d.Sum(nil))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		ss.FillBytes(out[size:])
		return out, nil
	}
	return nil, fmt.Errorf("vectors: key type %T", s.key)
}

func (s *signer) header() string {
	return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"rampart-pin-bundle+jws"}`, s.alg, s.kid)
}

func payloadJSON(name string, version int64, iat, exp time.Time, p policyDoc) string {
	pj, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`{"bundle":%q,"version":%d,"iat":%d,"exp":%d,"policy":%s}`, name, version, iat.Unix(), exp.Unix(), pj)
}

// p256N is the order of P-256.
var p256N = elliptic.P256().Params().N

// withS replaces the S half of a raw ES256 signature by n-S (the other
// valid signature of the same message) or by the value f returns.
func replaceSig(jws string, f func(sig []byte) []byte) string {
	i := strings.LastIndexByte(jws, '.')
	sig, err := base64.RawURLEncoding.DecodeString(jws[i+1:])
	if err != nil {
		panic(err)
	}
	return jws[:i+1] + b64(f(sig))
}

func highS(sig []byte) []byte {
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(p256N, s)
	out := append([]byte(nil), sig...)
	s.FillBytes(out[32:])
	return out
}

// BuildBundles generates the bundle vectors.
func BuildBundles() (*BundleFile, error) {
	es256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	es384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	k256, _ := newSigner(es256)
	k384, _ := newSigner(es384)
	kEd, _ := newSigner(edKey)
	kStranger, _ := newSigner(stranger)

	keys, err := bundle.NewKeys(es256.Public(), es384.Public(), edKey.Public())
	if err != nil {
		return nil, err
	}
	jwks, err := keys.JWKS()
	if err != nil {
		return nil, err
	}
	var pems strings.Builder
	for _, pub := range []crypto.PublicKey{es256.Public(), es384.Public(), edKey.Public()} {
		b, err := bundle.MarshalPublicKey(pub)
		if err != nil {
			return nil, err
		}
		pems.Write(b)
	}

	const name = "mobile"
	embedded := policyDoc{Version: 1, ReportURI: embeddedReportURI, Domains: []rule{
		{Domain: "cp.rampart.example", Mode: "enforce", Pins: []string{fakePin("cp-current"), fakePin("cp-backup")}},
		{Domain: "api.rampart.example", Mode: "enforce", Pins: []string{fakePin("api-current"), fakePin("api-backup")}},
		{Domain: "pay.rampart.example", IncludeSubdomains: true, Mode: "enforce", Pins: []string{fakePin("pay-current"), fakePin("pay-backup")}},
	}}
	embeddedJSON, _ := json.Marshal(embedded)
	embeddedEff := resolvedAll(embedded.Domains, embeddedReportURI)

	// The bundle's policy: renews api's pins, adds a rule.
	apiRenewed := rule{Domain: "api.rampart.example", Mode: "enforce", Pins: []string{fakePin("api-next"), fakePin("api-current")}}
	newRule := rule{Domain: "new.rampart.example", IncludeSubdomains: true, Mode: "enforce", Expires: "2027-06-30", Pins: []string{fakePin("new-current"), fakePin("new-backup")}}
	bpol := policyDoc{Version: 1, ReportURI: bundleReportURI, Domains: []rule{apiRenewed, newRule}}
	// What the client ends up with: embedded order, api replaced, the new
	// rule added; rules keep the report URI of their own policy.
	bEff := []rule{embeddedEff[0], apiRenewed.resolved(bundleReportURI), embeddedEff[2], newRule.resolved(bundleReportURI)}

	iat := bundleNow.Add(-time.Hour)
	exp := bundleNow.Add(30 * 24 * time.Hour)
	now := bundleNow.Unix()

	mk := func(s *signer, version int64, p policyDoc) string {
		jws, err := s.sign(s.header(), payloadJSON(name, version, iat, exp, p))
		if err != nil {
			panic(err)
		}
		return jws
	}
	withHeader := func(s *signer, header, payload string) string {
		jws, err := s.sign(header, payload)
		if err != nil {
			panic(err)
		}
		return jws
	}
	eff := func(rules []rule) json.RawMessage {
		b, err := json.Marshal(rules)
		if err != nil {
			panic(err)
		}
		return b
	}
	apply := func(v int64, rules []rule) Expect {
		return Expect{Result: "apply", Version: v, Effective: eff(rules)}
	}
	refuse := func(class string, v int64, rules []rule) Expect {
		return Expect{Result: "refuse", Error: class, Version: v, Effective: eff(rules)}
	}
	refuseEmbedded := func(class string) Expect { return refuse(class, 0, embeddedEff) }

	valid := mk(k256, 3, bpol)
	v5 := mk(k256, 5, bpol)
	otherPol := policyDoc{Version: 1, ReportURI: bundleReportURI, Domains: []rule{newRule}}
	v5other := mk(k256, 5, otherPol)
	v5again := mk(k256, 5, bpol) // the same content, another signature
	std := payloadJSON(name, 3, iat, exp, bpol)
	hdr := k256.header()

	// alg none: no signature at all.
	none := b64([]byte(fmt.Sprintf(`{"alg":"none","kid":%q,"typ":"rampart-pin-bundle+jws"}`, k256.kid))) + "." + b64([]byte(std)) + "."
	// HS256 keyed with the trusted public key's PEM (the classic
	// algorithm-confusion attack on a verifier that takes alg from the
	// header).
	pubPEM, _ := bundle.MarshalPublicKey(es256.Public())
	hsInput := b64([]byte(fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"rampart-pin-bundle+jws"}`, k256.kid))) + "." + b64([]byte(std))
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + b64(mac.Sum(nil))

	// A payload changed after signing.
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64([]byte(payloadJSON(name, 4, iat, exp, bpol))) + "." + parts[2]

	derSig := replaceSig(valid, func(sig []byte) []byte {
		der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		return der
	})
	rIsN := replaceSig(valid, func(sig []byte) []byte {
		out := append([]byte(nil), sig...)
		p256N.FillBytes(out[:32])
		return out
	})
	sIsZero := replaceSig(valid, func(sig []byte) []byte {
		out := append([]byte(nil), sig...)
		clear(out[32:])
		return out
	})
	// Non-canonical base64url: the last character of the signature with
	// trailing bits set (64 bytes leave 4 unused bits in 86 characters).
	nonCanonical := func() string {
		i := len(valid) - 1
		c := valid[i]
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		idx := strings.IndexByte(alphabet, c)
		return valid[:i] + string(alphabet[idx|1])
	}()

	expired := mk1(k256, name, 3, bundleNow.Add(-31*24*time.Hour), bundleNow, bpol)
	justValid := mk1(k256, name, 3, bundleNow.Add(-time.Hour), bundleNow.Add(time.Second), bpol)
	future := mk1(k256, name, 3, bundleNow.Add(bundle.ClockSkew+time.Second), bundleNow.Add(30*24*time.Hour), bpol)
	skewEdge := mk1(k256, name, 3, bundleNow.Add(bundle.ClockSkew), bundleNow.Add(30*24*time.Hour), bpol)
	tooLong := mk1(k256, name, 3, iat, iat.Add(367*24*time.Hour), bpol)
	floorExpired := mk1(k256, name, 5, bundleNow.Add(-60*24*time.Hour), bundleNow.Add(-24*time.Hour), bpol)

	dropPol := policyDoc{Version: 1, Domains: []rule{newRule}}
	dropEff := append(append([]rule(nil), embeddedEff...), newRule.resolved(embeddedReportURI))
	roRule := rule{Domain: "api.rampart.example", Mode: "report-only", Pins: []string{fakePin("api-next")}}
	roPol := policyDoc{Version: 1, Domains: []rule{roRule}}
	roEff := []rule{embeddedEff[0], roRule.resolved(embeddedReportURI), embeddedEff[2]}

	suffix := func(domain string) policyDoc {
		return policyDoc{Version: 1, Domains: []rule{{Domain: domain, IncludeSubdomains: true, Mode: "enforce", Pins: []string{fakePin("a"), fakePin("b")}}}}
	}
	noBackup := policyDoc{Version: 1, Domains: []rule{{Domain: "api.rampart.example", Mode: "enforce", Pins: []string{fakePin("api-next")}}}}
	pj, _ := json.Marshal(bpol)
	payloadWith := func(format string, args ...any) string {
		return withHeader(k256, hdr, fmt.Sprintf(format, args...))
	}

	cases := []BundleCase{
		{Name: "valid-es256", Description: "a bundle signed with the trusted P-256 key: applied; the effective policy is the embedded one with api's rule replaced and the new rule added", JWS: valid, Expect: apply(3, bEff)},
		{Name: "valid-es384", Description: "signed with the trusted P-384 key (ES384)", JWS: mk(k384, 3, bpol), Expect: apply(3, bEff)},
		{Name: "valid-eddsa", Description: "signed with the trusted Ed25519 key (EdDSA)", JWS: mk(kEd, 3, bpol), Expect: apply(3, bEff),
			Unsupported: map[string]string{Android: "Ed25519 is in the JCA only from Java 15 and Android API 33: the Android library (Java 8) verifies EdDSA where the platform has it and refuses it (bad-signature) elsewhere, so the result depends on the device"}},
		{Name: "bad-signature", Description: "the payload was changed after signing (version 3 -> 4)", JWS: tampered, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "alg-none", Description: `alg "none" with an empty signature`, JWS: none, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "hs256-with-public-key", Description: "HS256 keyed with the trusted public key's PEM (algorithm confusion)", JWS: hs256, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "alg-not-the-keys", Description: "kid names the P-256 key, alg says ES384", JWS: withHeader(k384, fmt.Sprintf(`{"alg":"ES384","kid":%q,"typ":"rampart-pin-bundle+jws"}`, k256.kid), std), Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "wrong-typ", Description: `typ "JWT" instead of rampart-pin-bundle+jws (explicit typing, RFC 8725 §3.11)`, JWS: withHeader(k256, fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"JWT"}`, k256.kid), std), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "typ-with-application-prefix", Description: "typ application/rampart-pin-bundle+jws in upper case: the same media type (RFC 7515 §4.1.9)", JWS: withHeader(k256, fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"APPLICATION/RAMPART-PIN-BUNDLE+JWS"}`, k256.kid), std), Expect: apply(3, bEff)},
		{Name: "missing-typ", Description: "no typ member", JWS: withHeader(k256, fmt.Sprintf(`{"alg":"ES256","kid":%q}`, k256.kid), std), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "extra-header-member", Description: "a jwk member in the protected header (a key the verifier must never take from the token)", JWS: withHeader(k256, fmt.Sprintf(`{"alg":"ES256","jwk":{"kty":"oct","k":"AA"},"kid":%q,"typ":"rampart-pin-bundle+jws"}`, k256.kid), std), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "unknown-kid", Description: "signed by a key the client does not trust", JWS: mk(kStranger, 3, bpol), Expect: refuseEmbedded(ErrUnknownKey)},
		{Name: "trusted-kid-other-key", Description: "kid of the trusted key, signature of another key", JWS: withHeader(kStranger, hdr, std), Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "zero-signature", Description: "an ES256 signature of 64 zero bytes (r = s = 0)", JWS: replaceSig(valid, func(sig []byte) []byte { return make([]byte, 64) }), Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "s-zero", Description: "s = 0 (out of range [1, n-1])", JWS: sIsZero, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "r-equals-n", Description: "r = n, the order of P-256 (out of range [1, n-1])", JWS: rIsN, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "high-s", Description: "the valid signature with s replaced by n-s: also a valid ECDSA signature; JOSE does not require low S, and bundles are compared by content, so it is accepted", JWS: replaceSig(valid, highS), Expect: apply(3, bEff)},
		{Name: "high-s-of-the-bundle-in-effect", Description: "the high-S twin of the bundle in effect: the same content, nothing changes", Floor: valid, JWS: replaceSig(valid, highS), Expect: Expect{Result: "unchanged", Version: 3, Effective: eff(bEff)}},
		{Name: "der-signature", Description: "the ECDSA signature DER-encoded instead of raw R‖S (RFC 7518 §3.4)", JWS: derSig, Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "short-signature", Description: "63 bytes of signature", JWS: replaceSig(valid, func(sig []byte) []byte { return sig[:63] }), Expect: refuseEmbedded(ErrBadSignature)},
		{Name: "non-canonical-base64", Description: "the signature's last base64url character has its unused bits set: another spelling of the same bytes", JWS: nonCanonical, Expect: refuseEmbedded(ErrMalformed)},
		{Name: "padded-base64", Description: "base64url with '=' padding", JWS: strings.Replace(valid, ".", "=.", 1), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "json-serialization", Description: "the JWS JSON serialization instead of the compact one", JWS: fmt.Sprintf(`{"payload":%q,"protected":%q,"signature":%q}`, parts[1], parts[0], parts[2]), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "two-parts", Description: "header and payload, no signature part", JWS: parts[0] + "." + parts[1], Expect: refuseEmbedded(ErrMalformed)},
		{Name: "oversized", Description: "one byte more than the 1 MiB limit, refused before any parsing", Oversize: &Oversize{Prefix: parts[0] + ".", Length: bundle.MaxSize + 1}, Expect: refuseEmbedded(ErrMalformed)},
		{Name: "expired", Description: "now is the expiry time: exp is exclusive", JWS: expired, Expect: refuseEmbedded(ErrExpired)},
		{Name: "expires-in-a-second", Description: "one second before the expiry", JWS: justValid, Expect: apply(3, bEff)},
		{Name: "issued-in-the-future", Description: "iat more than the 5-minute skew after now", JWS: future, Expect: refuseEmbedded(ErrNotYetValid)},
		{Name: "issued-at-the-skew", Description: "iat exactly 5 minutes after now: within the skew", JWS: skewEdge, Expect: apply(3, bEff)},
		{Name: "lifetime-over-366-days", Description: "exp 367 days after iat", JWS: tooLong, Expect: refuseEmbedded(ErrMalformed)},
		{Name: "wrong-name", Description: `a valid bundle for the name "web"`, JWS: mk1(k256, "web", 3, iat, exp, bpol), Expect: refuseEmbedded(ErrWrongName)},
		{Name: "below-min-version", Description: "version 1, below the client's minimum version 2", JWS: mk(k256, 1, bpol), Expect: refuseEmbedded(ErrRollback)},
		{Name: "rollback", Description: "version 3 after version 5 was accepted", Floor: v5, JWS: valid, Expect: refuse(ErrRollback, 5, bEff)},
		{Name: "rollback-below-an-expired-floor", Description: "version 3 after version 5, now expired, was accepted: an expired bundle no longer applies but still sets the floor", Floor: floorExpired, JWS: valid, Expect: refuseEmbedded(ErrRollback)},
		{Name: "equivocation", Description: "version 5 again with other content", Floor: v5, JWS: v5other, Expect: refuse(ErrRollback, 5, bEff)},
		{Name: "same-bundle-again", Description: "version 5 again, the same content under another signature: nothing changes", Floor: v5, JWS: v5again, Expect: Expect{Result: "unchanged", Version: 5, Effective: eff(bEff)}},
		{Name: "newer-version", Description: "version 5 after version 3", Floor: valid, JWS: v5, Expect: apply(5, bEff)},
		{Name: "drops-a-domain", Description: "a bundle that names only a new rule: the embedded rules stay (a bundle cannot unpin a host by leaving it out); rules without a report URI take the embedded default", JWS: mk(k256, 3, dropPol), Expect: apply(3, dropEff)},
		{Name: "turns-a-domain-report-only", Description: "a bundle that turns api's rule report-only: signed by the offline key, it replaces the embedded rule", JWS: mk(k256, 3, roPol), Expect: apply(3, roEff)},
		{Name: "include-subdomains-on-a-tld", Description: `include_subdomains on "example", a public suffix`, JWS: mk(k256, 3, suffix("example")), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "include-subdomains-on-a-public-suffix", Description: `include_subdomains on "co.uk", a public suffix of two labels`, JWS: mk(k256, 3, suffix("co.uk")), Expect: refuseEmbedded(ErrMalformed),
			Unsupported: map[string]string{Android: "needs the Public Suffix List, which neither the JVM nor Android exposes (the library refuses single-label suffixes only; rampart bundle sign refuses this bundle)",
				JS: "needs the Public Suffix List, which neither Node.js nor Hermes ships (the library refuses single-label suffixes only; rampart bundle sign refuses this bundle)"}},
		{Name: "enforced-rule-without-backup", Description: "an enforced rule with a single pin", JWS: mk(k256, 3, noBackup), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "unknown-payload-member", Description: "a payload member the schema does not have", JWS: payloadWith(`{"bundle":%q,"version":3,"iat":%d,"exp":%d,"policy":%s,"extra":1}`, name, iat.Unix(), exp.Unix(), pj), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "duplicate-payload-member", Description: "version twice (parsers disagree on which one counts)", JWS: payloadWith(`{"bundle":%q,"version":1,"version":3,"iat":%d,"exp":%d,"policy":%s}`, name, iat.Unix(), exp.Unix(), pj), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "version-as-string", Description: `"version":"3"`, JWS: payloadWith(`{"bundle":%q,"version":"3","iat":%d,"exp":%d,"policy":%s}`, name, iat.Unix(), exp.Unix(), pj), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "version-as-float", Description: `"version":3.0`, JWS: payloadWith(`{"bundle":%q,"version":3.0,"iat":%d,"exp":%d,"policy":%s}`, name, iat.Unix(), exp.Unix(), pj), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "missing-policy", Description: "no policy member", JWS: payloadWith(`{"bundle":%q,"version":3,"iat":%d,"exp":%d}`, name, iat.Unix(), exp.Unix()), Expect: refuseEmbedded(ErrMalformed)},
		{Name: "trailing-data", Description: "data after the payload object", JWS: payloadWith(`{"bundle":%q,"version":3,"iat":%d,"exp":%d,"policy":%s} {}`, name, iat.Unix(), exp.Unix(), pj), Expect: refuseEmbedded(ErrMalformed)},
	}
	for i := range cases {
		if cases[i].Now == 0 {
			cases[i].Now = now
		}
	}
	return &BundleFile{
		Format:      "rampart-bundle-vectors/1",
		Description: "Signed pin bundle vectors: a client with the embedded policy, trusted keys, name and min_version given here, holding floor (a bundle accepted before, as read back from its cache; verified like any bundle, and if valid at now in effect), receives jws at now. See README.md.",
		Name:        name,
		MinVersion:  2,
		URL:         "https://cp.rampart.example/v1/bundles/" + name,
		Keys:        jwks,
		PEMKeys:     pems.String(),
		Embedded:    embeddedJSON,
		Cases:       cases,
	}, nil
}

func mk1(s *signer, name string, version int64, iat, exp time.Time, p policyDoc) string {
	jws, err := s.sign(s.header(), payloadJSON(name, version, iat, exp, p))
	if err != nil {
		panic(err)
	}
	return jws
}

// checkPolicy makes sure a vector policy is one package pin reads (a
// generator bug, not a vector).
func checkPolicy(raw []byte) error {
	_, err := pin.ParsePolicy(raw)
	return err
}
