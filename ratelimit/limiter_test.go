package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampartsec/rampart/auth"
)

// "No more than 100 stablecoin swaps per minute per API key": the 101st
// swap in a minute is refused with the right headers; another key is not
// affected.
func TestHundredSwapsPerMinute(t *testing.T) {
	c := newClock()
	l := &Limiter{Now: c.Now, Store: &Memory{Now: c.Now}, Rules: []Rule{{Name: "swap", Limit: PerMinute(100, 100)}}}
	ctx := context.Background()
	for i := range 100 {
		if d, err := l.Allow(ctx, "swap", "key_a"); err != nil || !d.Allowed {
			t.Fatalf("swap %d: %+v %v", i+1, d, err)
		}
	}
	d, err := l.Allow(ctx, "swap", "key_a")
	if err != nil || d.Allowed || d.Rule != "swap" || d.RetryAfter != 600*time.Millisecond {
		t.Fatalf("swap 101: %+v %v, want denied, retry after 600 ms", d, err)
	}
	rec := httptest.NewRecorder()
	Deny(rec, d)
	var p problem
	json.Unmarshal(rec.Body.Bytes(), &p)
	h := rec.Header()
	if rec.Code != 429 || h.Get("Retry-After") != "1" || h.Get("Content-Type") != "application/problem+json" ||
		h.Get("RateLimit-Policy") != `"swap";q=100;w=60` || h.Get("RateLimit") != `"swap";r=0;t=60` ||
		p.Status != 429 || p.Rule != "swap" || p.Title != "Too Many Requests" || !strings.Contains(p.Detail, "100 per 1m0s") {
		t.Errorf("429 answer: %d %v %s", rec.Code, h, rec.Body)
	}
	if d, _ := l.Allow(ctx, "swap", "key_b"); !d.Allowed || d.Remaining != 99 {
		t.Errorf("another key: %+v", d)
	}
	c.Add(600 * time.Millisecond)
	if d, _ := l.Allow(ctx, "swap", "key_a"); !d.Allowed {
		t.Errorf("600 ms later: %+v, want one more swap", d)
	}
	if _, err := l.Allow(ctx, "withdraw", "key_a"); !errors.Is(err, ErrUnknownRule) {
		t.Errorf("unknown rule: %v", err)
	}
}

func do(t *testing.T, h http.Handler, peer string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", "/v1/payments", nil)
	r.RemoteAddr = peer
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })

