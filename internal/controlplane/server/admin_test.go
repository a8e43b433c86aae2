package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// The admin API wants the token, compares it in constant time, and stops
// a guesser.
func TestAdminAuth(t *testing.T) {
	e := newEnv(t, nil)
	code, h, body := e.do(t, "GET", "/v1/admin/reports", nil)
	if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") != `Bearer realm="rampart-admin"` {
		t.Errorf("no token: %d %v %s", code, h, body)
	}
	// Ten failures (the one above included) are allowed a minute.
	for i := range 9 {
		code, _, _ := e.do(t, "GET", "/v1/admin/reports", nil, "Authorization", fmt.Sprint("Bearer wrong-", i))
		if code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, code)
		}
	}
	code, h, _ = e.do(t, "GET", "/v1/admin/reports", nil, "Authorization", "Bearer wrong-again")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("11th wrong token: %d %v, want 429 with Retry-After", code, h)
	}
	// Even the right token is refused while the address is blocked: a
	// guesser must not learn that a guess was right.
	code, _, body = e.do(t, "GET", "/v1/admin/reports", nil, "Authorization", "Bearer "+testToken)
	wantStatus(t, "right token while blocked", code, http.StatusTooManyRequests, body)
	e.clock.Add(6 * time.Second)
	code, _, body = e.do(t, "GET", "/v1/admin/reports", nil, "Authorization", "bearer "+testToken)
	wantStatus(t, "right token after the wait (scheme is case-insensitive)", code, http.StatusOK, body)
	if code, _, _ := e.do(t, "POST", "/v1/admin/bundles", nil, "Authorization", "Basic "+testToken); code != http.StatusTooManyRequests && code != http.StatusUnauthorized {
		t.Errorf("Basic scheme: %d", code)
	}
}

func TestNewRefusesWeakToken(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := New(Config{Store: e.store, AdminToken: "short"}); err == nil {
		t.Error("a 5-character admin token was accepted")
	}
}

