package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/version"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// ranges are the dashboard's time ranges.
var ranges = []struct {
	Key  string
	Span time.Duration
}{{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}, {"90d", 90 * 24 * time.Hour}}

// dashParams are the query parameters of the dashboard, its pages and
// its exports: the admin API's filters, a named range instead of
// since/until, and how many report groups to list.
var dashParams = append(slices.Clip(filterParams), "range", "rows")

const (
	defaultRows = 25
	maxRows     = 1000
)

// dashFilter is what the dashboard shows: a filter of reports over a
// range, from the page's query string.
type dashFilter struct {
	Range      string // a key of ranges, or "" for since/until
	Domain     string
	Mode       string
	ServedPin  string
	AppVersion string
	Rows       int
	// Since and Until are the resolved range; Custom is set when they
	// were given rather than derived from Range.
	Since, Until time.Time
	Custom       bool
}

// dashboardFilter reads a dashboard query string. Unknown parameters and
// bad values are a 400, as in the admin API: a filter that does not say
// what it shows is worse than none.
func (s *Server) dashboardFilter(r *http.Request) (dashFilter, error) {
	rf, err := reportFilter(r, dashParams)
	if err != nil {
		return dashFilter{}, err
	}
	q := r.URL.Query()
	d := dashFilter{Domain: rf.Domain, Mode: rf.Mode, ServedPin: rf.ServedPin, AppVersion: rf.AppVersion, Rows: defaultRows}
	if v := q.Get("rows"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRows {
			return d, httpError(http.StatusBadRequest, fmt.Sprintf("rows: want 1 to %d", maxRows))
		}
		d.Rows = n
	}
	now := s.now().UTC()
	d.Until = rf.Until
	if d.Until.IsZero() {
		d.Until = untilNow(now)
	}
	custom := !rf.Since.IsZero() || !rf.Until.IsZero()
	switch rg := q.Get("range"); {
	case rg != "" && custom:
		return d, httpError(http.StatusBadRequest, "give range, or since and until, not both")
	case custom:
		d.Custom = true
		d.Since = rf.Since
		if d.Since.IsZero() {
			d.Since = d.Until.Add(-24 * time.Hour)
		}
		if !d.Since.Before(d.Until) {
			return d, httpError(http.StatusBadRequest, "since must be before until")
		}
		if d.Until.Sub(d.Since) > 400*24*time.Hour {
			return d, httpError(http.StatusBadRequest, "the range is longer than 400 days")
		}
	default:
		d.Range = "24h"
		if rg != "" {
			d.Range = ""
		}
		for _, x := range ranges {
			if rg == x.Key || rg == "" && x.Key == "24h" {
				d.Range, d.Since = x.Key, d.Until.Add(-x.Span)
			}
		}
		if d.Range == "" {
			return d, httpError(http.StatusBadRequest, fmt.Sprintf("range %q: want 24h, 7d, 30d or 90d (or since and until)", truncate(cleanText(rg, 32), 32)))
		}
	}
	return d, nil
}

// store returns the store filter of d.
func (d dashFilter) store() store.ReportFilter {
	return store.ReportFilter{Domain: d.Domain, Mode: d.Mode, ServedPin: d.ServedPin, AppVersion: d.AppVersion, Since: d.Since, Until: d.Until}
}

// values returns d as a query string's values.
func (d dashFilter) values() url.Values {
	v := url.Values{}
	if d.Custom {
		v.Set("since", d.Since.UTC().Format(time.RFC3339Nano))
		v.Set("until", d.Until.UTC().Format(time.RFC3339Nano))
	} else {
		v.Set("range", d.Range)
	}
	for k, x := range map[string]string{"domain": d.Domain, "mode": d.Mode, "served_pin": d.ServedPin, "app_version": d.AppVersion} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if d.Rows != defaultRows {
		v.Set("rows", strconv.Itoa(d.Rows))
	}
	return v
}

// Link returns path with d's query, and the pairs of keys and values
// given set (an empty value removes the key): for links that change one
// part of the filter. Built here and encoded once: the template takes it
// as a URL as it is.
func (d dashFilter) Link(path string, kv ...string) template.URL {
	v := d.values()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			v.Del(kv[i])
		} else {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return template.URL(path)
	}
	return template.URL(path + "?" + v.Encode())
}

