package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// A misspelt or unknown filter is a 400 naming it, not an answer for
// everything: a script counting one domain's rogue-key reports must not
// count every domain's because of a typo.
func TestAdminAPIRefusesUnknownParameters(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)

	for _, tc := range []struct {
		method, path string
		want         []string // in the message
	}{
		{"GET", "/v1/admin/reports?domian=nothing", []string{`unknown parameter "domian"`, "did you mean domain?"}},
		{"GET", "/v1/admin/reports?format=csv", []string{`unknown parameter "format"`, "domain, since, until"}},
		{"GET", "/v1/admin/reports/summary?range=7d", []string{`unknown parameter "range"`}},
		// limit does not apply to the summary: refused, not ignored.
		{"GET", "/v1/admin/reports/summary?limit=5", []string{`unknown parameter "limit"`}},
		{"GET", "/v1/admin/bundles?nmae=mobile", []string{`unknown parameter "nmae"`, "did you mean name?"}},
		{"POST", "/v1/admin/bundles?force=1", []string{`unknown parameter "force"`, "takes no parameters"}},
		{"GET", "/v1/admin/reports?domain=a.test&domain=b.test", []string{"domain given 2 times"}},
		{"GET", "/v1/admin/reports?domain=%3Cscript%3E", []string{"domain", "not a host name"}},
		{"GET", "/v1/admin/reports?served_pin=sha256/abc", []string{"served_pin: want an SPKI pin"}},
		{"GET", "/v1/admin/reports?served_pin=" + strings.ReplaceAll(pin.FromCertificate(rogue.Cert).String(), "/", "%2F") + "+", []string{"served_pin"}},
		{"GET", "/v1/admin/reports?app_version=1%E2%80%AE0", []string{"app_version"}},
	} {
		code, body := e.admin(t, tc.method, tc.path, nil)
		if code != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s, want 400", tc.method, tc.path, code, body)
			continue
		}
		msg := errorMessage(t, body)
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %s: %q lacks %q", tc.method, tc.path, msg, w)
			}
		}
	}
	// The known ones still work, a trailing dot and capitals included.
	for _, path := range []string{"/v1/admin/reports?domain=API.payments.test.", "/v1/admin/reports/summary?domain=api.payments.test&mode=enforce",
		"/v1/admin/bundles?name=mobile", "/v1/admin/reports?served_pin=" + strings.ReplaceAll(pin.FromCertificate(rogue.Cert).String(), "+", "%2B")} {
		code, body := e.admin(t, "GET", path, nil)
		wantStatus(t, path, code, http.StatusOK, body)
		if strings.Contains(path, "/reports?") && len(decode[groupsResponse](t, body).Groups) != 1 {
			t.Errorf("%s: %s, want the one group", path, body)
		}
	}
}

// The admin 401 says what to send in words a terminal shows as they are:
// no HTML-escaped <token> (\u003ctoken\u003e) in the JSON.
func TestAdmin401IsReadableJSON(t *testing.T) {
	e := newEnv(t, nil)
	code, _, body := e.do(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "no token", code, http.StatusUnauthorized, body)
	if strings.Contains(string(body), `\u003c`) || strings.ContainsAny(errorMessage(t, body), "<>") {
		t.Errorf("401 body %s", body)
	}
	if msg := errorMessage(t, body); !strings.Contains(msg, "Authorization: Bearer") || !strings.Contains(msg, "admin token") {
		t.Errorf("401 says %q", msg)
	}
}

// FuzzDashboardFilter: any query string is either refused with an *Error
// of status 400 (a message safe to show) or read as a filter the store
// can take: a known range or since before until, at most 400 days, a
// known mode, a host name, an SPKI pin, a row count in bounds; and the
// filter's own links read back as the same filter.
func FuzzDashboardFilter(f *testing.F) {
	e := newEnv(f, nil)
	for _, q := range []string{"", "range=7d&domain=api.payments.test&mode=enforce", "since=2026-01-01&until=2026-01-02",
		"served_pin=sha256%2FAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D", "rows=100", "domian=x", "range=7d&since=2026-01-01",
		"app_version=5.1.0", "domain=%E2%80%AE", "until=2026-01-01T00:00:00.5Z", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = raw
		d, err := e.srv.dashboardFilter(r)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Code != http.StatusBadRequest || he.Msg == "" {
				t.Fatalf("%q: %v, want a 400 *Error", raw, err)
			}
			return
		}
		if !d.Since.Before(d.Until) || d.Until.Sub(d.Since) > 400*24*time.Hour || d.Rows < 1 || d.Rows > maxRows {
			t.Fatalf("%q: %+v", raw, d)
		}
		if d.Mode != "" && d.Mode != "enforce" && d.Mode != "report-only" {
			t.Fatalf("%q: mode %q", raw, d.Mode)
		}
		if d.Domain != "" && checkHostname("domain", d.Domain) != nil {
			t.Fatalf("%q: domain %q", raw, d.Domain)
		}
		if d.ServedPin != "" {
			if _, err := pin.Parse(d.ServedPin); err != nil {
				t.Fatalf("%q: served pin %q", raw, d.ServedPin)
			}
		}
		if strings.IndexFunc(d.AppVersion, isControl) >= 0 {
			t.Fatalf("%q: app version %q", raw, d.AppVersion)
		}
		link := string(d.Link("/"))
		r2 := httptest.NewRequest("GET", link, nil)
		d2, err := e.srv.dashboardFilter(r2)
		if err != nil || d2.Domain != d.Domain || d2.Mode != d.Mode || d2.ServedPin != d.ServedPin || d2.AppVersion != d.AppVersion ||
			d2.Rows != d.Rows || d2.Range != d.Range || (d.Custom && (!d2.Since.Equal(d.Since) || !d2.Until.Equal(d.Until))) {
			t.Fatalf("%q: the filter's link %q reads back as %+v (%v), not %+v", raw, link, d2, err, d)
		}
	})
}
