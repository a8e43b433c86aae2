package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reports        *prometheus.CounterVec
	batchSize      prometheus.Histogram
	commitSeconds  prometheus.Histogram
	commitErrors   prometheus.Counter
	bundleRequests *prometheus.CounterVec
	authFailures   prometheus.Counter
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_reports_total",
			Help: "Failure reports received, by result: accepted, invalid, too_large, unsupported_media_type, rate_limited, over_quota (storage bounds), unavailable.",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rampart_report_batch_size",
			Help:    "Reports committed per database transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rampart_report_commit_seconds",
			Help:    "Time to commit one batch of reports.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_report_commit_errors_total",
			Help: "Batches of reports the database refused.",
		}),
		bundleRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_bundle_requests_total",
			Help: "Bundle requests, by status code.",
		}, []string{"code"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_admin_auth_failures_total",
			Help: "Requests with a missing or wrong admin token.",
		}),
	}
	reg.MustRegister(m.reports, m.batchSize, m.commitSeconds, m.commitErrors, m.bundleRequests, m.authFailures)
	for _, r := range []string{"accepted", "invalid", "too_large", "unsupported_media_type", "rate_limited", "over_quota", "unavailable"} {
		m.reports.WithLabelValues(r)
	}
	return m
}

func (m *metrics) observeBatch(size int, d time.Duration, err error) {
	if err != nil {
		m.commitErrors.Inc()
		return
	}
	m.batchSize.Observe(float64(size))
	m.commitSeconds.Observe(d.Seconds())
}

func (s *Server) metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})
}

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Error("metrics", "err", v) }
