package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/rampartsec/rampart/ratelimit"
)

// A business rule inside a handler: no more than 100 swaps a minute per
// API key, whatever instance serves the request (with a shared store).
func ExampleLimiter_Allow() {
	limiter := &ratelimit.Limiter{
		Rules: []ratelimit.Rule{{Name: "swap", Limit: ratelimit.PerMinute(100, 100)}},
	}
	swap := func(w http.ResponseWriter, r *http.Request, keyID string) {
		d, err := limiter.Allow(r.Context(), "swap", keyID)
		switch {
		case err != nil:
			ratelimit.Unavailable(w, err) // 503: the store failed and the rule fails closed
			return
		case !d.Allowed:
			ratelimit.Deny(w, d) // 429, Retry-After, RateLimit fields, problem+json
			return
		}
		ratelimit.Headers(w.Header(), d)
		// ... perform the swap ...
	}
	_ = swap

	admitted := 0
	for range 101 {
		if d, _ := limiter.Allow(context.Background(), "swap", "key_a"); d.Allowed {
			admitted++
		}
	}
	d, _ := limiter.Allow(context.Background(), "swap", "key_a")
	fmt.Println(admitted, d.Allowed, d.RetryAfter.Round(100*time.Millisecond) <= 600*time.Millisecond)
	// Output: 100 false true
}
