package server

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

func (e *testEnv) page(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	code, h, b := e.do(t, "GET", path, nil, "Cookie", sessionCookie+"="+e.srv.newSession())
	return code, h, string(b)
}

var hrefOf = regexp.MustCompile(`id="(export-csv|export-json|export-summary)" href="([^"]+)"`)

// The dashboard's export is for the signed-in browser: links that keep
// the filter (not one percent-encoded parameter name), answered with the
// session, as CSV or JSON; the page also shows the admin API's curl line
// for the same filter. Usability 20 / second 27.
func TestDashboardExportKeepsTheFilter(t *testing.T) {
	e := newEnv(t, nil)
	rogue, other := rogueLeaves(t)
	for _, b := range [][]byte{
		rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()),
		rfc7469(t, "cdn.payments.test", pin.Enforce, other, e.clock.Now()),
		trustKit(t, "api.payments.test", "=HYPERLINK(\"http://evil.test\")", "dev-1", true, rogue),
	} {
		code, _, body := e.postReport(t, b)
		wantStatus(t, "report", code, http.StatusNoContent, body)
	}
	code, _, page := e.page(t, "/?range=7d&domain=api.payments.test&mode=enforce")
	wantStatus(t, "dashboard", code, http.StatusOK, []byte(page))
	links := map[string]string{}
	for _, m := range hrefOf.FindAllStringSubmatch(page, -1) {
		links[m[1]] = html.UnescapeString(m[2])
	}
	if len(links) != 3 {
		t.Fatalf("export links %v", links)
	}
	for name, l := range links {
		if !strings.Contains(l, "range=7d") || !strings.Contains(l, "domain=api.payments.test") || !strings.Contains(l, "mode=enforce") || strings.Contains(l, "%3D") {
			t.Errorf("%s link %q does not keep the filter as parameters", name, l)
		}
	}

	code, h, body := e.page(t, links["export-json"])
	wantStatus(t, "JSON export", code, http.StatusOK, []byte(body))
	var got struct {
		Since  time.Time         `json:"since"`
		Groups []api.ReportGroup `json:"groups"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != 2 || got.Groups[0].Hostname != "api.payments.test" || got.Groups[1].Hostname != "api.payments.test" {
		t.Errorf("JSON export groups %+v, want the two of api.payments.test", got.Groups)
	}
	if want := e.clock.Now().Add(-7 * 24 * time.Hour); got.Since.Sub(want).Abs() > time.Second {
		t.Errorf("since %v, want the 7-day range's %v", got.Since, want)
	}
	if !strings.HasPrefix(h.Get("Content-Disposition"), "attachment;") {
		t.Errorf("Content-Disposition %q", h.Get("Content-Disposition"))
	}

	code, h, body = e.page(t, links["export-csv"])
	wantStatus(t, "CSV export", code, http.StatusOK, []byte(body))
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "id" || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV %q (%s)", rows, h.Get("Content-Type"))
	}
	for _, r := range rows[1:] {
		for _, cell := range r {
			if strings.HasPrefix(cell, "=") {
				t.Errorf("a CSV cell starts with '=': %q (a spreadsheet takes it for a formula)", cell)
			}
		}
	}
	if !strings.Contains(body, `'=HYPERLINK`) {
		t.Errorf("the app version is not in the CSV, neutralized:\n%s", body)
	}

	code, _, body = e.page(t, links["export-summary"])
	wantStatus(t, "summary export", code, http.StatusOK, []byte(body))
	if s := decode[api.Summary](t, []byte(body)); s.Total != 2 {
		t.Errorf("summary export total %d, want 2", s.Total)
	}

	// The exports take the session only, like the dashboard.
	for _, l := range links {
		// The client follows the redirect to the login page.
		code, h, _ := e.do(t, "GET", l, nil, "Authorization", "Bearer "+testToken)
		if code != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "text/html") {
			t.Errorf("%s with a bearer token: %d %s, want the login page", l, code, h.Get("Content-Type"))
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(e.http.URL + links["export-csv"])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("CSV without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The curl line is the admin API's, with the same filter, and works.
	m := regexp.MustCompile(`curl -H &#34;Authorization: Bearer \$RAMPART_ADMIN_TOKEN&#34; &#39;(http://[^&]+(?:&amp;[^&]+)*?)&#39;`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no curl line in the page")
	}
	api := strings.TrimPrefix(html.UnescapeString(m[1]), e.http.URL)
	code, b := e.admin(t, "GET", api, nil)
	wantStatus(t, "the curl line's request", code, http.StatusOK, b)
	if gs := decode[groupsResponse](t, b).Groups; len(gs) != 2 {
		t.Errorf("the curl line's request found %d groups, want 2", len(gs))
	}
}

// The domain filter shows the domain asked for, even one without reports,
// never "all domains" while it filters (usability second 28); unknown
// parameters and bad values are refused with a page saying which.
func TestDashboardFilterTellsTheTruth(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)
	code, _, page := e.page(t, "/?range=7d&domain=nope.example")
	wantStatus(t, "dashboard", code, http.StatusOK, []byte(page))
	if !strings.Contains(page, `<option value="nope.example" selected>`) {
		t.Errorf("the domain filter does not show nope.example as selected")
	}
	if strings.Contains(page, `<option value="" selected>`) {
		t.Errorf("all domains is selected while the page filters by nope.example")
	}
	for q, want := range map[string]string{
		"format=csv":                `unknown parameter &#34;format&#34;`,
		"range=1y":                  `range &#34;1y&#34;: want 24h, 7d, 30d or 90d`,
		"domian=x.test":             "did you mean domain?",
		"range=7d&since=2026-01-01": "give range, or since and until, not both",
		"rows=0":                    "rows: want 1 to 1000",
	} {
		code, _, page := e.page(t, "/?"+q)
		if code != http.StatusBadRequest || !strings.Contains(page, want) || !strings.Contains(page, `id="error"`) {
			t.Errorf("/?%s: %d, want a 400 page saying %q:\n%s", q, code, want, page)
		}
	}
	// A custom range is shown as such.
	code, _, page = e.page(t, "/?since=2026-01-01&until=2026-01-02")
	if code != http.StatusOK || !strings.Contains(page, `id="active-filter"`) || !strings.Contains(page, "2026-01-01 00:00 UTC") {
		t.Errorf("custom range: %d", code)
	}
}