// Filtered reports whether d narrows the reports beyond the range.
func (d dashFilter) Filtered() bool {
	return d.Domain != "" || d.Mode != "" || d.ServedPin != "" || d.AppVersion != ""
}

// apiQuery is d as the admin API takes it: since and until, not range.
func (d dashFilter) apiQuery() string {
	v := d.values()
	v.Del("range")
	v.Del("rows")
	v.Set("since", d.Since.UTC().Format(time.RFC3339Nano))
	v.Set("until", d.Until.UTC().Format(time.RFC3339Nano))
	return v.Encode()
}

type dashboardData struct {
	Version string
	Now     time.Time
	F       dashFilter
	Ranges  []string
	Domains []string // for the filter, the one selected included
	Sum     *summary
	Chart   chart
	Groups  []store.ReportGroup
	More    template.URL // shows more groups; empty when all are shown
	Curl    string       // the admin API's equivalent, to copy
}

// needSession redirects to the login page without a session. Only a
// session opens the dashboard, its pages and its exports: a bearer token
// here would be a second door for guessing it, outside the admin API's
// limits.
func (s *Server) needSession(w http.ResponseWriter, r *http.Request) bool {
	if s.sessionOK(r) {
		return true
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return false
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	f, err := s.dashboardFilter(r)
	if err != nil {
		return s.pageError(w, err)
	}
	d := dashboardData{Version: version.Get(), Now: s.now().UTC(), F: f}
	for _, rg := range ranges {
		d.Ranges = append(d.Ranges, rg.Key)
	}
	sum, err := s.summarize(r.Context(), f.store())
	if err != nil {
		return err
	}
	d.Sum = sum
	d.Chart = newChart(sum.Buckets, sum.width)
	sf := f.store()
	sf.Since = sum.Since.Time
	sf.Limit = f.Rows + 1
	if d.Groups, err = s.st.Reports().Groups(r.Context(), sf); err != nil {
		return err
	}
	if len(d.Groups) > f.Rows {
		d.Groups = d.Groups[:f.Rows]
		d.More = f.Link("/", "rows", strconv.Itoa(min(maxRows, f.Rows*4)))
	}
	all, err := s.st.Reports().Count(r.Context(), store.ReportFilter{Since: sf.Since, Until: sf.Until, Limit: 200}, store.ByDomain)
	if err != nil {
		return err
	}
	for _, t := range all {
		d.Domains = append(d.Domains, t.Key)
	}
	// A domain with no report in the range is still the filter in
	// force: the list shows it, never "all domains" for it.
	if f.Domain != "" && !slices.Contains(d.Domains, f.Domain) {
		d.Domains = append(d.Domains, f.Domain)
	}
	d.Curl = fmt.Sprintf(`curl -H "Authorization: Bearer $RAMPART_ADMIN_TOKEN" '%s/v1/admin/reports?%s'`, baseURL(r), f.apiQuery())
	return s.render(w, http.StatusOK, "dashboard.html", d)
}

// baseURL is the scheme and host the browser used.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// pageError renders a refusal as a page: the dashboard is read in a
// browser.
func (s *Server) pageError(w http.ResponseWriter, err error) error {
	var he *Error
	if !errors.As(err, &he) || he.Code >= 500 {
		return err
	}
	return s.render(w, he.Code, "error.html", struct {
		Version, Message string
	}{version.Get(), he.Msg})
}

// groupData is the page of one report group.
type groupData struct {
	Version   string
	Now       time.Time
	F         dashFilter
	Group     store.ReportGroup // within the range
	InRange   bool
	AllTime   store.ReportGroup
	Chain     []certInfo
	ChainName string
	KnownPins []string // the SPKI pins the client expected, from the report
	// CertPins are the certificate pins the client expected, as the store
	// keeps them: validated at ingest, and none for groups stored before
	// they were kept (the report below still shows what it said).
	CertPins   []string
	Report     string // the first report as received, indented, escaped
	Deliveries []store.Delivery
}

// certInfo is a certificate of a report's chain, as the page shows it.
type certInfo struct {
	Subject, Issuer     string
	Names               []string
	NotBefore, NotAfter time.Time
	SPKIPin             string
	CertPin             string
	Err                 string
}

const groupDeliveries = 50

func (s *Server) groupPage(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	f, err := s.dashboardFilter(r)
	if err != nil {
		return s.pageError(w, err)
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return s.pageError(w, httpError(http.StatusNotFound, "no such report group"))
	}
	ctx := r.Context()
	all, err := s.st.Reports().Groups(ctx, store.ReportFilter{GroupID: id, Limit: 1})
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return s.pageError(w, httpError(http.StatusNotFound, "no such report group (its reports may have been deleted by the retention)"))
	}
	d := groupData{Version: version.Get(), Now: s.now().UTC(), F: f, AllTime: all[0]}
	sf := f.store()
	sf.GroupID, sf.Limit = id, 1
	// The range's counts; the content filters do not apply to a page
	// asked for by ID.
	sf.Domain, sf.Mode, sf.ServedPin, sf.AppVersion = "", "", "", ""
	in, err := s.st.Reports().Groups(ctx, sf)
	if err != nil {
		return err
	}
	if len(in) == 1 {
		d.Group, d.InRange = in[0], true
	}
	if d.Deliveries, err = s.st.Reports().Deliveries(ctx, store.ReportFilter{GroupID: id, Limit: groupDeliveries}); err != nil {
		return err
	}
	d.ChainName, d.Chain, d.KnownPins = reportChain(all[0].Content.Body)
	d.CertPins = all[0].Content.KnownCertPins
	d.Report = showJSON(all[0].Content.Body)
	return s.render(w, http.StatusOK, "group.html", d)
}

