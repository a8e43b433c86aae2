package bundle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// A bundle signed with each accepted algorithm verifies with Verify and,
// for interoperability, with go-jose alone following the package
// documentation.
func TestSignVerifyRoundTrip(t *testing.T) {
	w := newWorld(t)
	for _, alg := range []string{"ES256", "ES384", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			key := mustKey(t, alg)
			keys, err := bundle.NewKeys(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			p := w.bundlePolicy(t)
			iat, exp := t0, t0.Add(30*24*time.Hour)
			jws, err := bundle.Sign(key, "mobile", 7, iat, exp, p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := bundle.Verify(jws, keys, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			id := kid(t, key)
			if b.Name != "mobile" || b.Version != 7 || !b.IssuedAt.Equal(iat) || !b.ExpiresAt.Equal(exp) || b.KeyID != id || b.JWS != jws {
				t.Errorf("got %+v", b)
			}
			if got, want := policyJSON(t, b.Policy), policyJSON(t, p); got != want {
				t.Errorf("policy = %s, want %s", got, want)
			}

			// go-jose alone, allowing only this algorithm.
			obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := obj.Signatures[0].Protected
			if h.Algorithm != alg || h.KeyID != id || h.ExtraHeaders[jose.HeaderType] != bundle.Type {
				t.Errorf("protected header: alg %q kid %q typ %v", h.Algorithm, h.KeyID, h.ExtraHeaders[jose.HeaderType])
			}
			payload, err := obj.Verify(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			m := mustJSON(t, payload)
			if m["bundle"] != "mobile" || m["version"] != float64(7) || m["iat"] != float64(iat.Unix()) || m["exp"] != float64(exp.Unix()) {
				t.Errorf("payload = %s", payload)
			}
			if _, err := pin.ParsePolicy([]byte(mustRaw(t, payload, "policy"))); err != nil {
				t.Errorf("policy in payload does not parse as a policy file: %v", err)
			}
			// The header has exactly alg, kid and typ.
			hdr, _, _ := parts(jws)
			raw, _ := base64.RawURLEncoding.DecodeString(hdr)
			if hm := mustJSON(t, raw); len(hm) != 3 {
				t.Errorf("protected header %s: want exactly alg, kid and typ", raw)
			}
		})
	}
}

func mustRaw(t *testing.T, payload []byte, member string) string {
	t.Helper()
	i := strings.Index(string(payload), `"`+member+`":`)
	if i < 0 {
		t.Fatalf("no %s in %s", member, payload)
	}
	return strings.TrimSuffix(string(payload[i+len(member)+3:]), "}")
}

// The key ID is the RFC 7638 thumbprint, computed here by hand: for
// Ed25519 the example of RFC 8037 appendix A.3, for ECDSA the canonical
// JSON of RFC 7638 §3.2.
func TestKeyID(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	id, err := bundle.KeyID(ed25519.PublicKey(x))
	if err != nil || id != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("Ed25519 KeyID = %q, %v; want RFC 8037's kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", id, err)
	}
	for _, kt := range []struct {
		kt   testpki.KeyType
		crv  string
		size int
	}{{testpki.ECDSAP256, "P-256", 32}, {testpki.ECDSAP384, "P-384", 48}} {
		pub := testpki.NewKey(t, kt.kt).Public().(*ecdsa.PublicKey)
		e, err := pub.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		pt := e.Bytes()[1:] // uncompressed point without the 0x04
		canon := fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, kt.crv,
			base64.RawURLEncoding.EncodeToString(pt[:kt.size]), base64.RawURLEncoding.EncodeToString(pt[kt.size:]))
		sum := sha256.Sum256([]byte(canon))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if id, err := bundle.KeyID(pub); err != nil || id != want {
			t.Errorf("%s KeyID = %q, %v; want %q", kt.crv, id, err, want)
		}
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := bundle.KeyID(rsaKey.Public()); err == nil {
		t.Error("KeyID accepted an RSA key")
	}
}

func TestSignRefusals(t *testing.T) {
	w := newWorld(t)
	p := w.bundlePolicy(t)
	day := 24 * time.Hour
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	for _, tc := range []struct {
		name string
		sign func() (string, error)
	}{
		{"RSA key", func() (string, error) { return bundle.Sign(rsaKey, "mobile", 1, t0, t0.Add(day), p) }},
		{"P-521 key", func() (string, error) { return bundle.Sign(p521, "mobile", 1, t0, t0.Add(day), p) }},
		{"nil key", func() (string, error) { return bundle.Sign(nil, "mobile", 1, t0, t0.Add(day), p) }},
		{"empty name", func() (string, error) { return bundle.Sign(w.key, "", 1, t0, t0.Add(day), p) }},
		{"uppercase name", func() (string, error) { return bundle.Sign(w.key, "Mobile", 1, t0, t0.Add(day), p) }},
		{"name starting with a dot", func() (string, error) { return bundle.Sign(w.key, ".mobile", 1, t0, t0.Add(day), p) }},
		{"name too long", func() (string, error) { return bundle.Sign(w.key, strings.Repeat("a", 65), 1, t0, t0.Add(day), p) }},
		{"name with a slash", func() (string, error) { return bundle.Sign(w.key, "a/b", 1, t0, t0.Add(day), p) }},
		{"version 0", func() (string, error) { return bundle.Sign(w.key, "mobile", 0, t0, t0.Add(day), p) }},
		{"negative version", func() (string, error) { return bundle.Sign(w.key, "mobile", -1, t0, t0.Add(day), p) }},
		{"expiry at issue time", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, t0, p) }},
		{"expiry within the issue second", func() (string, error) {
			return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(500*time.Millisecond), p)
		}},
		{"expiry before issue time", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(-day), p) }},
		{"zero issue time", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, time.Time{}, t0, p) }},
		// RFC 8725 §3.10: a lifetime has a bound (P8, P12).
		{"lifetime over MaxLifetime", func() (string, error) {
			return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(bundle.MaxLifetime+time.Second), p)
		}},
		{"a hundred years", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, t0.AddDate(100, 0, 0), p) }},
		// rampart bundle sign --expires 9999-12-31 (P13): exp in year 10000.
		{"expiry in year 10000", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, year10000, p) }},
		// rampart pin lint's public-suffix error (P8).
		{"include_subdomains on a single-label public suffix", func() (string, error) {
			return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(day), publicSuffixPolicy(t, w, "test"))
		}},
		{"include_subdomains on co.uk", func() (string, error) {
			return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(day), publicSuffixPolicy(t, w, "co.uk"))
		}},
		{"nil policy", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(day), nil) }},
		{"zero policy", func() (string, error) { return bundle.Sign(w.key, "mobile", 1, t0, t0.Add(day), new(pin.Policy)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if jws, err := tc.sign(); err == nil {
				t.Fatalf("Sign succeeded: %s", jws)
			} else if !strings.HasPrefix(err.Error(), "bundle: ") {
				t.Errorf("error %q lacks the bundle: prefix", err)
			}
		})
	}
	// The longest name and the name characters are fine.
	for _, name := range []string{strings.Repeat("a", 64), "0", "mobile-eu_2.x"} {
		if _, err := bundle.Sign(w.key, name, 1, t0, t0.Add(day), p); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
	// So are the longest lifetime, a public suffix pinned without its
	// subdomains, and include_subdomains below a public suffix.
	if _, err := bundle.Sign(w.key, "mobile", 1, t0, t0.Add(bundle.MaxLifetime), p); err != nil {
		t.Errorf("lifetime of exactly MaxLifetime: %v", err)
	}
	exact := mustPolicy(t, "", pin.Domain{Name: "test", Pins: []pin.Pin{w.pinB, w.backupPin}},
		pin.Domain{Name: "payments.test", IncludeSubdomains: true, Pins: []pin.Pin{w.pinB, w.backupPin}})
	if _, err := bundle.Sign(w.key, "mobile", 1, t0, t0.Add(day), exact); err != nil {
		t.Errorf("rules that are not on a public suffix with include_subdomains: %v", err)
	}
}

