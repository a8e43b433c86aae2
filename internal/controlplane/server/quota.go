package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/ratelimit"
)

// ReportQuota bounds the storage that failure reports, which anyone may
// send, take. The per-address rate limit alone does not: many addresses
// (a fraction of an IPv6 /48) can each send their share of distinct,
// near-64 KiB reports and fill the disk in hours. Beyond a bound, reports
// are refused (429 or 503 with Retry-After, counted as over_quota in
// rampart_reports_total): never acknowledged and dropped.
type ReportQuota struct {
	// MaxBytes bounds the space reports take in the database, as the
	// store measures it (store.Usage). Zero means 4 GiB; negative, no
	// bound. When it is reached, every report is refused (503) until
	// the retention deletes old ones or the bound is raised.
	MaxBytes int64
	// PerHostPerDay bounds the bytes of distinct reports (a body the
	// server has not stored yet) about one host name (the rule's, the
	// noted hostname) per day: a flood about one name cannot take all of
	// MaxBytes in a day, and identical reports, which cost a row each
	// and are what a real incident sends, are not held up. Zero means
	// 64 MiB; negative, no bound.
	PerHostPerDay int64
	// MinFree is the free space below which reports are refused (503)
	// on a store that can tell (SQLite): what is left is kept for what
	// must not fail, such as API keys, revocations and signing keys.
	// Zero means 1 GiB; negative, no check.
	MinFree int64
}

// Default quotas.
const (
	DefaultReportMaxBytes      = 4 << 30
	DefaultReportPerHostPerDay = 64 << 20
	DefaultReportMinFree       = 1 << 30
)

// usageInterval is how often the store's usage is measured; in between,
// the bytes of the reports accepted are added to the last measure.
const usageInterval = 10 * time.Second

// Estimated storage costs: a delivery row, and a group row beyond its
// body.
const (
	eventOverhead = 64
	groupOverhead = 256
)

// withDefaults returns q with its zero fields set to the defaults.
func (q ReportQuota) withDefaults() ReportQuota {
	if q.MaxBytes == 0 {
		q.MaxBytes = DefaultReportMaxBytes
	}
	if q.PerHostPerDay == 0 {
		q.PerHostPerDay = DefaultReportPerHostPerDay
	}
	if q.MinFree == 0 {
		q.MinFree = DefaultReportMinFree
	}
	return q
}

// quota enforces a ReportQuota.
type quota struct {
	cfgp    atomic.Pointer[ReportQuota]
	st      store.ReportStore
	limiter *ratelimit.Memory
	now     func() time.Time
	warn    func(msg string, args ...any)

	mu         sync.Mutex // held while measuring
	measuredAt atomic.Int64
	measured   atomic.Bool
	usage      atomic.Int64 // bytes at the last measure
	free       atomic.Int64 // -1: unknown
	added      atomic.Int64 // estimated bytes accepted since the last measure
	lastWarn   atomic.Int64

	seen digestSet
}

func newQuota(cfg ReportQuota, st store.ReportStore, now func() time.Time, warn func(string, ...any)) *quota {
	q := &quota{st: st, limiter: &ratelimit.Memory{Now: now}, now: now, warn: warn}
	q.setConfig(cfg)
	q.free.Store(-1)
	q.seen.m = make(map[string]struct{})
	return q
}

func (q *quota) setConfig(cfg ReportQuota) {
	cfg = cfg.withDefaults()
	q.cfgp.Store(&cfg)
}

func (q *quota) cfg() ReportQuota { return *q.cfgp.Load() }

func (q *quota) register(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_report_storage_bytes",
			Help: "Space the stored reports take, as last measured, plus what was accepted since (estimated).",
		}, func() float64 { return float64(q.usage.Load() + q.added.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_report_storage_limit_bytes",
			Help: "The bound on the space of stored reports (ReportQuota.MaxBytes); -1: none.",
		}, func() float64 { return float64(max(q.cfg().MaxBytes, -1)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_report_storage_free_bytes",
			Help: "Free space of the file system holding the database, as last measured; -1: unknown (PostgreSQL).",
		}, func() float64 { return float64(q.free.Load()) }),
	)
}

