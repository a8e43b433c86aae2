package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/ratelimit"
)

// Redis stopped mid-run under a Limiter: the open edge rule falls back to
// this instance's limiter (and counts it), the closed business rule
// refuses; both use Redis again once it is back.
func TestLimiterRedisOutage(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	port := freePort(t)
	srv := startRedis(t, bin, port)
	c := newClient(t, &redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	reg := prometheus.NewRegistry()
	l := &ratelimit.Limiter{
		Store:      New(c, Options{Prefix: "outage"}),
		Metrics:    ratelimit.NewMetrics(reg),
		RetryStore: 100 * time.Millisecond,
		Rules: []ratelimit.Rule{
			{Name: "edge", Limit: ratelimit.PerMinute(3, 3), By: []ratelimit.By{ratelimit.ByAddr}},
			{Name: "withdraw", Limit: ratelimit.PerMinute(100, 100)},
		},
	}
	ctx := context.Background()
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	get := func(addr string) int {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr + ":1000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	// Up: Redis decides.
	if code := get("192.0.2.1"); code != 200 {
		t.Fatalf("edge, Redis up: %d", code)
	}
	if d, err := l.Allow(ctx, "withdraw", "acct"); err != nil || !d.Allowed {
		t.Fatalf("withdraw, Redis up: %+v %v", d, err)
	}

	// Down.
	srv.Process.Kill()
	srv.Wait()
	start := time.Now()
	if _, err := l.Allow(ctx, "withdraw", "acct"); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Errorf("closed rule, Redis down: %v, want ErrUnavailable", err)
	}
	codes := []int{get("192.0.2.9"), get("192.0.2.9"), get("192.0.2.9"), get("192.0.2.9")}
	if codes[0] != 200 || codes[2] != 200 || codes[3] != 429 {
		t.Errorf("open rule, Redis down: %v, want the local limiter's 200 200 200 429", codes)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("deciding with Redis down took %v", elapsed)
	}
	if n := metricValue(t, reg, "rampart_ratelimit_fallbacks_total", "edge"); n < 4 {
		t.Errorf("fallbacks counted: %v", n)
	}

	// Back, on the same port: both rules use Redis again, by themselves.
	startRedisOn(t, bin, port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := l.Allow(ctx, "withdraw", "acct")
		if err == nil && d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed rule did not recover: %+v %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := metricValue(t, reg, "rampart_ratelimit_fallbacks_total", "edge")
	time.Sleep(150 * time.Millisecond) // past RetryStore
	if code := get("192.0.2.50"); code != 200 {
		t.Errorf("edge after recovery: %d", code)
	}
	if after := metricValue(t, reg, "rampart_ratelimit_fallbacks_total", "edge"); after != before {
		t.Errorf("the edge rule still falls back after recovery (%v -> %v)", before, after)
	}
	keys, err := c.Keys(ctx, "outage:*").Result()
	if err != nil || len(keys) == 0 {
		t.Errorf("no keys in the restarted Redis: %v %v", keys, err)
	}
}

// startRedisOn starts a redis-server again on a port a killed one used.
func startRedisOn(t *testing.T, bin string, port int) {
	t.Helper()
	startRedis(t, bin, port)
}

// metricValue reads a rule's counter from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "rule" && lp.GetValue() == rule {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
