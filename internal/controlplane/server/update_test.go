package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/ratelimit"
)

// Update changes what a running server does for the requests that follow
// (rampart serve's SIGHUP): the bundle keys, the report limit, the
// Cache-Control of bundles, the access log, the retention. Invalid
// settings change nothing.
func TestUpdateAppliesToTheNextRequests(t *testing.T) {
	oldKey, oldKeys := bundleKey(t)
	newKey, newKeys := bundleKey(t)
	e := newEnv(t, func(c *Config) { c.BundleKeys = oldKeys })
	now := e.clock.Now()
	code, body := e.admin(t, "POST", "/v1/admin/bundles", []byte(signBundle(t, oldKey, "mobile", 1, now)))
	wantStatus(t, "publish under the old key", code, http.StatusCreated, body)

	var logs syncBuffer
	set := e.srv.Settings()
	set.BundleKeys = newKeys
	set.ReportLimit = ratelimit.PerSecond(1, 1)
	set.BundleCacheControl = "public, max-age=5"
	set.AccessLog = slog.New(slog.NewTextHandler(&logs, nil))
	if err := e.srv.Update(set); err != nil {
		t.Fatal(err)
	}
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(signBundle(t, oldKey, "mobile", 2, now)))
	wantStatus(t, "publish under the old key after the update", code, http.StatusBadRequest, body)
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(signBundle(t, newKey, "mobile", 2, now)))
	wantStatus(t, "publish under the new key", code, http.StatusCreated, body)
	e.clock.Add(3 * time.Second) // past the bundle cache
	if code, h, _ := e.do(t, "GET", "/v1/bundles/mobile", nil); code != http.StatusOK || h.Get("Cache-Control") != "public, max-age=5" {
		t.Errorf("bundle after the update: %d, Cache-Control %q", code, h.Get("Cache-Control"))
	}
	rogue, _ := rogueLeaves(t)
	report := rfc7469(t, "api.payments.test", pin.Enforce, rogue, now)
	if code, _, _ := e.postReport(t, report); code != http.StatusNoContent {
		t.Errorf("first report: %d", code)
	}
	if code, _, _ := e.postReport(t, report); code != http.StatusTooManyRequests {
		t.Errorf("second report within a second under 1/s: %d, want 429", code)
	}
	if !strings.Contains(logs.String(), "path=/v1/bundles/mobile") {
		t.Errorf("no access log after it was turned on: %q", logs.String())
	}

	bad := e.srv.Settings()
	bad.ReportLimit = ratelimit.Limit{Rate: 1, Period: time.Second} // no burst
	if err := e.srv.Update(bad); err == nil {
		t.Error("Update accepted a limit without a burst")
	}
	if got := e.srv.Settings(); got.ReportLimit != set.ReportLimit || got.BundleKeys != newKeys {
		t.Errorf("a refused Update changed the settings: %+v", got)
	}
}

// A shorter retention deletes what it no longer keeps without waiting
// for the hourly run.
func TestUpdateRetentionPrunesAtOnce(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Retention = 90 * 24 * time.Hour })
	rogue, _ := rogueLeaves(t)
	c, _, err := parseReport(rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	old := store.Report{Received: e.clock.Now().Add(-48 * time.Hour), Source: "192.0.2.1", Content: c}
	if err := e.store.Reports().AddReports(context.Background(), []store.Report{old}); err != nil {
		t.Fatal(err)
	}
	set := e.srv.Settings()
	set.Retention = 24 * time.Hour
	if err := e.srv.Update(set); err != nil {
		t.Fatal(err)
	}
	// The deletion runs in the server's background loop: wait for it,
	// however long this machine takes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := e.store.Reports().Total(context.Background(), store.ReportFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reports older than the new retention still stored", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
