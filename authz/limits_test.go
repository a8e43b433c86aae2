package authz

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/ratelimit"
)

const sampleConfig = `
domain: edge
descriptors:
  - key: client
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: path
    value: /v1/swaps
    rate_limit: {unit: second, requests_per_unit: 2, name: swaps}
    descriptors:
      - key: client
        rate_limit: {unit: second, requests_per_unit: 1, name: swaps-per-client, replaces: [{name: swaps}]}
  - key: path
    value: /files*
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: tenant
    value: big*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: path
    value: /healthz
    rate_limit: {unlimited: true}
  - key: path
    value: /new
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: path
    value: /closed
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: remote_address
    descriptors:
      - key: path
        rate_limit: {unit: minute, requests_per_unit: 2}
`

// clock is a settable clock for the limits.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newSample(t *testing.T) (*Limits, *clock) {
	t.Helper()
	c, err := ParseLimitConfig("sample.yaml", []byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l, err := NewLimits(LimitsOptions{Store: &ratelimit.Memory{Now: clk.Now}, Now: clk.Now}, c)
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

func entries(kv ...string) []Entry {
	var es []Entry
	for i := 0; i+1 < len(kv); i += 2 {
		es = append(es, Entry{kv[i], kv[i+1]})
	}
	return es
}

// codes sends one request with the descriptors ds, n times, and returns
// the overall codes.
func codes(t *testing.T, l *Limits, n int, ds ...[]Entry) []Code {
	t.Helper()
	var out []Code
	for range n {
		var rs []LimitRequest
		for _, d := range ds {
			rs = append(rs, LimitRequest{Entries: d})
		}
		code, _, err := l.ShouldRateLimit(context.Background(), "edge", rs, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, code)
	}
	return out
}

func wantCodes(t *testing.T, what string, got []Code, want ...Code) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

// TestDescriptorMatching: the tree is walked as envoyproxy/ratelimit
// walks it.
func TestDescriptorMatching(t *testing.T) {
	t.Parallel()
	l, clk := newSample(t)
	// A key without a value: each value counted apart.
	wantCodes(t, "client a", codes(t, l, 4, entries("client", "a")), OK, OK, OK, OverLimit)
	wantCodes(t, "client b", codes(t, l, 1, entries("client", "b")), OK)
	// A descriptor with more entries than the tree is deep has no limit.
	wantCodes(t, "too deep", codes(t, l, 5, entries("client", "a", "x", "y")), OK, OK, OK, OK, OK)
	// An entry no node matches: no limit.
	wantCodes(t, "unknown key", codes(t, l, 5, entries("nothing", "x")), OK, OK, OK, OK, OK)
	// A wildcard value: per value, with the prefix.
	wantCodes(t, "/files/a", codes(t, l, 3, entries("path", "/files/a")), OK, OK, OverLimit)
	wantCodes(t, "/files/b", codes(t, l, 1, entries("path", "/files/b")), OK)
	// share_threshold: every value the wildcard matches counts as one.
	wantCodes(t, "bigco", codes(t, l, 1, entries("tenant", "bigco")), OK)
	wantCodes(t, "bigger", codes(t, l, 2, entries("tenant", "bigger")), OK, OverLimit)
	// Unlimited, shadow mode (never refuses), zero (always refuses).
	wantCodes(t, "unlimited", codes(t, l, 3, entries("path", "/healthz")), OK, OK, OK)
	wantCodes(t, "shadow", codes(t, l, 3, entries("path", "/new")), OK, OK, OK)
	wantCodes(t, "zero", codes(t, l, 1, entries("path", "/closed")), OverLimit)
	// Nested: the limit of the last entry's node.
	wantCodes(t, "nested", codes(t, l, 3, entries("remote_address", "10.0.0.1", "path", "/a")), OK, OK, OverLimit)
	wantCodes(t, "nested, other path", codes(t, l, 1, entries("remote_address", "10.0.0.1", "path", "/b")), OK)
	wantCodes(t, "the parent alone has no limit", codes(t, l, 4, entries("remote_address", "10.0.0.1")), OK, OK, OK, OK)
	// GCRA refills: a minute later client a has a whole quota again.
	clk.Add(time.Minute)
	wantCodes(t, "client a, a minute later", codes(t, l, 4, entries("client", "a")), OK, OK, OK, OverLimit)
}

// TestReplaces: a limit named in another matching limit's replaces does
// not apply to that request.
func TestReplaces(t *testing.T) {
	t.Parallel()
	l, _ := newSample(t)
	both := [][]Entry{entries("path", "/v1/swaps"), entries("path", "/v1/swaps", "client", "a")}
	// swaps (2/s) is replaced by swaps-per-client (1/s): the second
	// request is over swaps-per-client's limit, and swaps counts nothing.
	wantCodes(t, "both", codes(t, l, 2, both...), OK, OverLimit)
	// Alone, swaps applies, its budget untouched by the two above.
	wantCodes(t, "swaps alone", codes(t, l, 3, entries("path", "/v1/swaps")), OK, OK, OverLimit)
}

// TestStatuses: the statuses carry the limit, the remaining budget and
// the time until the reset; the headers are the IETF RateLimit fields.
func TestStatuses(t *testing.T) {
	t.Parallel()
	l, _ := newSample(t)
	ctx := context.Background()
	req := []LimitRequest{{Entries: entries("client", "a")}, {Entries: entries("nothing", "x")}, {Entries: entries("path", "/healthz")}}
	code, sts, err := l.ShouldRateLimit(ctx, "edge", req, 0)
	if err != nil || code != OK || len(sts) != 3 {
		t.Fatalf("%v %v %v", code, sts, err)
	}
	if s := sts[0]; s.Limit == nil || s.Limit.RequestsPerUnit != 3 || s.Limit.Unit != Minute || s.Remaining != 2 || s.UntilReset != 20*time.Second {
		t.Errorf("client a: %+v, want 3/minute, 2 remaining, 20 s to the whole quota", s)
	}
	if s := sts[1]; s.Limit != nil || s.Code != OK {
		t.Errorf("no limit: %+v", s)
	}
	if s := sts[2]; !s.Unlimited || s.Limit != nil {
		t.Errorf("unlimited: %+v", s)
	}
	// Two more with hits_addend 2: the second is refused, retry in 20 s.
	code, sts, _ = l.ShouldRateLimit(ctx, "edge", req[:1], 2)
	if code != OK {
		t.Fatalf("hits 2 with 2 left: %v", code)
	}
	code, sts, _ = l.ShouldRateLimit(ctx, "edge", []LimitRequest{{Entries: entries("client", "a"), Hits: 1}}, 5)
	if code != OverLimit || sts[0].UntilReset != 20*time.Second {
		t.Errorf("over the limit: %v %+v, want OverLimit, 20 s", code, sts[0])
	}
	h := Headers(sts)
	want := [][2]string{
		{"RateLimit-Policy", `"` + ruleName("edge.client") + `";q=3;w=60`},
		{"RateLimit", `"` + ruleName("edge.client") + `";r=0;t=20`},
		{"Retry-After", "20"},
	}
	if len(h) != 3 || h[0] != want[0] || h[1] != want[1] || h[2] != want[2] {
		t.Errorf("Headers %q, want %q", h, want)
	}
}

// TestBadLimitRequests: each malformed request is refused, precisely.
func TestBadLimitRequests(t *testing.T) {
	t.Parallel()
	l, _ := newSample(t)
	ctx := context.Background()
	long := strings.Repeat("x", maxEntryBytes)
	many := make([]LimitRequest, maxDescriptors+1)
	for i := range many {
		many[i] = LimitRequest{Entries: entries("client", "a")}
	}
	for _, c := range []struct {
		name   string
		domain string
		ds     []LimitRequest
		hits   uint64
		want   error
	}{
		{"no domain", "", []LimitRequest{{Entries: entries("client", "a")}}, 0, ErrBadLimitRequest},
		{"an unknown domain", "other", []LimitRequest{{Entries: entries("client", "a")}}, 0, ErrUnknownDomain},
		{"no descriptors", "edge", nil, 0, ErrBadLimitRequest},
		{"a descriptor without entries", "edge", []LimitRequest{{}}, 0, ErrBadLimitRequest},
		{"an empty key", "edge", []LimitRequest{{Entries: entries("", "a")}}, 0, ErrBadLimitRequest},
		{"an oversized entry", "edge", []LimitRequest{{Entries: entries("client", long)}}, 0, ErrBadLimitRequest},
		{"too many descriptors", "edge", many, 0, ErrBadLimitRequest},
		{"huge hits", "edge", []LimitRequest{{Entries: entries("client", "a")}}, maxHits + 1, ErrBadLimitRequest},
		{"an override with an unknown unit", "edge", []LimitRequest{{Entries: entries("client", "a"), Override: &RateLimit{RequestsPerUnit: 1, Unit: "fortnight"}}}, 0, ErrBadLimitRequest},
	} {
		if _, _, err := l.ShouldRateLimit(ctx, c.domain, c.ds, c.hits); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestOverride: a limit the engine sends applies instead of the file's.
func TestOverride(t *testing.T) {
	t.Parallel()
	l, _ := newSample(t)
	req := []LimitRequest{{Entries: entries("client", "o"), Override: &RateLimit{RequestsPerUnit: 1, Unit: Hour}}}
	var got []Code
	for range 2 {
		code, sts, err := l.ShouldRateLimit(context.Background(), "edge", req, 0)
		if err != nil {
			t.Fatal(err)
		}
		if sts[0].Limit.RequestsPerUnit != 1 || sts[0].Limit.Unit != Hour {
			t.Fatalf("limit %+v, want the override", sts[0].Limit)
		}
		got = append(got, code)
	}
	wantCodes(t, "override", got, OK, OverLimit)
}

// TestFailureModes: a store outage decides in memory (open) or is
// ErrUnavailable (closed).
func TestFailureModes(t *testing.T) {
	t.Parallel()
	c, err := ParseLimitConfig("sample.yaml", []byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ratelimit.FailureMode{ratelimit.FailOpen, ratelimit.FailClosed} {
		l, err := NewLimits(LimitsOptions{Store: downStore{}, Failure: mode, Logger: discard}, c)
		if err != nil {
			t.Fatal(err)
		}
		code, _, err := l.ShouldRateLimit(context.Background(), "edge", []LimitRequest{{Entries: entries("client", "a")}}, 0)
		switch mode {
		case ratelimit.FailOpen:
			if err != nil || code != OK {
				t.Errorf("open: %v %v, want OK from memory", code, err)
			}
		case ratelimit.FailClosed:
			if !errors.Is(err, ratelimit.ErrUnavailable) {
				t.Errorf("closed: %v %v, want ErrUnavailable", code, err)
			}
		}
	}
}

type downStore struct{}

func (downStore) AllowN(context.Context, string, ratelimit.Limit, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("connection refused")
}

// TestGCRAWindowBound: whatever the arrivals, in any interval of length
// w a key gets at most q × (1 + w/unit) requests, and never 2q within a
// moment (fixed windows admit 2q around their boundary).
func TestGCRAWindowBound(t *testing.T) {
	t.Parallel()
	c, err := ParseLimitConfig("b.yaml", []byte("domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l, err := NewLimits(LimitsOptions{Store: &ratelimit.Memory{Now: clk.Now}, Now: clk.Now}, c)
	if err != nil {
		t.Fatal(err)
	}
	// Arrivals: bursts and trickles over 5 s, in 10 ms steps.
	var admitted []time.Duration
	start := clk.Now()
	for step := range 500 {
		n := 1
		switch {
		case step%97 == 0:
			n = 30 // a burst
		case step%3 == 0:
			n = 0
		}
		for range n {
			code, _, err := l.ShouldRateLimit(context.Background(), "b", []LimitRequest{{Entries: entries("k", "x")}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if code == OK {
				admitted = append(admitted, clk.Now().Sub(start))
			}
		}
		clk.Add(10 * time.Millisecond)
	}
	for _, w := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second, 3 * time.Second} {
		bound := 10 + int(10*w/time.Second)
		for i := range admitted {
			j := i
			for j < len(admitted) && admitted[j]-admitted[i] < w {
				j++
			}
			if j-i > bound {
				t.Fatalf("%d admitted within %v from %v, bound %d", j-i, w, admitted[i], bound)
			}
		}
	}
	if len(admitted) < 40 {
		t.Fatalf("only %d admitted in 5 s of 10/s", len(admitted))
	}
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	ratelimit.Store
	mu sync.Mutex
	n  int
}

func (c *countingStore) AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Store.AllowN(ctx, key, l, n)
}

// TestDenialsRemembered: a key over its limit is refused without asking
// the store until its retry time, with what the store said; then the
// store is asked again.
func TestDenialsRemembered(t *testing.T) {
	t.Parallel()
	c, err := ParseLimitConfig("sample.yaml", []byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	st := &countingStore{Store: &ratelimit.Memory{Now: clk.Now}}
	l, err := NewLimits(LimitsOptions{Store: st, Now: clk.Now}, c)
	if err != nil {
		t.Fatal(err)
	}
	wantCodes(t, "client a", codes(t, l, 4, entries("client", "a")), OK, OK, OK, OverLimit)
	if st.n != 4 {
		t.Fatalf("%d calls to the store, want 4", st.n)
	}
	clk.Add(10 * time.Second)
	_, sts, _ := l.ShouldRateLimit(context.Background(), "edge", []LimitRequest{{Entries: entries("client", "a")}}, 0)
	if sts[0].Code != OverLimit || sts[0].UntilReset != 10*time.Second || st.n != 4 {
		t.Fatalf("remembered: %+v after %d calls, want OverLimit in 10 s without a call", sts[0], st.n)
	}
	// More hits than were refused are refused too; fewer are asked.
	if _, sts, _ = l.ShouldRateLimit(context.Background(), "edge", []LimitRequest{{Entries: entries("client", "a"), Hits: 3}}, 0); sts[0].Code != OverLimit || st.n != 4 {
		t.Fatalf("3 hits: %+v, %d calls", sts[0], st.n)
	}
	clk.Add(10 * time.Second)
	wantCodes(t, "client a, at its retry time", codes(t, l, 2, entries("client", "a")), OK, OverLimit)
	if st.n != 6 {
		t.Fatalf("%d calls to the store, want 6", st.n)
	}
}
