package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/ratelimit"
)

type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	limits         *ratelimit.Metrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_gateway_requests_total",
			Help: "Requests by route prefix and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rampart_gateway_request_seconds",
			Help:    "Request duration by route prefix.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_gateway_upstream_errors_total",
			Help: "Requests the upstream failed, by kind: error, timeout, aborted (an answer broken off mid-body).",
		}, []string{"kind"}),
		limits: ratelimit.NewMetrics(reg),
	}
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors)
	return m
}

// collectors is a prometheus.Registerer that keeps what is registered
// with it, for New to register with the Registry all at once.
type collectors []prometheus.Collector

func (c *collectors) Register(col prometheus.Collector) error {
	*c = append(*c, col)
	return nil
}

func (c *collectors) MustRegister(cols ...prometheus.Collector) { *c = append(*c, cols...) }

func (c *collectors) Unregister(prometheus.Collector) bool { return false }

// registerWith registers the collectors with reg, all or none: a
// collector reg has already (a Registry shared by two gateways) is an
// error, not a panic.
func (c collectors) registerWith(reg prometheus.Registerer) error {
	for i, col := range c {
		if err := reg.Register(col); err != nil {
			for _, done := range c[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// statusClientClosed is logged and counted for a request the client
// abandoned before it was answered, as nginx does; it is never sent.
const statusClientClosed = 499

// recorder captures the status and size of a response for the log. It
// keeps a service's informational answers (1xx but 101) from the client:
// httputil.ReverseProxy sends them on and then clears the header map,
// which would drop the headers the gateway set (CORS, Vary, RateLimit)
// from the final answer; the recorder puts those back.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	kept   http.Header // the header as it was before a 1xx, or nil
}

func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if r.kept == nil {
			r.kept = r.Header().Clone()
		}
		return
	}
	r.restore()
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// restore puts back the header fields a 1xx made ReverseProxy clear.
func (r *recorder) restore() {
	if r.kept == nil {
		return
	}
	h := r.Header()
	for k, v := range r.kept {
		if _, ok := h[k]; !ok {
			h[k] = v
		}
	}
	r.kept = nil
}

func (r *recorder) Write(b []byte) (int, error) {
	r.restore()
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines), as the reverse proxy needs.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// accessLog logs one structured line per request: never a header value,
// a query string or a body, which may hold credentials. The route is the
// one mux sends the request to (a prefix without a trailing slash takes
// that path only), or "none", whatever answered.
func (g *Gateway) accessLog(h *handler, mux *http.ServeMux, next http.Handler) http.Handler {
	trusted := h.trusted
	routes := map[string]bool{}
	for _, r := range h.routes {
		routes[r.Prefix] = true
	}
	// A request that reached its route's handler says so (routeMark);
	// one answered before (a preflight, a limit, a redirect) is looked
	// up, as the mux would have routed it.
	routeOf := func(r *http.Request, h *principalHolder) string {
		if h.route != "" {
			return h.route
		}
		if r.URL.Path == "/healthz" { // the gateway's own, whatever the routes
			return "none"
		}
		if _, pattern := mux.Handler(r); routes[pattern] {
			return pattern
		}
		return "none"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An access logger that is off (slog.DiscardHandler) costs no
		// line.
		logOn := g.access.Enabled(r.Context(), slog.LevelInfo)
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		// The principal and the route are found deeper in the chain; a
		// holder lets the log see them.
		holder := &principalHolder{}
		aborted := true
		defer func() {
			if !aborted {
				return
			}
			// The handler panicked: ReverseProxy's http.ErrAbortHandler
			// when the copy of a response broke off (the service or the
			// client went away, the route's timeout), or a bug. The
			// request is logged and counted all the same, then the panic
			// goes on to the server, which closes the connection.
			p := recover()
			if p == http.ErrAbortHandler {
				g.metrics.upstreamErrors.WithLabelValues("aborted").Inc()
			}
			g.finish(rec, r, holder, routeOf(r, holder), time.Since(start), logOn, trusted, true)
			if p != nil { // nil: runtime.Goexit, which goes on by itself
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(withHolder(r.Context(), holder)))
		aborted = false
		g.finish(rec, r, holder, routeOf(r, holder), time.Since(start), logOn, trusted, false)
	})
}

// finish counts a request and logs its access line (unless logOn is
// false); aborted says the answer broke off before its end.
func (g *Gateway) finish(rec *recorder, r *http.Request, holder *principalHolder, route string, d time.Duration, logOn bool, trusted []netip.Prefix, aborted bool) {
	// A handler that wrote nothing answered 200 (net/http's default),
	// unless the client went away first (upstreamError writes nothing
	// then) or the handler broke off: not a success.
	status, gone := rec.status, r.Context().Err() != nil
	if status == 0 && holder.upgraded {
		status = http.StatusSwitchingProtocols
	}
	if status == 0 && !aborted && !gone {
		status = http.StatusOK
	}
	if status == 0 || aborted && gone {
		status = statusClientClosed
	}
	g.metrics.requests.WithLabelValues(route, statusText(status)).Inc()
	g.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
	if !logOn {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		// As the client sent it: an encoded path the gateway refused
		// is logged as it came, not decoded into the path it is not.
		slog.String("path", r.URL.EscapedPath()),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("remote", r.RemoteAddr),
		// The client as the rate limits see it: behind trusted
		// proxies, the address they report.
		slog.String("client_addr", ratelimit.ClientAddr(r, trusted).String()),
		slog.String("proto", r.Proto),
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if p := holder.p; p != nil {
		attrs = append(attrs, slog.String("client", p.ClientID), slog.String("auth", string(p.Method)))
	}
	if o := r.Header.Get("Origin"); o != "" {
		attrs = append(attrs, slog.String("origin", o))
	}
	g.access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// principalHolder carries the authenticated caller, and the route that
// took the request, back up to the log.
type principalHolder struct {
	p     *auth.Principal
	route string
	// upgraded says the service switched protocols (101): the
	// connection was handed over, no status written through the
	// recorder.
	upgraded bool
	// allowed says a Decider's request passed every check.
	allowed bool
}

// routeMark tells the log that route's handler took the request.
func routeMark(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := holderOf(r.Context()); h != nil {
			h.route = route
		}
		next.ServeHTTP(w, r)
	})
}

// statusTexts are the status codes as label values, made once.
var statusTexts = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(code int) string {
	if code >= 0 && code < len(statusTexts) {
		return statusTexts[code]
	}
	return strconv.Itoa(code)
}

type holderKey struct{}

func withHolder(ctx context.Context, h *principalHolder) context.Context {
	return context.WithValue(ctx, holderKey{}, h)
}

func holderOf(ctx context.Context) *principalHolder {
	h, _ := ctx.Value(holderKey{}).(*principalHolder)
	return h
}