// A served key is a filter, and a report group has a page of its own:
// its counts, the served chain with each certificate's pin, the pins the
// client expected, the latest deliveries, and the first report as
// received (usability 22, second 28).
func TestDashboardDrillDown(t *testing.T) {
	e := newEnv(t, nil)
	rogue, other := rogueLeaves(t)
	rogueKey := pin.FromCertificate(rogue.Cert).String()
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()), "User-Agent", "wallet/5.1 (iPhone)")
	wantStatus(t, "report", code, http.StatusNoContent, body)
	code, _, body = e.postReport(t, rfc7469(t, "cdn.payments.test", pin.Enforce, other, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)

	code, _, page := e.page(t, "/?served_pin="+strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(rogueKey))
	wantStatus(t, "served key filter", code, http.StatusOK, []byte(page))
	if !strings.Contains(page, "api.payments.test:443") || strings.Contains(page, "cdn.payments.test:443") {
		t.Errorf("the served key filter does not select that key's reports")
	}
	if !strings.Contains(html.UnescapeString(page), `<input type="hidden" name="served_pin" value="`+rogueKey+`">`) {
		t.Errorf("the filter form drops the served key on Apply")
	}

	gs, err := e.store.Reports().Groups(context.Background(), store.ReportFilter{ServedPin: rogueKey})
	if err != nil || len(gs) != 1 {
		t.Fatalf("groups %v %v", gs, err)
	}
	code, _, page = e.page(t, fmt.Sprintf("/reports/%d?range=7d", gs[0].ID))
	wantStatus(t, "group page", code, http.StatusOK, []byte(page))
	text := html.UnescapeString(page)
	for _, want := range []string{
		rogueKey, // the served key, whole
		pin.FromCertificate(rogue.Chain[1]).String(), // the intermediate's pin
		pin.Fingerprint(rogue.Cert).String(),
		"Compromised Issuing CA",
		"wallet/5.1 (iPhone)", "127.0.0.1", // the delivery
		`"hostname": "api.payments.test"`, // the report as received, indented
		"1 report(s) from 1 client(s)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the group page lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?s)id="known-pins">(.*?)</ul>`).FindStringSubmatch(text); m == nil || strings.Count(m[1], "sha256/") != 2 {
		t.Errorf("known pins: %v", m)
	}
	for _, path := range []string{"/reports/999999", "/reports/x", "/reports/-1"} {
		if code, _, _ := e.page(t, path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(fmt.Sprintf("%s/reports/%d", e.http.URL, gs[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("group page without a session: %d", resp.StatusCode)
	}
}

// The first report as received is shown with control and format
// characters as \u escapes, whatever field of the JSON holds them.
func TestGroupPageEscapesTheRawReport(t *testing.T) {
	e := newEnv(t, nil)
	root := testpki.NewRoot(t, "Raw Root")
	subject, _ := asn1.Marshal(pkix.Name{CommonName: "api.payments.test"}.ToRDNSequence())
	leaf := root.NewIntermediate(t, "Raw CA").Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}, Subject: subject})
	var m map[string]any
	json.Unmarshal(rfc7469(t, "api.payments.test", pin.Enforce, leaf, e.clock.Now()), &m)
	m["x-extension"] = "left\u202eright\U000E0001"
	b, _ := json.Marshal(m)
	b = bytes.ReplaceAll(b, []byte(`\u202e`), []byte("\u202e")) // raw, not escaped, in the body
	code, _, body := e.postReport(t, b)
	wantStatus(t, "report", code, http.StatusNoContent, body)
	gs, _ := e.store.Reports().Groups(context.Background(), store.ReportFilter{})
	code, _, page := e.page(t, fmt.Sprintf("/reports/%d", gs[0].ID))
	wantStatus(t, "group page", code, http.StatusOK, []byte(page))
	if r, ok := hasFormatChar(page); ok {
		t.Errorf("the group page shows U+%04X", r)
	}
	if !strings.Contains(page, `left\u202eright\udb40\udc01`) {
		t.Errorf("the raw report does not show the escapes")
	}
}

// The summary's bucket is an ISO 8601 duration, with its length in
// seconds beside it (usability second 29: not "1 h").
func TestSummaryBucketIsADuration(t *testing.T) {
	e := newEnv(t, nil)
	for q, want := range map[string]struct {
		iso string
		s   int64
	}{"": {"PT1H", 3600}, "?since=" + e.clock.Now().Add(-7*24*time.Hour).Format(time.RFC3339): {"PT3H", 10800},
		"?since=" + e.clock.Now().Add(-90*24*time.Hour).Format(time.RFC3339): {"P7D", 604800},
		"?since=" + e.clock.Now().Add(-time.Hour).Format(time.RFC3339):       {"PT1M", 60}} {
		code, body := e.admin(t, "GET", "/v1/admin/reports/summary"+q, nil)
		wantStatus(t, "summary", code, http.StatusOK, body)
		got := decode[struct {
			Bucket        string `json:"bucket"`
			BucketSeconds int64  `json:"bucket_seconds"`
		}](t, body)
		if got.Bucket != want.iso || got.BucketSeconds != want.s {
			t.Errorf("summary%s: bucket %q, %d s; want %q, %d", q, got.Bucket, got.BucketSeconds, want.iso, want.s)
		}
	}
}

// The login page says where the admin token is, in the words rampart
// serve gives, and by default without a path of the machine.
func TestLoginNamesWhereTheTokenIs(t *testing.T) {
	e := newEnv(t, nil)
	_, _, b := e.do(t, "GET", "/login", nil)
	if !strings.Contains(string(b), "admin-token in rampart serve&#39;s data directory") {
		t.Errorf("default hint:\n%s", b)
	}
	e2 := newEnv(t, func(c *Config) { c.AdminTokenHint = "in the file that admin_token_file names" })
	_, _, b = e2.do(t, "GET", "/login", nil)
	if !strings.Contains(string(b), "The admin token is in the file that admin_token_file names.") {
		t.Errorf("configured hint:\n%s", b)
	}
}

// "show more" appears when the page lists fewer groups than there are.
func TestDashboardShowMore(t *testing.T) {
	e := newEnv(t, nil)
	rogue, other := rogueLeaves(t)
	for _, b := range [][]byte{rfc7469(t, "a.payments.test", pin.Enforce, rogue, e.clock.Now()), rfc7469(t, "b.payments.test", pin.Enforce, other, e.clock.Now())} {
		e.postReport(t, b)
	}
	_, _, page := e.page(t, "/?rows=1")
	if strings.Count(page, `href="/reports/`) != 1 || !strings.Contains(page, `id="more" href="/?range=24h&amp;rows=4"`) {
		t.Errorf("rows=1 with two groups:\n%s", page)
	}
	_, _, page = e.page(t, "/")
	if strings.Contains(page, `id="more"`) {
		t.Error("show more with every group shown")
	}
}
