package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/rampartsec/rampart/pin"
)

// syncBuffer is a bytes.Buffer for a logger written from handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// One access log line per request: method, path without the query,
// status, duration with its unit in the name, size, client address; never
// the admin token, a query string or a body.
func TestAccessLogLinePerRequest(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(c *Config) { c.AccessLog = slog.New(slog.NewJSONHandler(&logs, nil)) })
	rogue, _ := rogueLeaves(t)

	e.do(t, "GET", "/healthz", nil)
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)
	e.admin(t, "GET", "/v1/admin/reports?domain=api.payments.test&since=2026-01-01", nil)
	e.do(t, "GET", "/v1/admin/reports", nil, "Authorization", "Bearer wrong-token-guess")
	e.do(t, "POST", "/login", []byte(url.Values{"token": {testToken}}.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	e.do(t, "GET", "/no/such/page?x=1", nil)

	type line struct {
		Msg        string   `json:"msg"`
		Method     string   `json:"method"`
		Path       string   `json:"path"`
		Status     int      `json:"status"`
		DurationMS *float64 `json:"duration_ms"`
		Bytes      *int64   `json:"bytes"`
		Remote     string   `json:"remote"`
	}
	var got []line
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		if l.Msg == "request" {
			got = append(got, l)
		}
	}
	want := []struct {
		method, path string
		status       int
	}{
		{"GET", "/healthz", 200}, {"POST", "/v1/reports", 204}, {"GET", "/v1/admin/reports", 200},
		{"GET", "/v1/admin/reports", 401}, {"POST", "/login", 303},
		// The test client follows the redirects, without a cookie jar.
		{"GET", "/", 303}, {"GET", "/login", 200},
		{"GET", "/no/such/page", 404},
	}
	if len(got) != len(want) {
		t.Fatalf("%d request lines, want %d:\n%s", len(got), len(want), logs.String())
	}
	for i, w := range want {
		l := got[i]
		if l.Method != w.method || l.Path != w.path || l.Status != w.status || l.DurationMS == nil || *l.DurationMS < 0 ||
			l.Bytes == nil || l.Remote != "127.0.0.1" {
			t.Errorf("line %d: %+v, want %s %s %d with duration_ms, bytes and remote 127.0.0.1", i, l, w.method, w.path, w.status)
		}
	}
	for _, secret := range []string{testToken, "wrong-token-guess", "domain=", "since=", "x=1", "BEGIN CERTIFICATE"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the access log holds %q", secret)
		}
	}
}
