package token

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkValidate measures one token check: cached (a client reusing
// its token: hash, lookup, expiry, Revoked unset) and uncached (parse,
// signature, claims), for ES256 (the default) and EdDSA. Targets: 2 µs
// and 150 µs.
//
//	go test -run '^$' -bench Validate -count 10 ./token
func BenchmarkValidate(b *testing.B) {
	clock := newClock()
	ctx := context.Background()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		k := newKey(b, alg)
		tok := k.mint(b, claimsAt(clock.Now()), nil)
		for _, bc := range []struct {
			name  string
			cache int
		}{{"cached", 0}, {"uncached", -1}} {
			b.Run("alg="+string(alg)+"/"+bc.name, func(b *testing.B) {
				v := staticValidator(clock, k)
				v.CacheSize = bc.cache
				if _, err := v.Validate(ctx, tok, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Validate(ctx, tok, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