// year10000 is the exp that rampart bundle sign --expires 9999-12-31
// signed (P13): beyond what RFC 3339 and encoding/json can write.
var year10000 = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)

// publicSuffixPolicy pins a public suffix with include_subdomains.
func publicSuffixPolicy(t testing.TB, w *world, suffix string) *pin.Policy {
	return mustPolicy(t, "", pin.Domain{Name: suffix, IncludeSubdomains: true, Pins: []pin.Pin{w.pinB, w.backupPin}})
}

// refusal is a bundle the client must refuse, and how.
type refusal struct {
	name string
	jws  func(t testing.TB, w *world) string
	// verifyErr is what Verify says; nil when the bundle is valid on its
	// own and only the Updater's state (floor, name) refuses it.
	verifyErr error
	updateErr error
}

func refusals() []refusal {
	day := 24 * time.Hour
	month := 30 * day
	return []refusal{
		{"tampered payload", func(t testing.TB, w *world) string {
			h, p, s := parts(w.sign(t, 8))
			i := len(p) / 2
			c := byte('A')
			if p[i] == 'A' {
				c = 'B'
			}
			return h + "." + p[:i] + string(c) + p[i+1:] + "." + s
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"tampered signature", func(t testing.TB, w *world) string {
			h, p, s := parts(w.sign(t, 8))
			c := byte('A')
			if s[5] == 'A' {
				c = 'B'
			}
			return h + "." + p + "." + s[:5] + string(c) + s[6:]
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"wrong key under a trusted kid", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.otherKey, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"unknown kid", func(t testing.TB, w *world) string {
			return signWith(t, w.otherKey, "mobile", 8, t0, t0.Add(month), w.bundlePolicy(t))
		}, bundle.ErrUnknownKey, bundle.ErrUnknownKey},
		{"alg none", func(t testing.TB, w *world) string {
			_, p, _ := parts(w.sign(t, 8))
			return b64(fmt.Sprintf(`{"alg":"none","kid":%q,"typ":%q}`, kid(t, w.key), bundle.Type)) + "." + p + "."
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"HS256 keyed with the public key", func(t testing.TB, w *world) string {
			pubPEM, err := bundle.MarshalPublicKey(w.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			return signRaw(t, jose.HS256, pubPEM, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"alg of another key type", func(t testing.TB, w *world) string {
			_, p, s := parts(w.sign(t, 8))
			return b64(fmt.Sprintf(`{"alg":"ES384","kid":%q,"typ":%q}`, kid(t, w.key), bundle.Type)) + "." + p + "." + s
		}, bundle.ErrBadSignature, bundle.ErrBadSignature},
		{"rollback", func(t testing.TB, w *world) string { return w.sign(t, 6) }, nil, bundle.ErrRollback},
		{"equivocation", func(t testing.TB, w *world) string {
			other := mustPolicy(t, "", pin.Domain{Name: apiHost, Pins: []pin.Pin{w.backupPin, w.pinB}})
			return signWith(t, w.key, "mobile", 7, t0, t0.Add(month), other)
		}, nil, bundle.ErrRollback},
		{"equivocation in dates", func(t testing.TB, w *world) string {
			return signWith(t, w.key, "mobile", 7, t0, t0.Add(2*month), w.bundlePolicy(t))
		}, nil, bundle.ErrRollback},
		{"expired", func(t testing.TB, w *world) string {
			return signWith(t, w.key, "mobile", 8, t0.Add(-month), t0.Add(time.Hour), w.bundlePolicy(t))
		}, bundle.ErrExpired, bundle.ErrExpired},
		{"not yet valid", func(t testing.TB, w *world) string {
			return signWith(t, w.key, "mobile", 8, t0.Add(time.Hour+6*time.Minute), t0.Add(month), w.bundlePolicy(t))
		}, bundle.ErrNotYetValid, bundle.ErrNotYetValid},
		{"another bundle name", func(t testing.TB, w *world) string {
			return signWith(t, w.key, "desktop", 8, t0, t0.Add(month), w.bundlePolicy(t))
		}, nil, bundle.ErrWrongName},
		{"two parts", func(t testing.TB, w *world) string {
			h, p, _ := parts(w.sign(t, 8))
			return h + "." + p
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"four parts", func(t testing.TB, w *world) string { return w.sign(t, 8) + ".AAAA" }, bundle.ErrMalformed, bundle.ErrMalformed},
		{"bad base64", func(t testing.TB, w *world) string {
			h, p, s := parts(w.sign(t, 8))
			return h + "." + p[:10] + "!" + p[11:] + "." + s
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"padded base64", func(t testing.TB, w *world) string {
			h, p, s := parts(w.sign(t, 8))
			return h + "." + p + "." + s + "=="
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"non-canonical base64", func(t testing.TB, w *world) string {
			// Signatures are 64 bytes: the last base64url character
			// carries 4 unused bits, which must be zero.
			h, p, s := parts(w.sign(t, 8))
			last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", s[len(s)-1])
			return h + "." + p + "." + s[:len(s)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1])
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"line break inside", func(t testing.TB, w *world) string {
			h, p, s := parts(w.sign(t, 8))
			return h + "." + p[:10] + "\n" + p[10:] + "." + s
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"JSON serialization", func(t testing.TB, w *world) string {
			obj, err := jose.ParseSignedCompact(w.sign(t, 8), []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			return obj.FullSerialize()
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"two signatures", func(t testing.TB, w *world) string {
			s, err := jose.NewMultiSigner([]jose.SigningKey{{Algorithm: jose.ES256, Key: w.key}, {Algorithm: jose.ES256, Key: w.otherKey}},
				new(jose.SignerOptions).WithType(bundle.Type).WithHeader("kid", kid(t, w.key)))
			if err != nil {
				t.Fatal(err)
			}
			obj, err := s.Sign(payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
			if err != nil {
				t.Fatal(err)
			}
			return obj.FullSerialize()
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"no typ", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, map[string]any{"kid": kid(t, w.key)}, payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"typ JWT", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, map[string]any{"kid": kid(t, w.key), "typ": "JWT"}, payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"crit header", func(t testing.TB, w *world) string {
			h := w.header(t, w.key)
			h["crit"] = []string{"exp"}
			h["exp"] = 1
			return signRaw(t, jose.ES256, w.key, h, payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"embedded jwk header", func(t testing.TB, w *world) string {
			h := w.header(t, w.key)
			h["jwk"] = jose.JSONWebKey{Key: w.key.Public()}
			return signRaw(t, jose.ES256, w.key, h, payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"unknown payload member", func(t testing.TB, w *world) string {
			p := payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t)))
			p = append(p[:len(p)-1], `,"pins_for_all":true}`...)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), p)
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"payload member in other case", func(t testing.TB, w *world) string {
			p := strings.Replace(string(payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t)))), `"version"`, `"Version"`, 1)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), []byte(p))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"duplicate payload member", func(t testing.TB, w *world) string {
			p := payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t)))
			p = append(p[:len(p)-1], `,"version":9}`...)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), p)
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"missing exp", func(t testing.TB, w *world) string {
			p := fmt.Sprintf(`{"bundle":"mobile","version":8,"iat":%d,"policy":%s}`, t0.Unix(), policyJSON(t, w.bundlePolicy(t)))
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), []byte(p))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"fractional version", func(t testing.TB, w *world) string {
			p := strings.Replace(string(payloadJSON("mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t)))), `"version":8`, `"version":8.5`, 1)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), []byte(p))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"version 0", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 0, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"bad bundle name", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("Mobile", 8, t0, t0.Add(month), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"payload not JSON", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), []byte("mobile 8"))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"policy with one pin in enforce mode", func(t testing.TB, w *world) string {
			pol := fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"pins":[%q]}]}`, apiHost, w.pinB)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), pol))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"policy with an unknown field", func(t testing.TB, w *world) string {
			pol := fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"pins":[%q,%q],"enforce":false}]}`, apiHost, w.pinB, w.backupPin)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), pol))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"policy as a string", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), `"domains: []"`))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"lifetime over MaxLifetime", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(bundle.MaxLifetime+time.Second), policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"expiry in year 10000", func(t testing.TB, w *world) string {
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, year10000, policyJSON(t, w.bundlePolicy(t))))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"include_subdomains on a public suffix", func(t testing.TB, w *world) string {
			pol := fmt.Sprintf(`{"version":1,"domains":[{"domain":"test","include_subdomains":true,"pins":[%q,%q]}]}`, w.pinB, w.backupPin)
			return signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 8, t0, t0.Add(month), pol))
		}, bundle.ErrMalformed, bundle.ErrMalformed},
		{"oversized", func(t testing.TB, w *world) string {
			return w.sign(t, 8) + strings.Repeat("A", bundle.MaxSize)
		}, bundle.ErrMalformed, bundle.ErrMalformed},
	}
}