// reportChain reads the certificates and SPKI pins of a stored report:
// the served chain, else the validated one. The body was checked when it
// was received, perhaps by an older version: a member of the wrong type
// is skipped, not the whole report.
func reportChain(body []byte) (string, []certInfo, []string) {
	var w report.Report
	if err := json.Unmarshal(body, &w); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return "", nil, nil
		}
	}
	name, chain := "served-certificate-chain", w.ServedCertificateChain
	if len(chain) == 0 {
		name, chain = "validated-certificate-chain", w.ValidatedCertificateChain
	}
	var out []certInfo
	for _, p := range chain {
		c, err := parsePEMCertificate([]byte(p))
		if err != nil {
			out = append(out, certInfo{Err: err.Error()})
			continue
		}
		ci := certInfo{
			Subject: cleanText(c.Subject.String(), maxField), Issuer: cleanText(c.Issuer.String(), maxField),
			NotBefore: c.NotBefore, NotAfter: c.NotAfter,
			SPKIPin: pin.FromCertificate(c).String(), CertPin: pin.Fingerprint(c).String(),
		}
		ci.Names = certSANs(c)
		out = append(out, ci)
	}
	var pins []string
	for _, p := range w.KnownPins {
		v := strings.TrimSuffix(strings.TrimPrefix(p, `pin-sha256="`), `"`)
		pins = append(pins, "sha256/"+cleanText(v, 64))
	}
	return name, out, pins
}

func certSANs(c *x509.Certificate) []string {
	var names []string
	for _, n := range c.DNSNames {
		names = append(names, cleanText(n, 256))
	}
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	for _, u := range c.URIs {
		names = append(names, cleanText(u.String(), 256))
	}
	return names
}

// showJSON indents a report for reading, with every control and format
// character written as a \u escape: the JSON stays what it was, and no
// bidi override reaches the page.
func showJSON(body []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, body, "", "  ") != nil {
		return cleanText(string(body), len(body))
	}
	var out strings.Builder
	for _, r := range strings.ToValidUTF8(b.String(), "\uFFFD") {
		if r != '\n' && isControl(r) {
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&out, `\u%04x`, r)
			}
			continue
		}
		out.WriteRune(r)
	}
	return out.String()
}

// exportGroups returns the groups of the dashboard's filter, up to 1000.
func (s *Server) exportGroups(ctx context.Context, f dashFilter) ([]store.ReportGroup, error) {
	sf := f.store()
	sf.Limit = maxRows
	return s.st.Reports().Groups(ctx, sf)
}

