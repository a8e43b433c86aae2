package ratelimit

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts, per rule, the decisions (allowed, denied,
// shadow_denied), the store errors and the fallbacks to the local
// limiter. A nil *Metrics counts nothing.
type Metrics struct {
	decisions *prometheus.CounterVec
	errors    *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_ratelimit_decisions_total",
			Help: "Rate-limit decisions by rule and result: allowed, denied, shadow_denied.",
		}, []string{"rule", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_ratelimit_store_errors_total",
			Help: "Rate-limit store failures by rule.",
		}, []string{"rule"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_ratelimit_fallbacks_total",
			Help: "Decisions made by the local fallback limiter while the store failed, by rule.",
		}, []string{"rule"}),
	}
	reg.MustRegister(m.decisions, m.errors, m.fallbacks)
	return m
}

func (m *Metrics) decision(rule, result string) {
	if m != nil {
		m.decisions.WithLabelValues(rule, result).Inc()
	}
}

func (m *Metrics) storeError(rule string) {
	if m != nil {
		m.errors.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) fallback(rule string) {
	if m != nil {
		m.fallbacks.WithLabelValues(rule).Inc()
	}
}