// Each refused bundle is refused by Verify and by an Updater, with the
// same sentinel error, and leaves the Updater's policy as it was.
func TestRefusals(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	now := t0.Add(time.Hour)
	for _, tc := range refusals() {
		t.Run(tc.name, func(t *testing.T) {
			jws := tc.jws(t, w)
			b, err := bundle.Verify(jws, w.keys, now)
			switch {
			case tc.verifyErr == nil && err != nil:
				t.Errorf("Verify: %v, want success (only the Updater's state refuses this bundle)", err)
			case tc.verifyErr != nil && !errors.Is(err, tc.verifyErr):
				t.Errorf("Verify: err = %v, want %v", err, tc.verifyErr)
			case tc.verifyErr != nil && b != nil:
				t.Errorf("Verify returned a bundle with error %v", err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "bundle: ") {
				t.Errorf("error %q lacks the bundle: prefix", err)
			}

			clk := newClock()
			u, v := w.updater(t, cp, clk, "")
			cp.set(w.sign(t, 7))
			if err := u.Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			before := v.Policy()
			cp.set(jws)
			err = u.Update(context.Background())
			if !errors.Is(err, tc.updateErr) {
				t.Fatalf("Update: err = %v, want %v", err, tc.updateErr)
			}
			if v.Policy() != before {
				t.Error("the Verifier's policy changed")
			}
			st := u.State()
			if st.Version != 7 || st.Source != bundle.SourceNetwork || st.Rejected != 1 || st.Updates != 1 ||
				st.ConsecutiveFailures != 1 || st.LastError != err.Error() {
				t.Errorf("state after refusal: %+v", st)
			}
		})
	}
}

// A bundle whose policy cannot be combined with the embedded one is
// refused: here its default report URI lands on the control plane, which
// the embedded policy pins without a report URI of its own (a report
// loop).
func TestRefuseInvalidCombination(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, v := w.updater(t, cp, newClock(), "")
	p := mustPolicy(t, "https://"+cpHost+"/v1/reports", pin.Domain{Name: payHost, Pins: []pin.Pin{w.pinB, w.backupPin}})
	cp.set(signWith(t, w.key, "mobile", 1, t0, t0.Add(time.Hour*24), p))
	if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrMalformed) || !errors.Is(err, pin.ErrReportLoop) {
		t.Fatalf("err = %v, want ErrMalformed wrapping pin.ErrReportLoop", err)
	}
	if v.Policy() != w.embedded {
		t.Error("policy changed")
	}
}