// Filters select what the admin API lists and counts.
func TestReportFiltersAndSummary(t *testing.T) {
	e := newEnv(t, nil)
	rogue, other := rogueLeaves(t)
	post := func(body []byte) {
		t.Helper()
		code, _, b := e.postReport(t, body)
		wantStatus(t, "report", code, http.StatusNoContent, b)
	}
	start := e.clock.Now()
	post(rfc7469(t, "api.payments.test", pin.Enforce, rogue, start))
	post(rfc7469(t, "api.payments.test", pin.ReportOnly, rogue, start))
	e.clock.Add(2 * time.Hour)
	post(rfc7469(t, "cdn.payments.test", pin.Enforce, other, start))
	post(trustKit(t, "api.payments.test", "5.0.1", "d1", true, other))
	post(trustKit(t, "api.payments.test", "5.0.1", "d2", true, other))

	list := func(q url.Values) []api.ReportGroup {
		t.Helper()
		code, body := e.admin(t, "GET", "/v1/admin/reports?"+q.Encode(), nil)
		wantStatus(t, q.Encode(), code, http.StatusOK, body)
		return decode[groupsResponse](t, body).Groups
	}
	count := func(gs []api.ReportGroup) (n int64) {
		for _, g := range gs {
			n += g.Reports
		}
		return n
	}
	rogueKey := pin.FromCertificate(rogue.Cert).String()
	for _, tc := range []struct {
		q    url.Values
		want int64
	}{
		{url.Values{}, 5},
		{url.Values{"domain": {"cdn.payments.test"}}, 1},
		{url.Values{"domain": {"API.payments.test"}}, 4},
		{url.Values{"mode": {"report-only"}}, 1},
		{url.Values{"mode": {"enforce"}}, 4},
		{url.Values{"served_pin": {rogueKey}}, 2},
		{url.Values{"app_version": {"5.0.1"}}, 2},
		{url.Values{"since": {start.Add(time.Hour).Format(time.RFC3339)}}, 3},
		{url.Values{"until": {start.Add(time.Hour).Format(time.RFC3339)}}, 2},
		{url.Values{"limit": {"1"}}, -1},
	} {
		gs := list(tc.q)
		if tc.want == -1 {
			if len(gs) != 1 {
				t.Errorf("limit=1: %d groups", len(gs))
			}
			continue
		}
		if got := count(gs); got != tc.want {
			t.Errorf("%s: %d reports, want %d", tc.q.Encode(), got, tc.want)
		}
	}
	for _, q := range []string{"mode=audit", "since=yesterday", "limit=0", "limit=5000", "since=2026-01-02&until=2026-01-01"} {
		if code, body := e.admin(t, "GET", "/v1/admin/reports?"+q, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}

	code, body := e.admin(t, "GET", "/v1/admin/reports/summary?since="+url.QueryEscape(start.Add(-time.Hour).Format(time.RFC3339)), nil)
	wantStatus(t, "summary", code, http.StatusOK, body)
	sum := decode[api.Summary](t, body)
	var inTimeline int64
	for _, b := range sum.Timeline {
		inTimeline += b.Reports
	}
	if sum.Total != 5 || inTimeline != 5 || len(sum.Timeline) < 3 {
		t.Errorf("summary total %d, timeline sum %d over %d buckets; want 5 and 5", sum.Total, inTimeline, len(sum.Timeline))
	}
	if len(sum.ByServedPin) != 2 || sum.ByServedPin[0].Reports != 3 || sum.ByServedPin[0].Clients != 3 {
		t.Errorf("by served pin = %+v, want the other key first with 3 reports from 3 clients (one address, two devices)", sum.ByServedPin)
	}
	if len(sum.ByDomain) != 2 || sum.ByDomain[0].Key != "api.payments.test" || sum.ByDomain[0].Reports != 4 {
		t.Errorf("by domain = %+v", sum.ByDomain)
	}
	found := false
	for _, a := range sum.ByApp {
		if a.Key == "ios 5.0.1" && a.Reports == 2 && a.Clients == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("by app = %+v, want ios 5.0.1 with 2 reports from 2 devices", sum.ByApp)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	e.postReport(t, []byte("{"))
	code, _, body := e.do(t, "GET", "/healthz", nil)
	wantStatus(t, "healthz", code, http.StatusOK, body)
	code, _, body = e.do(t, "GET", "/metrics", nil)
	wantStatus(t, "metrics", code, http.StatusOK, body)
	for _, want := range []string{`rampart_reports_total{result="accepted"} 1`, `rampart_reports_total{result="invalid"} 1`, "rampart_report_batch_size_count 1", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(body), "rampart_ca_issuing_expiry") {
		t.Error("a CA expiry metric without a CA")
	}
	e.store.Close()
	code, _, body = e.do(t, "GET", "/healthz", nil)
	if code != http.StatusServiceUnavailable || strings.Contains(string(body), "sql") {
		t.Errorf("healthz with the database closed: %d %s", code, body)
	}
}

// With a CA renewing certificates, its expiry is a metric to alert on.
func TestCAExpiryMetric(t *testing.T) {
	expiry := time.Date(2027, 11, 25, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, func(c *Config) { c.CAExpiry = expiry })
	code, _, body := e.do(t, "GET", "/metrics", nil)
	wantStatus(t, "metrics", code, http.StatusOK, body)
	if want := "rampart_ca_issuing_expiry_timestamp_seconds 1.827144e+09"; !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %q", want)
	}
}

// Close commits what was queued; nothing acknowledged is lost, nothing
// new is accepted.
func TestCloseCommitsQueued(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReportLimit.Rate = -1 })
	rogue, _ := rogueLeaves(t)
	body := rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now())
	acked := make(chan int, 50)
	for range 50 {
		go func() {
			code, _, _ := e.postReport(t, body)
			acked <- code
		}()
	}
	n := 0
	for range 50 {
		if <-acked == http.StatusNoContent {
			n++
		}
	}
	if err := e.srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, _, _ := e.postReport(t, body)
	if code != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d, want 503", code)
	}
	total, err := e.store.Reports().Total(context.Background(), store.ReportFilter{})
	if err != nil || total != int64(n) {
		t.Errorf("%d stored, %d acknowledged (%v)", total, n, err)
	}
}

// Reports older than the retention are deleted at Start (and hourly).
func TestRetention(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)
	e.clock.Add(48 * time.Hour)
	s, err := New(Config{Store: e.store, AdminToken: testToken, Now: e.clock.Now, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := e.store.Reports().Total(context.Background(), store.ReportFilter{})
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s, %d reports older than the retention remain (%v)", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close(context.Background())
}