// exportName is the download's file name: the range it holds.
func exportName(f dashFilter, ext string) string {
	return fmt.Sprintf("rampart-reports-%s-%s.%s", f.Since.UTC().Format("20060102T1504Z"), f.Until.UTC().Format("20060102T1504Z"), ext)
}

// exportJSON is the admin API's report listing for a signed-in browser.
func (s *Server) exportJSON(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	f, err := s.dashboardFilter(r)
	if err != nil {
		return err
	}
	gs, err := s.exportGroups(r.Context(), f)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportName(f, "json")+`"`)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, map[string]any{"since": api.NewTime(f.Since), "until": api.NewTime(f.Until), "groups": s.groupsJSON(gs)})
}

// exportSummary is the admin API's summary for a signed-in browser.
func (s *Server) exportSummary(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	f, err := s.dashboardFilter(r)
	if err != nil {
		return err
	}
	sum, err := s.summarize(r.Context(), f.store())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, sum.Summary)
}

// csvColumns are the columns of the CSV export.
var csvColumns = []string{"id", "first_seen", "last_seen", "hostname", "port", "noted_hostname", "include_subdomains", "mode", "reason",
	"served_pin", "served_subject", "app_bundle_id", "app_platform", "app_version", "reports", "clients"}

// exportCSV is the report groups of the dashboard's filter as CSV (RFC
// 4180), for a spreadsheet.
func (s *Server) exportCSV(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	f, err := s.dashboardFilter(r)
	if err != nil {
		return err
	}
	gs, err := s.exportGroups(r.Context(), f)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	cw.UseCRLF = true
	cw.Write(csvColumns)
	for _, g := range gs {
		c := g.Content
		cw.Write([]string{strconv.FormatInt(g.ID, 10), csvTime(g.FirstSeen), csvTime(g.LastSeen), c.Hostname, strconv.Itoa(c.Port),
			c.NotedHostname, strconv.FormatBool(c.IncludeSubdomains), c.Mode, csvText(c.Reason), c.ServedPin, csvText(c.ServedSubject),
			csvText(c.AppBundleID), csvText(c.AppPlatform), csvText(c.AppVersion), strconv.FormatInt(g.Reports, 10), strconv.FormatInt(g.Clients, 10)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8; header=present")
	h.Set("Content-Disposition", `attachment; filename="`+exportName(f, "csv")+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
	return nil
}

func csvTime(t time.Time) string { return api.NewTime(t).UTC().Format(time.RFC3339) }

// csvText keeps a field a client wrote from being taken for a formula by
// a spreadsheet (CSV injection): one that starts with =, +, -, @, a tab
// or a carriage return gets a leading apostrophe. Control and format
// characters are shown as U+FFFD, as on the page.
func csvText(s string) string {
	s = cleanText(s, len(s))
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// groupsJSON converts groups to the admin API's form.
func (s *Server) groupsJSON(groups []store.ReportGroup) []api.ReportGroup {
	out := make([]api.ReportGroup, len(groups))
	for i, g := range groups {
		c := g.Content
		body := json.RawMessage(c.Body)
		if !json.Valid(body) {
			// Checked at ingest; a row that is not JSON (an edit, an
			// older bug) must not break every listing that holds it.
			s.log.Warn("a stored report is not JSON; listed without it", "group", g.ID)
			body = json.RawMessage("null")
		}
		out[i] = api.ReportGroup{
			ID: g.ID, Format: c.Format, Hostname: c.Hostname, Port: c.Port, NotedHostname: c.NotedHostname,
			IncludeSubdomains: c.IncludeSubdomains, Mode: c.Mode, Reason: c.Reason, ServedPin: c.ServedPin,
			ServedSubject: c.ServedSubject, AppBundleID: c.AppBundleID, AppVersion: c.AppVersion, AppPlatform: c.AppPlatform,
			KnownCertPins: c.KnownCertPins, Reports: g.Reports, Clients: g.Clients, FirstSeen: api.NewTime(g.FirstSeen), LastSeen: api.NewTime(g.LastSeen), Report: body,
		}
	}
	return out
}
