package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// A bundle stored with an expiry in year 10000 (RFC 3339 §5.6 has
// four-digit years; Go's time.Time refuses to encode it) must not turn
// the publish, list and summary answers into a 200 with an empty body:
// the data is already stored, so every answer that lists it must still
// be whole, valid JSON.
func TestFarFutureBundleKeepsAdminJSONWhole(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	now := e.clock.Now()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := e.store.Bundles().Publish(ctx, store.Bundle{Name: "mobile", Version: 1, KeyID: "kid-1",
		IssuedAt: now, ExpiresAt: far, PublishedAt: now, JWS: "a.b.c"}); err != nil {
		t.Fatal(err)
	}

	code, body := e.admin(t, "GET", "/v1/admin/bundles?name=mobile", nil)
	wantStatus(t, "bundle list", code, http.StatusOK, body)
	bs := decode[struct {
		Bundles []api.PublishedBundle `json:"bundles"`
	}](t, body).Bundles
	if len(bs) != 1 || !bs[0].ExpiresAt.Equal(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("bundle list: %+v, want one bundle expiring 9999-12-31T23:59:59Z", bs)
	}

	code, body = e.admin(t, "GET", "/v1/admin/reports/summary", nil)
	wantStatus(t, "summary", code, http.StatusOK, body)
	if sum := decode[summary](t, body); len(sum.Bundles) != 1 || sum.Bundles[0].Name != "mobile" {
		t.Errorf("summary bundles: %+v", sum.Bundles)
	}

	code, _, page := e.do(t, "GET", "/", nil, "Cookie", sessionCookie+"="+e.srv.newSession())
	wantStatus(t, "dashboard", code, http.StatusOK, page)
	if !strings.Contains(string(page), "10000-01-01") {
		t.Error("the dashboard does not show the bundle's real expiry")
	}
}

// A stored report body that is not JSON (checked at ingest, so an edit or
// an older bug) leaves the listing whole: that group's report is null.
func TestListingSurvivesABodyThatIsNotJSON(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	c, _, err := parseReport(rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	c.Body = []byte(`{"hostname": "api.payments.test", truncated`)
	if err := e.store.Reports().AddReports(context.Background(), []store.Report{{Received: e.clock.Now(), Source: "192.0.2.1", Content: c}}); err != nil {
		t.Fatal(err)
	}
	code, body := e.admin(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "list", code, http.StatusOK, body)
	gs := decode[groupsResponse](t, body).Groups
	if len(gs) != 1 || string(gs[0].Report) != "null" || gs[0].Hostname != "api.payments.test" {
		t.Errorf("groups: %+v", gs)
	}
}

// An answer that does not encode is a 500 with the cause in the log, and
// nothing of the answer reaches the client.
func TestEncodingErrorIsA500WithALoggedCause(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	h := e.srv.handle(func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, map[string]any{"ratio": math.Inf(1)})
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/admin/something", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", rec.Code, rec.Body)
	}
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got["error"] != "internal error" {
		t.Errorf("body %q (%v), want {\"error\": \"internal error\"}", rec.Body, err)
	}
	if !strings.Contains(logs.String(), "encoding the answer") || !strings.Contains(logs.String(), "unsupported value") {
		t.Errorf("the log does not say why: %s", logs.String())
	}
}