// Exactly at exp the bundle has expired; up to ClockSkew ahead of its
// issue time it is valid.
func TestValidityBoundaries(t *testing.T) {
	w := newWorld(t)
	jws := w.sign(t, 1)
	exp := t0.Add(30 * 24 * time.Hour)
	for _, tc := range []struct {
		now  time.Time
		want error
	}{
		{t0.Add(-bundle.ClockSkew), nil},
		{t0.Add(-bundle.ClockSkew - time.Second), bundle.ErrNotYetValid},
		{exp.Add(-time.Second), nil},
		{exp, bundle.ErrExpired},
	} {
		if _, err := bundle.Verify(jws, w.keys, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("at %s: err = %v, want %v", tc.now, err, tc.want)
		}
	}
	if _, err := bundle.Verify(jws, nil, t0); !errors.Is(err, bundle.ErrUnknownKey) {
		t.Errorf("nil keys: err = %v, want ErrUnknownKey", err)
	}
	// typ may be written with its application/ prefix, in any case (RFC
	// 7515 §4.1.9).
	p := payloadJSON("mobile", 8, t0, exp, policyJSON(t, w.bundlePolicy(t)))
	alt := signRaw(t, jose.ES256, w.key, map[string]any{"kid": kid(t, w.key), "typ": "application/Rampart-Pin-Bundle+JWS"}, p)
	if _, err := bundle.Verify(alt, w.keys, t0); err != nil {
		t.Errorf("typ with application/ prefix: %v", err)
	}
}

