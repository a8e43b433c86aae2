package bundle_test

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/pin/bundle"
)

// FuzzVerify checks, for any input, that Verify does not panic, that every
// error wraps exactly one of the documented sentinels, and that every
// success is the input itself, signed (as go-jose alone confirms) by the
// trusted key its kid names under the algorithm of that key, and verifies
// again to the same bundle.
func FuzzVerify(f *testing.F) {
	w := newWorld(f)
	pubs := map[string]crypto.PublicKey{kid(f, w.key): w.key.Public()}
	keys, err := bundle.NewKeys(w.key.Public())
	if err != nil {
		f.Fatal(err)
	}
	for _, alg := range []string{"ES384", "EdDSA"} {
		k := mustKey(f, alg)
		if err := keys.Add(k.Public()); err != nil {
			f.Fatal(err)
		}
		pubs[kid(f, k)] = k.Public()
		f.Add(signWith(f, k, "mobile", 3, t0, t0.Add(time.Hour), w.bundlePolicy(f)))
	}
	valid := w.sign(f, 7)
	h, p, s := parts(valid)
	for _, seed := range []string{
		valid,
		h + "." + p + ".",
		h + "." + p,
		h + "." + p[:len(p)-1] + "." + s,
		h + "." + strings.ToUpper(p) + "." + s,
		b64(`{"alg":"none","typ":"rampart-pin-bundle+jws"}`) + "." + p + ".",
		`{"payload":"` + p + `","protected":"` + h + `","signature":"` + s + `"}`,
		"",
		"..",
	} {
		f.Add(seed)
	}
	for _, r := range refusals() {
		if r.name != "oversized" {
			f.Add(r.jws(f, w))
		}
	}
	now := t0.Add(time.Hour)
	sentinels := []error{bundle.ErrMalformed, bundle.ErrUnknownKey, bundle.ErrBadSignature, bundle.ErrExpired, bundle.ErrNotYetValid}

	f.Fuzz(func(t *testing.T, in string) {
		b, err := bundle.Verify(in, keys, now)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || b != nil || !strings.HasPrefix(err.Error(), "bundle: ") {
				t.Fatalf("error %q wraps %d sentinels (bundle %v), want exactly one and no bundle", err, n, b)
			}
			return
		}
		pub, ok := pubs[b.KeyID]
		if !ok || b.JWS != in {
			t.Fatalf("accepted %q with kid %q", in, b.KeyID)
		}
		obj, err := jose.ParseSignedCompact(in, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA})
		if err != nil {
			t.Fatalf("go-jose does not parse an accepted bundle: %v", err)
		}
		if len(obj.Signatures) != 1 || obj.Signatures[0].Protected.KeyID != b.KeyID {
			t.Fatalf("accepted a bundle with %d signatures, header %+v", len(obj.Signatures), obj.Signatures[0].Protected)
		}
		if _, err := obj.Verify(pub); err != nil {
			t.Fatalf("accepted a bundle that go-jose does not verify under key %s: %v", b.KeyID, err)
		}
		again, err := bundle.Verify(b.JWS, keys, now)
		if err != nil || again.Version != b.Version || again.Name != b.Name || !again.IssuedAt.Equal(b.IssuedAt) ||
			!again.ExpiresAt.Equal(b.ExpiresAt) || policyJSON(t, again.Policy) != policyJSON(t, b.Policy) {
			t.Fatalf("an accepted bundle does not verify again to itself: %v", err)
		}
		if now.Before(b.IssuedAt.Add(-bundle.ClockSkew)) || !now.Before(b.ExpiresAt) {
			t.Fatalf("accepted a bundle valid from %s to %s at %s", b.IssuedAt, b.ExpiresAt, now)
		}
		if b.ExpiresAt.Sub(b.IssuedAt) > bundle.MaxLifetime {
			t.Fatalf("accepted a bundle valid from %s to %s, longer than MaxLifetime", b.IssuedAt, b.ExpiresAt)
		}
		if _, err := b.ExpiresAt.MarshalJSON(); err != nil {
			t.Fatalf("accepted a bundle whose expiry JSON cannot write: %v", err)
		}
	})
}