// Edge rules: every response carries the fields; the first denial is a
// 429 with problem details; spoofed X-Forwarded-For from an untrusted
// peer changes nothing, from a trusted proxy it names the client.
func TestMiddleware(t *testing.T) {
	c := newClock()
	l := &Limiter{Now: c.Now, Store: &Memory{Now: c.Now},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Rules:          []Rule{{Name: "per-address", Limit: PerSecond(5, 5), By: []By{ByAddr}}}}
	h := l.Middleware(ok)
	for i := range 5 {
		w := do(t, h, "203.0.113.7:1000", "X-Forwarded-For", "198.51.100."+string(rune('1'+i)))
		if w.Code != 200 || w.Header().Get("RateLimit-Policy") != `"per-address";q=5;w=1` ||
			w.Header().Get("RateLimit") != `"per-address";r=`+string(rune('4'-i))+`;t=1` {
			t.Fatalf("request %d: %d %v", i+1, w.Code, w.Header())
		}
	}
	w := do(t, h, "203.0.113.7:1000", "X-Forwarded-For", "198.51.100.99")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"rule":"per-address"`) {
		t.Errorf("6th request (spoofed X-Forwarded-For from an untrusted peer): %d %v %s", w.Code, w.Header(), w.Body)
	}
	// Behind the trusted proxy, X-Forwarded-For names the client.
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		if w := do(t, h, "10.0.0.2:443", "X-Forwarded-For", client); w.Code != 200 {
			t.Errorf("client %s behind the proxy: %d", client, w.Code)
		}
	}
	// The client-written leftmost value does not matter.
	for range 4 {
		do(t, h, "10.0.0.2:443", "X-Forwarded-For", "1.2.3.4, 198.51.100.1")
	}
	if w := do(t, h, "10.0.0.2:443", "X-Forwarded-For", "5.6.7.8, 198.51.100.1"); w.Code != 429 {
		t.Errorf("198.51.100.1 with varying leftmost values: %d, want 429", w.Code)
	}
}

// Keys by credential, client and route; rules apply only to their routes.
func TestKeyParts(t *testing.T) {
	c := newClock()
	l := &Limiter{Now: c.Now, Store: &Memory{Now: c.Now}, Rules: []Rule{
		{Name: "token", Limit: PerMinute(2, 2), By: []By{ByAddr, ByRoute}, Routes: []string{"POST /oauth2/token"}},
		{Name: "credential", Limit: PerMinute(3, 3), By: []By{ByCredential}},
		{Name: "client", Limit: PerMinute(4, 4), By: []By{ByClient}},
	}}
	h := l.Middleware(ok)
	req := func(method, path, peer string, mod func(*http.Request)) int {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = peer
		if mod != nil {
			mod(r)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i, want := range []int{200, 200, 429} {
		if got := req("POST", "/oauth2/token", "192.0.2.1:1", nil); got != want {
			t.Errorf("token request %d: %d, want %d", i+1, got, want)
		}
	}
	if got := req("GET", "/oauth2/jwks", "192.0.2.1:1", nil); got != 200 {
		t.Errorf("a route the rule does not name: %d", got)
	}
	key := func(k string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-API-Key", k) } }
	for i, want := range []int{200, 200, 200, 429} {
		// The same credential from four addresses: stolen and spread.
		if got := req("GET", "/x", "192.0.2."+string(rune('1'+i))+":1", key("rk_live_stolen")); got != want {
			t.Errorf("credential use %d: %d, want %d", i+1, got, want)
		}
	}
	asClient := func(id string) func(*http.Request) {
		return func(r *http.Request) {
			*r = *r.WithContext(auth.NewContext(r.Context(), &auth.Principal{ClientID: id}))
		}
	}
	for i, want := range []int{200, 200, 200, 200, 429} {
		if got := req("GET", "/y", "192.0.2.9:1", asClient("shop")); got != want {
			t.Errorf("client request %d: %d, want %d", i+1, got, want)
		}
	}
	if got := req("GET", "/y", "192.0.2.9:1", asClient("other")); got != 200 {
		t.Errorf("another client: %d", got)
	}
}

// failing is a store that fails while down is set.
type failing struct {
	Store
	down  atomic.Bool
	calls atomic.Int64
}

func (f *failing) AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return Decision{}, errors.New("connection refused")
	}
	return f.Store.AllowN(ctx, key, l, n)
}

// The store fails: open rules fall back to this instance and count it,
// closed rules refuse; both recover when it returns.
func TestFailureModes(t *testing.T) {
	c := newClock()
	store := &failing{Store: &Memory{Now: c.Now}}
	reg := prometheus.NewRegistry()
	l := &Limiter{Now: c.Now, Store: store, Metrics: NewMetrics(reg), Rules: []Rule{
		{Name: "edge", Limit: PerSecond(2, 2), By: []By{ByAddr}},
		{Name: "withdraw", Limit: PerMinute(10, 10)},
	}}
	ctx := context.Background()
	store.down.Store(true)
	_, err := l.Allow(ctx, "withdraw", "acct")
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("closed rule, store down: %v, want ErrUnavailable", err)
	}
	// The rule is found by type, never read out of the message.
	if ue, ok := errors.AsType[*UnavailableError](err); !ok || ue.Rule != "withdraw" || ue.Err == nil {
		t.Errorf("closed rule, store down: %#v, want an *UnavailableError for withdraw", err)
	}
	rec := httptest.NewRecorder()
	Unavailable(rec, &UnavailableError{Rule: "a (rule b)", Err: errors.New("(rule c)")})
	var p problem
	json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != 503 || p.Rule != "a (rule b)" || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Unavailable: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	h := l.Middleware(ok)
	codes := []int{do(t, h, "192.0.2.1:1").Code, do(t, h, "192.0.2.1:1").Code, do(t, h, "192.0.2.1:1").Code}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Errorf("open rule, store down: %v, want the local limit (200 200 429)", codes)
	}
	if n := testutil.ToFloat64(l.Metrics.fallbacks.WithLabelValues("edge")); n != 3 {
		t.Errorf("fallbacks counted: %v", n)
	}
	if n := testutil.ToFloat64(l.Metrics.errors.WithLabelValues("withdraw")); n != 1 {
		t.Errorf("store errors counted: %v", n)
	}
	// While the store is known down, it is not hammered.
	calls := store.calls.Load()
	l.Allow(ctx, "withdraw", "acct")
	if store.calls.Load() != calls {
		t.Error("the store was tried again within RetryStore")
	}
	w := do(t, l.Middleware(ok), "192.0.2.2:1")
	if w.Code != 200 {
		t.Errorf("another address: %d", w.Code)
	}
	store.down.Store(false)
	c.Add(time.Second)
	if d, err := l.Allow(ctx, "withdraw", "acct"); err != nil || !d.Allowed {
		t.Errorf("closed rule after recovery: %+v %v", d, err)
	}
	if w := do(t, h, "192.0.2.3:1"); w.Code != 200 {
		t.Errorf("open rule after recovery: %d", w.Code)
	}
	// A closed edge rule answers 503.
	l2 := &Limiter{Now: c.Now, Store: store, Rules: []Rule{{Name: "strict", Limit: PerSecond(2, 2), By: []By{ByAddr}, Failure: FailClosed}}}
	store.down.Store(true)
	if w := do(t, l2.Middleware(ok), "192.0.2.1:1"); w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("closed edge rule, store down: %d %v", w.Code, w.Header())
	}
}

// A shadow rule counts what it would deny and denies nothing.
func TestShadow(t *testing.T) {
	c := newClock()
	reg := prometheus.NewRegistry()
	l := &Limiter{Now: c.Now, Store: &Memory{Now: c.Now}, Metrics: NewMetrics(reg),
		Rules: []Rule{{Name: "new-limit", Limit: PerMinute(1, 1), Shadow: true}}}
	ctx := context.Background()
	l.Allow(ctx, "new-limit", "k")
	d, err := l.Allow(ctx, "new-limit", "k")
	if err != nil || !d.Allowed || !d.Shadowed {
		t.Errorf("second event: %+v %v, want allowed and shadowed", d, err)
	}
	if n := testutil.ToFloat64(l.Metrics.decisions.WithLabelValues("new-limit", "shadow_denied")); n != 1 {
		t.Errorf("shadow_denied = %v", n)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
trusted_proxies: [10.0.0.0/8, 192.0.2.1]
rules:
  - name: per-address
    rate: 20
    burst: 40
    by: [addr]
  - name: token-endpoint
    rate: 10
    per: 1m
    by: [addr, route]
    routes: ["POST /oauth2/token"]
    failure: closed
  - name: swap
    kind: business
    rate: 100
    per: 1m
    shadow: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[1].String() != "192.0.2.1/32" || len(c.Rules) != 3 {
		t.Fatalf("%+v", c)
	}
	r0, r1, r2 := c.Rules[0], c.Rules[1], c.Rules[2]
	if r0.Kind != Edge || r0.Failure != FailOpen || r0.Limit != (Limit{20, time.Second, 40}) ||
		r1.Failure != FailClosed || r1.Limit != (Limit{10, time.Minute, 10}) ||
		r2.Kind != Business || r2.Failure != FailClosed || !r2.Shadow {
		t.Errorf("rules %+v", c.Rules)
	}
	for _, tc := range []struct{ yaml, msg string }{
		{"rules: [{name: a, rate: 1, limit: 2}]", "field limit not found"},
		{"rules: [{name: A, rate: 1}]", `rule "A"`},
		{"rules: [{name: a, rate: 0}]", "rate 0"},
		{"rules: [{name: a, rate: 1, per: soon}]", `per "soon"`},
		{"rules: [{name: a, rate: 1, by: [ip]}]", `by "ip"`},
		{"rules: [{name: a, rate: 1, kind: business, by: [addr]}]", "business rule"},
		{"rules: [{name: a, rate: 1, failure: maybe}]", `failure "maybe"`},
		{"rules: [{name: a, rate: 1, routes: ['GET /{']}]", "routes"},
		{"rules: [{name: a, rate: 1}, {name: a, rate: 2}]", "named twice"},
		{"trusted_proxies: [nowhere]", "trusted proxy"},
	} {
		if _, err := ParseConfig([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.msg)
		}
	}
}

// problem is the body of a refusal: RFC 9457 problem details with the
// rule's extension members.
type problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	Rule       string `json:"rule,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// Check refuses what Init refuses, and changes nothing: the stores stay
// nil, and a Limiter checked can still be given its fields.
func TestLimiterCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"bad name", []Rule{{Name: "Swap", Limit: PerMinute(1, 1)}}, "want a name"},
		{"zero limit", []Rule{{Name: "swap"}}, "invalid limit"},
		{"named twice", []Rule{{Name: "a", Limit: PerMinute(1, 1)}, {Name: "a", Limit: PerMinute(2, 2)}}, "named twice"},
		{"business rule with routes", []Rule{{Name: "a", Kind: Business, Routes: []string{"/x"}, Limit: PerMinute(1, 1)}}, "business rule"},
		{"bad route", []Rule{{Name: "a", Routes: []string{"GET /x", "GET /x"}, Limit: PerMinute(1, 1)}}, "routes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Limiter{Rules: tc.rules}
			err := l.Check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want an error about %q", err, tc.want)
			}
			if l.Store != nil || l.Fallback != nil {
				t.Error("Check filled in the stores")
			}
			if ierr := l.Init(); ierr == nil || ierr.Error() != err.Error() {
				t.Errorf("Init = %v, want Check's %v", ierr, err)
			}
		})
	}
	l := &Limiter{Rules: []Rule{{Name: "swap", Limit: PerMinute(100, 100)}}}
	if err := l.Check(); err != nil || l.Store != nil {
		t.Fatalf("Check = %v (store %v), want nil and no store", err, l.Store)
	}
	if d, err := l.Allow(context.Background(), "swap", "k"); err != nil || !d.Allowed {
		t.Errorf("Allow after Check = %+v, %v", d, err)
	}
}
