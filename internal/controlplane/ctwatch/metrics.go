package ctwatch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/ct"
)

type metrics struct {
	reg        prometheus.Registerer
	entries    *prometheus.CounterVec
	findings   *prometheus.CounterVec
	alerts     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rampart_ct_entries_judged_total",
			Help: "Log entries verified and judged, by log."}, []string{"log"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rampart_ct_findings_total",
			Help: "Logged certificates of the watched domains, by class (rogue, rollover, unparsed, unpinned-name, expected)."}, []string{"class"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rampart_ct_alerts_total",
			Help: "Alerts raised (a certificate first seen in an alerting class, or escalated), by class."}, []string{"class"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rampart_ct_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by result (delivered, failed, gave_up)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.entries, m.findings, m.alerts, m.deliveries)
	}
	return m
}

// watch exports each log's state from the monitor's status.
func (m *metrics) watch(mon *ct.Monitor) {
	if m.reg != nil {
		m.reg.MustRegister(&logCollector{mon: mon})
	}
}

var (
	behindDesc = prometheus.NewDesc("rampart_ct_log_behind_entries",
		"Entries of the log's latest verified head not yet judged: how far behind the monitor is.", []string{"log"}, nil)
	sizeDesc = prometheus.NewDesc("rampart_ct_log_tree_size",
		"Size of the log's latest verified tree head.", []string{"log"}, nil)
	pollDesc = prometheus.NewDesc("rampart_ct_log_last_poll_timestamp_seconds",
		"When the log's head was last fetched and verified (Unix time).", []string{"log"}, nil)
	failingDesc = prometheus.NewDesc("rampart_ct_log_failing",
		"1 while the log's last look failed (down, rate limiting, corrupt data).", []string{"log"}, nil)
	staleDesc = prometheus.NewDesc("rampart_ct_log_stale",
		"1 while the log's newest head is older than its maximum merge delay plus an hour (a frozen view may hide entries).", []string{"log"}, nil)
	unparsedDesc = prometheus.NewDesc("rampart_ct_entries_unparsed_total",
		"Entries whose certificate could not be read, by log (each logged; a finding when it mentions a watched name).", []string{"log"}, nil)
	misbehavingDesc = prometheus.NewDesc("rampart_ct_log_misbehaving",
		"1 once the log has signed heads that contradict each other (sticky until restart).", []string{"log"}, nil)
)

type logCollector struct{ mon *ct.Monitor }

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{behindDesc, sizeDesc, pollDesc, failingDesc, misbehavingDesc, unparsedDesc, staleDesc} {
		ch <- d
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.mon.Status() {
		name := s.Log.Name()
		ch <- prometheus.MustNewConstMetric(behindDesc, prometheus.GaugeValue, float64(s.Behind), name)
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(s.Head.Size), name)
		poll := 0.0
		if !s.LastPoll.IsZero() {
			poll = float64(s.LastPoll.UnixMilli()) / 1000
		}
		ch <- prometheus.MustNewConstMetric(pollDesc, prometheus.GaugeValue, poll, name)
		ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, b2f(s.LastError != ""), name)
		ch <- prometheus.MustNewConstMetric(misbehavingDesc, prometheus.GaugeValue, b2f(s.Misbehaviour != ""), name)
		ch <- prometheus.MustNewConstMetric(unparsedDesc, prometheus.CounterValue, float64(s.Unparsed), name)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, b2f(s.Stale != ""), name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
