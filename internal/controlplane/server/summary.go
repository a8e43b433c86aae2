package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
)

// summary is what the dashboard shows: the admin API's summary
// (/v1/admin/reports/summary), and what the page needs besides.
type summary struct {
	api.Summary
	BucketLabel string         // the timeline's step in words
	Buckets     []store.Bucket // the timeline, for the chart
	width       time.Duration
}

// bucketWidth picks a timeline step giving 24 to 60 bars for a range.
func bucketWidth(span time.Duration) time.Duration {
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if span/w <= 60 {
			return w
		}
	}
	return 30 * 24 * time.Hour
}

// summarize gathers the counts for filter f, whose Since and Until must be
// set.
func (s *Server) summarize(ctx context.Context, f store.ReportFilter) (*summary, error) {
	rs := s.st.Reports()
	width := bucketWidth(f.Until.Sub(f.Since))
	// Align buckets to the width so that the bars do not shift with every
	// reload.
	f.Since = f.Since.Truncate(width)
	out := &summary{Summary: api.Summary{Since: api.NewTime(f.Since), Until: api.NewTime(f.Until), Bucket: isoDuration(width),
		BucketSeconds: int64(width / time.Second)}, BucketLabel: humanDuration(width), width: width}
	var err error
	if out.Total, err = rs.Total(ctx, f); err != nil {
		return nil, err
	}
	tl, err := rs.Timeline(ctx, f, width)
	if err != nil {
		return nil, err
	}
	// Fill the empty buckets the store leaves out.
	i := 0
	for t := f.Since; t.Before(f.Until); t = t.Add(width) {
		b := store.Bucket{Start: t}
		if i < len(tl) && tl[i].Start.Equal(t) {
			b.Reports = tl[i].Reports
			i++
		}
		out.Buckets = append(out.Buckets, b)
		out.Timeline = append(out.Timeline, api.Bucket{Start: api.NewTime(b.Start), Reports: b.Reports})
	}
	for _, d := range []struct {
		by  store.Dimension
		dst *[]api.Tally
	}{{store.ByDomain, &out.ByDomain}, {store.ByServedPin, &out.ByServedPin}, {store.ByApp, &out.ByApp}, {store.ByMode, &out.ByMode}} {
		f := f
		f.Limit = 20
		ts, err := rs.Count(ctx, f, d.by)
		if err != nil {
			return nil, err
		}
		*d.dst = make([]api.Tally, len(ts))
		for i, t := range ts {
			(*d.dst)[i] = api.Tally{Key: t.Key, Label: t.Label, Reports: t.Reports, Clients: t.Clients}
		}
	}
	bs, err := s.st.Bundles().List(ctx, "", 20)
	if err != nil {
		return nil, err
	}
	out.Bundles = make([]api.PublishedBundle, len(bs))
	for i, b := range bs {
		out.Bundles[i] = publishedBundle(b)
	}
	return out, nil
}

// summaryFilter is reportFilter with a default range of the last 24
// hours, at most 400 days.
func (s *Server) summaryFilter(r *http.Request) (store.ReportFilter, error) {
	now := s.now().UTC()
	f, err := reportFilter(r, filterParams)
	if err != nil {
		return f, err
	}
	if f.Until.IsZero() {
		f.Until = untilNow(now)
	}
	if f.Since.IsZero() {
		f.Since = f.Until.Add(-24 * time.Hour)
	}
	if f.Until.Sub(f.Since) > 400*24*time.Hour {
		return f, httpError(http.StatusBadRequest, "the range is longer than 400 days")
	}
	return f, nil
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) error {
	f, err := s.summaryFilter(r)
	if err != nil {
		return err
	}
	sum, err := s.summarize(r.Context(), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sum.Summary)
}

// untilNow is the exclusive end of a range that ends now, at the store's
// millisecond precision: a report received this millisecond is in it.
func untilNow(now time.Time) time.Time {
	return now.Truncate(time.Millisecond).Add(time.Millisecond)
}

// isoDuration writes a bucket width as an ISO 8601 duration: whole days
// as "P1D", else hours and minutes ("PT1H", "PT15M").
func isoDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("P%dD", d/(24*time.Hour))
	}
	s := "PT"
	if h := d / time.Hour; h > 0 {
		s += fmt.Sprintf("%dH", h)
	}
	if m := d % time.Hour / time.Minute; m > 0 {
		s += fmt.Sprintf("%dM", m)
	}
	return s
}

// humanDuration writes a bucket width as people say it: "15 min", "1 h",
// "1 day".
func humanDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	default:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
}