// refresh measures the store's usage when the last measure is older than
// usageInterval. One request measures; the others go on with the last
// measure.
func (q *quota) refresh(ctx context.Context) {
	now := q.now()
	if q.measured.Load() && now.Sub(time.Unix(0, q.measuredAt.Load())) < usageInterval {
		return
	}
	if !q.mu.TryLock() {
		return
	}
	defer q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	u, err := q.st.Usage(ctx)
	if err != nil {
		q.warnf("measuring the reports' storage failed; the last measure stands", "err", err)
		return
	}
	q.usage.Store(u.Bytes)
	q.free.Store(u.Free)
	q.added.Store(0)
	q.measuredAt.Store(now.UnixNano())
	q.measured.Store(true)
}

// warnf logs at most once a minute: a flood must not flood the log too.
func (q *quota) warnf(msg string, args ...any) {
	now := q.now().UnixNano()
	last := q.lastWarn.Load()
	if now-last < int64(time.Minute) || !q.lastWarn.CompareAndSwap(last, now) {
		return
	}
	q.warn(msg, args...)
}

// admit decides whether a report may be stored, and counts it if so. It
// returns the cost counted, for release should the report not be stored
// after all.
func (q *quota) admit(ctx context.Context, r store.Report) (int64, error) {
	q.refresh(ctx)
	cfg := q.cfg()
	c := r.Content
	cost := int64(len(r.UserAgent) + len(r.Source) + len(r.Device) + eventOverhead)
	fresh := !q.seen.has(c.Digest)
	if fresh {
		cost += int64(len(c.Body) + len(c.ServedSubject) + groupOverhead)
	}
	used := q.usage.Load() + q.added.Load()
	if cfg.MaxBytes > 0 && used+cost > cfg.MaxBytes {
		q.warnf("report storage is full: refusing reports; raise --report-storage or shorten --retention",
			"used_bytes", used, "limit_bytes", cfg.MaxBytes)
		return 0, storageFull("report storage is full; retry later")
	}
	if free := q.free.Load(); cfg.MinFree > 0 && free >= 0 && free-q.added.Load()-cost < cfg.MinFree {
		q.warnf("the disk holding the database is nearly full: refusing reports to keep room for the rest",
			"free_bytes", free, "min_free_bytes", cfg.MinFree)
		return 0, storageFull("the server is short of disk space; retry later")
	}
	if fresh && cfg.PerHostPerDay > 0 {
		l := ratelimit.Limit{Rate: int(cfg.PerHostPerDay), Period: 24 * time.Hour, Burst: int(cfg.PerHostPerDay)}
		d, err := q.limiter.AllowN(ctx, "host|"+c.NotedHostname, l, int(len(c.Body)))
		if err != nil {
			return 0, err
		}
		if !d.Allowed {
			q.warnf("distinct reports about one host name over the daily quota: refusing them",
				"host", c.NotedHostname, "per_host_per_day_bytes", cfg.PerHostPerDay)
			return 0, tooMany(d, "too many distinct reports about this host name; retry later")
		}
	}
	q.added.Add(cost)
	return cost, nil
}

// release takes back the cost of an admitted report that was not stored.
func (q *quota) release(cost int64) { q.added.Add(-cost) }

// stored remembers that a report's content is in the store.
func (q *quota) stored(digest string) { q.seen.add(digest) }

func storageFull(msg string) *Error {
	return &Error{Code: http.StatusServiceUnavailable, Msg: msg, Header: http.Header{"Retry-After": {"600"}}}
}

// digestSet remembers the digests of recently stored reports, to tell a
// repeated report (a row) from a new one (a body). Bounded: when full it
// starts again, which only makes some repeats count as new once more.
type digestSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const maxSeenDigests = 1 << 16

func (s *digestSet) has(d string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[d]
	return ok
}

func (s *digestSet) add(d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSeenDigests {
		clear(s.m)
	}
	s.m[d] = struct{}{}
}

// String describes the quota for logs.
func (c ReportQuota) String() string {
	f := func(n int64) string {
		if n < 0 {
			return "none"
		}
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("max %s, per host %s a day, min free %s", f(c.MaxBytes), f(c.PerHostPerDay), f(c.MinFree))
}
