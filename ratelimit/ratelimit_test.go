package ratelimit

import (
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update

	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func TestBurstThenRate(t *testing.T) {
	c := newClock()
	m := &Memory{Now: c.Now}
	l := PerSecond(10, 5)
	ctx := context.Background()
	for i := range 5 {
		d, _ := m.Allow(ctx, "k", l)
		if !d.Allowed || d.Remaining != 4-i {
			t.Fatalf("event %d: %+v, want allowed with %d remaining", i, d, 4-i)
		}
	}
	d, _ := m.Allow(ctx, "k", l)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond || d.Remaining != 0 || d.ResetAfter != 500*time.Millisecond {
		t.Fatalf("6th event: %+v, want denied, retry after 100ms, reset after 500ms", d)
	}
	// Denied events consume nothing: retrying while denied does not push
	// the next admission back.
	for range 100 {
		m.Allow(ctx, "k", l)
	}
	c.Add(100 * time.Millisecond)
	if d, _ := m.Allow(ctx, "k", l); !d.Allowed {
		t.Fatalf("after retry-after: %+v, want allowed", d)
	}
	// Other keys are independent.
	if d, _ := m.Allow(ctx, "other", l); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("other key: %+v", d)
	}
}

// Admitted over a window = burst + elapsed × rate, within 1, with many
// goroutines on one key.
func TestAccuracyUnderContention(t *testing.T) {
	c := newClock()
	m := &Memory{Now: c.Now}
	l := PerSecond(100, 20)
	var admitted, denied atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if d, _ := m.Allow(context.Background(), "k", l); d.Allowed {
					admitted.Add(1)
				} else {
					denied.Add(1)
				}
			}
		}()
	}
	// 3 s of simulated time in 10 ms steps. The clock moves on only once
	// a request has been denied since the last step: the goroutines have
	// drained what it made available, however slowly a loaded machine
	// schedules them (capacity left unclaimed for more than the burst
	// would be lost, and the count short for a reason that is not the
	// limiter's).
	for range 300 {
		for d := denied.Load(); denied.Load() == d; {
			time.Sleep(50 * time.Microsecond)
		}
		c.Add(10 * time.Millisecond)
	}
	// Let the goroutines take what the last steps made available, however
	// slowly a loaded machine schedules them: stop once nothing has been
	// admitted for 100 ms.
	for last := int64(-1); ; {
		time.Sleep(100 * time.Millisecond)
		if n := admitted.Load(); n == last {
			break
		} else {
			last = n
		}
	}
	close(stop)
	wg.Wait()
	want := int64(20 + 3*100)
	if got := admitted.Load(); got < want-1 || got > want+1 {
		t.Errorf("admitted %d in 3 s at 100/s burst 20, want %d±1", got, want)
	}
}

func TestIdleKeysEvicted(t *testing.T) {
	c := newClock()
	m := &Memory{Now: c.Now, MaxKeys: 64 * 10}
	l := PerSecond(1, 1)
	for i := range 10_000 {
		m.Allow(context.Background(), fmt.Sprint(i), l)
	}
	if n := m.Len(); n > 64*10 {
		t.Errorf("%d keys held, bound is %d", n, 64*10)
	}
	c.Add(2 * time.Second)
	for i := range 5000 {
		m.Allow(context.Background(), fmt.Sprint("x", i), l)
	}
	if n := m.Len(); n > 64*10 {
		t.Errorf("%d keys held after idle, bound is %d", n, 64*10)
	}
}

func TestInvalidLimit(t *testing.T) {
	m := &Memory{}
	for _, l := range []Limit{{}, {Rate: 1, Period: time.Second}, {Rate: 1, Burst: 1}, {Rate: 2, Period: 1, Burst: 1}} {
		if _, err := m.Allow(context.Background(), "k", l); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	for _, n := range []int{-1} {
		if _, err := m.AllowN(context.Background(), "k", PerSecond(1, 1), n); err == nil {
			t.Errorf("AllowN with n = %d accepted", n)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy", "203.0.113.7:5555", nil, "203.0.113.7"},
		{"spoofed header from an untrusted peer is ignored", "203.0.113.7:5555", []string{"198.51.100.1"}, "203.0.113.7"},
		{"trusted proxy", "10.0.0.2:443", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written leftmost value is not believed", "10.0.0.2:443", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.2:443", []string{"1.2.3.4, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several headers", "10.0.0.2:443", []string{"1.2.3.4", "198.51.100.1, 10.1.1.1"}, "198.51.100.1"},
		{"garbage stops the walk", "10.0.0.2:443", []string{"1.2.3.4, not-an-ip, 10.1.1.1"}, "10.1.1.1"},
		{"all trusted", "10.0.0.2:443", []string{"10.3.3.3"}, "10.3.3.3"},
		{"mapped IPv4 peer", "[::ffff:203.0.113.7]:1", nil, "203.0.113.7"},
		{"IPv6", "[2001:db8::1]:1", nil, "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientAddr(r, trusted); got.String() != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAddrKey(t *testing.T) {
	a := AddrKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := AddrKey(netip.MustParseAddr("2001:db8:1:2:bbbb::9"))
	c := AddrKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c || a != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 keys %s %s %s: want one /64 per subscriber", a, b, c)
	}
	if k := AddrKey(netip.MustParseAddr("192.0.2.1")); k != "192.0.2.1" {
		t.Errorf("IPv4 key %s", k)
	}
}
