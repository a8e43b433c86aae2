package token

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkValidate measures one ES256 token check: cached (a client
// reusing its token: hash, lookup, expiry, Revoked unset) and uncached
// (parse, signature, claims). Targets: 2 µs and 150 µs.
func BenchmarkValidate(b *testing.B) {
	clock := valNewClock()
	k := valNewKey(b, jose.ES256)
	tok := k.mint(b, valClaimsAt(clock.Now()), nil)
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			v := valStatic(clock, k)
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
