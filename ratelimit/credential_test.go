package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// A bearer token in JWS compact form counts as one credential whatever its
// signature: an ES256 signature (r, s) and its twin (r, n-s) both verify,
// and token.Validator takes them for one token (security finding E9), so
// they share one budget. Another payload is another credential; API keys
// are keyed whole.
func TestCredentialKeyIgnoresTheJWSSignature(t *testing.T) {
	c := newClock()
	l := &Limiter{Now: c.Now, Store: &Memory{Now: c.Now}, Rules: []Rule{
		{Name: "credential", Limit: PerMinute(2, 2), By: []By{ByCredential}},
	}}
	h := l.Middleware(ok)
	send := func(header, value string) int {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.RemoteAddr = "192.0.2.1:1"
		r.Header.Set(header, value)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	const signed = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiIxIn0"
	for i, tc := range []struct {
		header, value string
		want          int
	}{
		{"Authorization", "Bearer " + signed + ".c2lnbmF0dXJlLW9uZQ", 200},
		{"Authorization", "Bearer " + signed + ".dHdpbi1zaWduYXR1cmU", 200}, // the twin
		{"Authorization", "Bearer " + signed + ".dGhpcmQ", 429},             // the budget of 2 is spent
		{"Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiIyIn0.c2ln", 200},
		{"X-API-Key", "rk_live_a.b.c", 200},
		{"X-API-Key", "rk_live_a.b.d", 200},
	} {
		if got := send(tc.header, tc.value); got != tc.want {
			t.Errorf("request %d (%s: %s): %d, want %d", i+1, tc.header, tc.value, got, tc.want)
		}
	}
}
