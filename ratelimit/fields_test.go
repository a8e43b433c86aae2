package ratelimit

import (
	"net/http"
	"slices"
	"testing"
)

// E11 of issue 10: two middlewares on one request (the gateway's before
// and after authentication) and a business decision each add their
// RateLimit-Policy and RateLimit items: the client sees every rule that
// applied (draft-ietf-httpapi-ratelimit-headers §4, a list), including
// the one that denies.
func TestFieldsOfEveryRule(t *testing.T) {
	c := newClock()
	store := &Memory{Now: c.Now}
	before := &Limiter{Now: c.Now, Store: store, Rules: []Rule{{Name: "per-address", Limit: PerSecond(5, 5), By: []By{ByAddr}}}}
	after := &Limiter{Now: c.Now, Store: store, Rules: []Rule{{Name: "per-route", Limit: PerMinute(1, 1), By: []By{ByRoute}, Routes: []string{"/v1/"}}}}
	business := &Limiter{Now: c.Now, Store: store, Rules: []Rule{{Name: "swap", Limit: PerMinute(100, 100)}}}
	h := before.Middleware(after.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := business.Allow(r.Context(), "swap", "key_a")
		if err != nil {
			t.Fatal(err)
		}
		Headers(w.Header(), d)
	})))
	w := do(t, h, "203.0.113.7:1000")
	if got, want := w.Header().Values("RateLimit-Policy"), []string{`"per-address";q=5;w=1`, `"per-route";q=1;w=60`, `"swap";q=100;w=60`}; !slices.Equal(got, want) {
		t.Errorf("RateLimit-Policy %q, want %q", got, want)
	}
	if got, want := w.Header().Values("RateLimit"), []string{`"per-address";r=4;t=1`, `"per-route";r=0;t=60`, `"swap";r=99;t=1`}; !slices.Equal(got, want) {
		t.Errorf("RateLimit %q, want %q", got, want)
	}
	// The second middleware denies: the first's items are still there.
	w = do(t, h, "203.0.113.7:1000")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", w.Code)
	}
	if got, want := w.Header().Values("RateLimit"), []string{`"per-address";r=3;t=1`, `"per-route";r=0;t=60`}; !slices.Equal(got, want) {
		t.Errorf("the 429's RateLimit %q, want %q", got, want)
	}
}

// A Limiter whose rules do not load answers 500 with problem details, as
// its other refusals do, not plain text (second walkthrough 11).
func TestMisconfiguredMiddleware(t *testing.T) {
	l := &Limiter{Rules: []Rule{{Name: "Not A Name", Limit: PerSecond(1, 1), By: []By{ByAddr}}}}
	w := do(t, l.Middleware(ok), "203.0.113.7:1000")
	if w.Code != http.StatusInternalServerError || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("%d %q %s, want 500 problem+json", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

// A request with two credential headers has no credential to key on:
// authentication refuses it (RFC 6750 §2), and keying on the first would
// leave the second uncounted.
func TestCredentialOfTwoHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  http.Header
		want string
	}{
		{"key", http.Header{"X-Api-Key": {"rk_a"}}, "rk_a"},
		{"bearer", http.Header{"Authorization": {"Bearer tok"}}, "tok"},
		{"basic", http.Header{"Authorization": {"Basic abc"}}, ""},
		{"two keys", http.Header{"X-Api-Key": {"rk_a", "rk_b"}}, ""},
		{"two authorizations", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, ""},
		{"key and bearer", http.Header{"X-Api-Key": {"rk_a"}, "Authorization": {"Bearer b"}}, ""},
		{"none", http.Header{}, ""},
	} {
		r := &http.Request{Header: tc.hdr}
		if got := credential(r); got != tc.want {
			t.Errorf("%s: credential = %q, want %q", tc.name, got, tc.want)
		}
	}
}