// Key rotation: a client trusting the old and the new key accepts bundles
// signed by either; one trusting only the new key refuses the old one's.
func TestKeyRotation(t *testing.T) {
	w := newWorld(t)
	oldKey, newKey := mustKey(t, "ES256"), mustKey(t, "EdDSA")
	both, err := bundle.NewKeys(oldKey.Public(), newKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if ids := both.IDs(); len(ids) != 2 {
		t.Fatalf("IDs = %v", ids)
	}
	fromOld := signWith(t, oldKey, "mobile", 1, t0, t0.Add(time.Hour), w.bundlePolicy(t))
	fromNew := signWith(t, newKey, "mobile", 2, t0, t0.Add(time.Hour), w.bundlePolicy(t))
	for _, jws := range []string{fromOld, fromNew} {
		if _, err := bundle.Verify(jws, both, t0); err != nil {
			t.Error(err)
		}
	}
	onlyNew, _ := bundle.NewKeys(newKey.Public())
	if _, err := bundle.Verify(fromOld, onlyNew, t0); !errors.Is(err, bundle.ErrUnknownKey) {
		t.Errorf("old key after rotation: err = %v, want ErrUnknownKey", err)
	}

	// Through an Updater: version 1 from the old key, then version 2
	// from the new one.
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, _ := w.updater(t, cp, newClock(), "")
	u.Keys = both
	u.Now = func() time.Time { return t0.Add(time.Minute) }
	for i, jws := range []string{fromOld, fromNew} {
		cp.set(jws)
		if err := u.Update(context.Background()); err != nil {
			t.Fatalf("bundle %d: %v", i+1, err)
		}
	}
	if st := u.State(); st.Version != 2 || st.KeyID != kid(t, newKey) {
		t.Errorf("state = %+v", st)
	}
}

// The status of a failed fetch is named in the error.
func TestUnexpectedStatus(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, _ := w.updater(t, cp, newClock(), "")
	cp.setStatus(http.StatusServiceUnavailable)
	err := u.Update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable") {
		t.Fatalf("err = %v, want one naming 503", err)
	}
	if st := u.State(); st.Rejected != 0 || st.ConsecutiveFailures != 1 {
		t.Errorf("state = %+v", st)
	}
}

// A bundle carries the policy's CT logs and SCT rules, signed: an
// updated client learns the logs its rules count.
func TestBundleCarriesCTLogs(t *testing.T) {
	w := newWorld(t)
	var logs []pin.CTLog
	for i := range 2 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		l, err := pin.NewCTLog(der, fmt.Sprint("operator ", i), "")
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	ds := w.bundlePolicy(t).Domains()
	ds[0].RequireSCTs = true
	p, err := pin.NewPolicyWithCTLogs("", logs, ds...)
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, "ES256")
	keys, _ := bundle.NewKeys(key.Public())
	jws, err := bundle.Sign(key, "mobile", 1, t0, t0.Add(24*time.Hour), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Verify(jws, keys, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Policy.CTLogs(); len(got) != 2 || got[1].ID != logs[1].ID || !b.Policy.Domains()[0].RequireSCTs {
		t.Errorf("the bundle's policy: %d logs, rule %+v", len(got), b.Policy.Domains()[0])
	}
}
