package server

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/suggest"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
	"github.com/rampartsec/rampart/ratelimit"
)

// reportCostUnit is the report size that costs one event of the report
// rate limit; a usual report (a chain of three certificates, twice) is
// under it.
const reportCostUnit = 16 << 10

// postReport accepts one failure report: RFC 7469 §3 or TrustKit's.
func (s *Server) postReport(w http.ResponseWriter, r *http.Request) error {
	src := ratelimit.ClientAddr(r, s.cfg.TrustedProxies)
	limit := s.live.Load().ReportLimit
	if limit.Rate > 0 {
		d, err := s.limiter.Allow(r.Context(), "report|"+ratelimit.AddrKey(src), limit)
		if err != nil {
			return err
		}
		if !d.Allowed {
			s.metrics.reports.WithLabelValues("rate_limited").Inc()
			return tooMany(d, "too many reports from this address")
		}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.metrics.reports.WithLabelValues("unsupported_media_type").Inc()
		return httpError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, report.MaxSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.metrics.reports.WithLabelValues("too_large").Inc()
			return &Error{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("report larger than %d KiB", report.MaxSize>>10)}
		}
		return &Error{Code: http.StatusBadRequest, Msg: "could not read the body", Err: err}
	}
	// A large report costs more of the client's budget: otherwise one
	// client could fill the disk with the largest reports at the report
	// rate.
	if extra := len(body) / reportCostUnit; extra > 0 && limit.Rate > 0 {
		d, err := s.limiter.AllowN(r.Context(), "report|"+ratelimit.AddrKey(src), limit, extra)
		if err != nil {
			return err
		}
		if !d.Allowed {
			s.metrics.reports.WithLabelValues("rate_limited").Inc()
			return tooMany(d, "too many reports from this address")
		}
	}
	content, device, err := reportContent(body, s.certs)
	if err != nil {
		s.metrics.reports.WithLabelValues("invalid").Inc()
		var re *report.Error
		if errors.As(err, &re) {
			return httpError(http.StatusBadRequest, re.Msg)
		}
		return err
	}
	rep := store.Report{
		Received:  s.now(),
		Source:    src.String(),
		UserAgent: cleanText(r.UserAgent(), 512),
		Device:    device,
		Content:   content,
	}
	cost, err := s.quota.admit(r.Context(), rep)
	if err != nil {
		s.metrics.reports.WithLabelValues("over_quota").Inc()
		return err
	}
	err = s.ingest.submit(rep)
	if err != nil {
		s.quota.release(cost)
	}
	switch {
	case err == nil:
		s.quota.stored(content.Digest)
	case errors.Is(err, errIngestBusy), errors.Is(err, errIngestClosed), errors.Is(err, errIngestNotStarted):
		s.metrics.reports.WithLabelValues("unavailable").Inc()
		return &Error{Code: http.StatusServiceUnavailable, Msg: "busy; retry later", Err: err,
			Header: http.Header{"Retry-After": {"1"}}}
	default:
		s.metrics.reports.WithLabelValues("unavailable").Inc()
		return &Error{Code: http.StatusServiceUnavailable, Msg: "the report could not be stored; retry later", Err: err,
			Header: http.Header{"Retry-After": {"5"}}}
	}
	s.metrics.reports.WithLabelValues("accepted").Inc()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Query parameters of the admin endpoints. Anything else is refused: a
// misspelt filter (domian=) must not answer for everything.
var (
	filterParams  = []string{"domain", "since", "until", "mode", "served_pin", "app_version"}
	reportsParams = append(slices.Clip(filterParams), "limit")
)

// checkParams refuses a query with a parameter not in known, or one given
// twice, with a 400 naming it (and the closest known name).
func checkParams(q url.Values, known []string) error {
	names := slices.Sorted(maps.Keys(q))
	for _, name := range names {
		if !slices.Contains(known, name) {
			msg := fmt.Sprintf("unknown parameter %q", truncate(cleanText(name, 64), 64))
			if s := suggest.Closest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			if len(known) == 0 {
				return httpError(http.StatusBadRequest, msg+": this endpoint takes no parameters")
			}
			return httpError(http.StatusBadRequest, msg+"; this endpoint takes "+strings.Join(known, ", "))
		}
		if n := len(q[name]); n > 1 {
			return httpError(http.StatusBadRequest, fmt.Sprintf("%s given %d times; give it once", name, n))
		}
	}
	return nil
}

// reportFilter reads the admin filters from the query string, which may
// hold only known: domain, since, until (RFC 3339 or YYYY-MM-DD), mode,
// served_pin, app_version, and limit where known has it.
func reportFilter(r *http.Request, known []string) (store.ReportFilter, error) {
	q := r.URL.Query()
	if err := checkParams(q, known); err != nil {
		return store.ReportFilter{}, err
	}
	f := store.ReportFilter{
		Domain:     strings.TrimSuffix(strings.ToLower(strings.TrimSpace(q.Get("domain"))), "."),
		Mode:       q.Get("mode"),
		ServedPin:  q.Get("served_pin"),
		AppVersion: q.Get("app_version"),
	}
	switch f.Mode {
	case "", "enforce", "report-only":
	default:
		return f, httpError(http.StatusBadRequest, "mode: want enforce or report-only")
	}
	if f.Domain != "" {
		if err := checkHostname("domain", f.Domain); err != nil {
			return f, httpError(http.StatusBadRequest, err.Error())
		}
	}
	if f.ServedPin != "" {
		if _, err := pin.Parse(f.ServedPin); err != nil || !strings.HasPrefix(f.ServedPin, "sha256/") {
			msg := "served_pin: want an SPKI pin (sha256/ and the base64 of 32 bytes)"
			if strings.Contains(f.ServedPin, " ") {
				msg += "; in a query string, write + as %2B"
			}
			return f, httpError(http.StatusBadRequest, msg)
		}
	}
	if len(f.AppVersion) > maxField || strings.IndexFunc(f.AppVersion, isControl) >= 0 || !utf8.ValidString(f.AppVersion) {
		return f, httpError(http.StatusBadRequest, "app_version: not a version a report can hold")
	}
	var err error
	if f.Since, err = parseTimeParam(q.Get("since")); err != nil {
		return f, httpError(http.StatusBadRequest, "since: "+err.Error())
	}
	if f.Until, err = parseTimeParam(q.Get("until")); err != nil {
		return f, httpError(http.StatusBadRequest, "until: "+err.Error())
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, httpError(http.StatusBadRequest, "since must be before until")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, httpError(http.StatusBadRequest, "limit: want 1 to 1000")
		}
		f.Limit = n
	}
	return f, nil
}

func parseTimeParam(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want an RFC 3339 time or a date (YYYY-MM-DD)")
}

func (s *Server) listReports(w http.ResponseWriter, r *http.Request) error {
	f, err := reportFilter(r, reportsParams)
	if err != nil {
		return err
	}
	groups, err := s.st.Reports().Groups(r.Context(), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.ReportGroups{Groups: s.groupsJSON(groups)})
}
