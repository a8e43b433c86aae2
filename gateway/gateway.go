// Package gateway is Rampart's edge: a reverse proxy that makes a request
// pass every control before it reaches a payment service, so that the
// services' own checks are the second line, not the only one.
//
// # The request path
//
//	TLS termination (the server's: rampart gateway's, or the caller's
//	    http.Server; HTTP/2)
//	 -> request framing: an HTTP/1 request with a body, and any HTTP/1.0
//	    one, is answered and its connection closed (RFC 9112 §6.1)
//	 -> the request itself: a registered method, a path no decoder or
//	    normaliser reads otherwise, a Host of Options.Hosts, a Connection
//	    header naming only hop-by-hop options, no Upgrade but websocket
//	    on a route that takes it; GET /healthz is answered here
//	 -> CORS (rs/cors, a strict allow-list of origins)
//	 -> edge rate limits not keyed by client (address, credential,
//	    route), preflights included
//	 -> route: its methods, request size limit, timeout
//	 -> authentication: an API key (apikey.Verifier) or a bearer token
//	    (token.Validator); only the credential checked goes on
//	 -> edge rate limits keyed by client
//	 -> the upstream, over mutual TLS with the gateway's own service
//	    certificate, checking the upstream's SPIFFE ID; headers naming the
//	    client or another URL are the gateway's, not the client's
//
// The request keeps the credential the gateway checked, and no other: the
// service authenticates and authorizes again (every control exists
// twice). Access logs are structured and never hold a credential or a
// query string; a request the client abandoned before its answer is
// logged and counted as 499.
//
// # Building one
//
// [New] takes [Options]: the routes, hosts, CORS policy and limits, typed,
// and what the gateway runs with (the API-key verifier, the token
// validator, the limits' store, its service certificate and the
// upstreams' roots, loggers). It checks them all and returns an error for
// anything it would not serve safely; it never panics and starts nothing
// in the background. The service certificate is the caller's: a started
// [mtls.Reloader] (rampart gateway loads it from files and watches or
// renews it).
//
// # Operations
//
// Gateway.Handler serves the requests, and GET /healthz (which no route
// can take); Gateway.AdminHandler /metrics and /healthz. Gateway.Reload
// takes new Options without dropping a connection (rampart gateway does
// it on SIGHUP).
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/cors"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// Gateway is the edge proxy. Build it with New; it serves with Handler
// and AdminHandler, and takes new Options with Reload.
type Gateway struct {
	// deps are the Options of the configuration being built or in use:
	// build reads the verifiers, the store and the identity from them.
	deps     Options
	log      *slog.Logger
	access   *slog.Logger
	reg      *prometheus.Registry
	metrics  *metrics
	current  atomic.Pointer[handler]
	mu       sync.Mutex // serializes Reload and Close
	fallback *ratelimit.Memory
}

// handler is one configuration, ready to serve.
type handler struct {
	routes  []*route
	hosts   []string // lower case
	trusted []netip.Prefix
	http    http.Handler
	// transports are closed when the configuration is replaced.
	transports []*http.Transport
	// decide is set for a Decider's configuration: a route's checks end
	// in allowed, not in a proxy, and nothing is logged or counted per
	// request.
	decide bool
	// byPrefix are the routes' chains, for Decider.Decide with a route.
	byPrefix map[string]http.Handler
}

// New checks o ([Options.Check], and the dependencies its routes need)
// and builds a gateway for it. It starts nothing in the background.
func New(o Options) (*Gateway, error) {
	g := &Gateway{log: o.Logger, reg: o.Registry, fallback: &ratelimit.Memory{}}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.access = o.AccessLog; g.access == nil {
		g.access = g.log
	}
	// The metrics are registered once the gateway is built, all or
	// none: a New that fails leaves the caller's Registry as it was.
	var cs collectors
	g.metrics = newMetrics(&cs)
	h, err := g.build(o)
	if err != nil {
		return nil, err
	}
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
		// The constructors of package prometheus, not of its collectors
		// package, which collectors.NewGoCollector only wraps: that
		// package imports database/sql (its DBStatsCollector), a
		// dependency public packages must not have (internal/testing/meta).
		cs = append(cs, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{})) //nolint:staticcheck // SA1019, see above
	}
	if err := cs.registerWith(g.reg); err != nil {
		return nil, fmt.Errorf("gateway: Registry: %w", err)
	}
	g.current.Store(h)
	return g, nil
}

// Handler serves the proxied requests.
func (g *Gateway) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.current.Load().http.ServeHTTP(w, r)
	})
}

// AdminHandler serves /metrics and /healthz.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// The same framing rule as the main listener: the admin listener is
	// plain http, often behind the same load balancer.
	return httpx.Framing(mux)
}

// Reload checks o as New does and replaces the configuration: new
// requests use o, requests in flight finish with the old one. On error
// the old one stays. The loggers and the registry stay New's: Reload
// does not read o.Logger, o.AccessLog or o.Registry.
func (g *Gateway) Reload(o Options) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.deps
	h, err := g.build(o)
	if err != nil {
		g.deps = old
		return err
	}
	prev := g.current.Swap(h)
	// Idle upstream connections of the old configuration are closed;
	// connections in use finish their requests.
	for _, t := range prev.transports {
		t.CloseIdleConnections()
	}
	return nil
}

// Close closes the idle upstream connections. Requests in flight are not
// affected; the caller shuts its servers down first. The dependencies
// (Identity, APIKeys, ...) are the caller's to close.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.current.Load().transports {
		t.CloseIdleConnections()
	}
	return nil
}

// build checks o and makes its handler.
func (g *Gateway) build(o Options) (*handler, error) {
	return g.buildMode(o, false)
}

// buildMode is build, for a Decider when decide is set.
func (g *Gateway) buildMode(o Options, decide bool) (*handler, error) {
	if err := o.check(decide); err != nil {
		return nil, err
	}
	if err := o.checkDeps(decide); err != nil {
		return nil, err
	}
	g.deps = o
	h := &handler{trusted: slices.Clone(o.TrustedProxies), decide: decide, byPrefix: map[string]http.Handler{}}
	for _, r := range o.Routes {
		h.routes = append(h.routes, compile(r))
	}
	for _, host := range o.Hosts {
		h.hosts = append(h.hosts, strings.ToLower(host))
	}
	beforeLimits, afterLimits, err := g.limiters(o.Limits, h.trusted)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	routes := map[string]*route{}
	for _, rt := range h.routes {
		routes[rt.Prefix] = rt
		checks := routeMethods(rt, g.routeChecks(h, rt, afterLimits))
		if decide {
			// No body is read and nothing waits: the declared size
			// is all there is to check.
			checks = declaredSize(rt, checks)
		} else {
			checks = limitBody(rt, checks)
		}
		chain := routeMark(rt.Prefix, checks)
		mux.Handle(rt.Prefix, chain)
		h.byPrefix[rt.Prefix] = chain
	}
	if _, ok := routes["/"]; !ok {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, http.StatusNotFound, "Not Found", "no route for this path")
		})
	}
	var inner http.Handler = mux
	if decide {
		inner = chosenRoute(h, mux)
	}
	if o.CORS != nil {
		// rs/cors answers preflights itself, before any limit; with
		// OptionsPassthrough it sets their headers and lets them
		// through the limits, then answerPreflight answers them.
		inner = answerPreflight(inner)
	}
	if beforeLimits != nil {
		inner = beforeLimits.Middleware(inner)
	}
	if o.CORS != nil {
		inner = corsHandler(o.CORS).Handler(inner)
	}
	routeOf := func(r *http.Request) *route {
		if c := chosenOf(r.Context()); c != "" {
			return routes[c]
		}
		_, pattern := mux.Handler(r)
		return routes[pattern]
	}
	if decide {
		// The engine in front framed the request and logs it.
		h.http = newFront(h, routeOf, inner)
		return h, nil
	}
	h.http = g.accessLog(h, mux, httpx.Framing(newFront(h, routeOf, inner)))
	return h, nil
}

// limiters makes the edge limits of rules: before, the rules not keyed
// by client, which run before everything else, so that floods and
// guessing stop before authentication; after, those keyed by client,
// after it. Either is nil without rules.
func (g *Gateway) limiters(rules []ratelimit.Rule, trusted []netip.Prefix) (before, after *ratelimit.Limiter, err error) {
	var early, late []ratelimit.Rule
	for _, r := range rules {
		switch edgeRule(r) {
		case ruleBusiness: // the services apply those
		case ruleByClient:
			late = append(late, r)
		default:
			early = append(early, r)
		}
	}
	for _, l := range []struct {
		rules []ratelimit.Rule
		into  **ratelimit.Limiter
	}{{early, &before}, {late, &after}} {
		if len(l.rules) == 0 {
			continue
		}
		// Without a shared store, the limits live in one memory store
		// for the gateway's life, so that a reload (SIGHUP, sent on
		// every log rotation) gives nobody a fresh budget.
		var store ratelimit.Store = g.fallback
		if g.deps.RateLimitStore != nil {
			store = g.deps.RateLimitStore
		}
		lim := &ratelimit.Limiter{Store: store, Fallback: g.fallback, Rules: slices.Clone(l.rules),
			TrustedProxies: trusted, Metrics: g.metrics.limits, Logger: g.log}
		if err := lim.Init(); err != nil {
			return nil, nil, fmt.Errorf("gateway: %w", err)
		}
		*l.into = lim
	}
	return before, after, nil
}

// routeChecks is the handler of route rt after its method and body
// checks: authentication unless the route is anonymous, its scopes, the
// limits keyed by client (afterLimits, if any), and then the reverse
// proxy to its upstream (whose transport goes into hd), or for a
// Decider, allowed.
func (g *Gateway) routeChecks(hd *handler, rt *route, afterLimits *ratelimit.Limiter) http.Handler {
	var next http.Handler = http.HandlerFunc(allowed)
	if !hd.decide {
		next = g.proxy(hd, rt)
	}
	if afterLimits != nil {
		next = afterLimits.Middleware(next)
	}
	if len(rt.Scopes) > 0 {
		next = auth.RequireScope(rt.Scopes...)(next)
	}
	if !rt.AllowAnonymous {
		next = g.authenticate(next, rt.ForwardCookies)
	}
	return next
}

// proxy is the reverse proxy to route rt's upstream, whose transport goes
// into hd.
func (g *Gateway) proxy(hd *handler, rt *route) http.Handler {
	trusted, vouchHost := hd.trusted, len(hd.hosts) > 0
	tr := &http.Transport{
		Proxy:                 nil, // never an environment proxy between the gateway and its services
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: rt.Timeout,
	}
	if rt.Upstream.Scheme == "https" {
		tr.TLSClientConfig = mtls.ClientConfig(g.deps.Identity, g.deps.Roots, rt.UpstreamID)
	}
	hd.transports = append(hd.transports, tr)
	return &httputil.ReverseProxy{
		Rewrite:      func(pr *httputil.ProxyRequest) { rewrite(pr, rt, trusted, vouchHost) },
		Transport:    tr,
		BufferPool:   bufferPool{},
		ErrorHandler: g.upstreamError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			dropCORSHeaders(resp)
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// ReverseProxy tunnels a 101 whose Upgrade matches
				// the request's; the gateway forwarded one only on
				// a websocket route.
				if !rt.Websocket || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
					return errUnaskedUpgrade
				}
				if h := holderOf(resp.Request.Context()); h != nil {
					h.upgraded = true
				}
			}
			return nil
		},
	}
}

// Kinds of rules, as the gateway applies them.
const (
	ruleBefore   = iota // an edge rule not keyed by client: before authentication
	ruleByClient        // an edge rule keyed by client: after it
	ruleBusiness        // the services'
)

// edgeRule says where the gateway applies r, with ratelimit.Rule's
// defaults: no Kind means an edge rule when r has By or Routes, else a
// business rule; no By means ratelimit.ByAddr.
func edgeRule(r ratelimit.Rule) int {
	kind := r.Kind
	if kind == "" {
		kind = ratelimit.Business
		if len(r.By) > 0 || len(r.Routes) > 0 {
			kind = ratelimit.Edge
		}
	}
	switch {
	case kind == ratelimit.Business:
		return ruleBusiness
	case slices.Contains(r.By, ratelimit.ByClient):
		return ruleByClient
	}
	return ruleBefore
}

// answerPreflight answers a CORS preflight (rs/cors has set its headers)
// as rs/cors would have: 204, nothing forwarded.
func answerPreflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routeMethods refuses the methods the route does not take: 405 with
// Allow (RFC 9110 §15.5.6).
func routeMethods(rt *route, next http.Handler) http.Handler {
	allow := rt.allow
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rt.methods[r.Method] {
			w.Header().Set("Allow", allow)
			writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", fmt.Sprintf("%s takes %s", rt.Prefix, allow))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func corsHandler(c *CORS) *cors.Cors {
	maxAge := int(c.MaxAge / time.Second)
	methods := slices.Clone(c.AllowedMethods)
	if len(methods) == 0 {
		methods = []string{http.MethodGet, http.MethodPost}
	}
	origins := slices.Clone(c.AllowedOrigins)
	return cors.New(cors.Options{
		// Origins are compared exactly, as the Fetch standard says, not
		// case-folded as rs/cors's AllowedOrigins does; and a request
		// with several Origin headers matches none, since rs/cors
		// answers with all of them in Access-Control-Allow-Origin. So
		// that header is only ever one of the listed origins.
		AllowOriginVaryRequestFunc: func(r *http.Request, origin string) (bool, []string) {
			return len(r.Header.Values("Origin")) == 1 && slices.Contains(origins, origin), nil
		},
		AllowedMethods:   methods,
		AllowedHeaders:   slices.Clone(c.AllowedHeaders),
		ExposedHeaders:   slices.Clone(c.ExposedHeaders),
		AllowCredentials: c.AllowCredentials,
		MaxAge:           maxAge,
		// Preflights go on to the edge limits (then answerPreflight):
		// they are requests like any other.
		OptionsPassthrough: true,
	})
}

// fromTrusted reports whether r comes directly from one of the trusted
// proxies.
func fromTrusted(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
}

// dropCORSHeaders removes the upstream's CORS response headers: the
// gateway's policy (Options.CORS; none without it) is the one that
// applies. A service's own Access-Control-Allow-Origin ("*", or an origin
// the gateway does not list) would otherwise widen it, or be added to the
// gateway's, a duplicate that browsers refuse.
func dropCORSHeaders(resp *http.Response) error {
	for name := range resp.Header {
		if strings.HasPrefix(name, "Access-Control-") {
			delete(resp.Header, name)
		}
	}
	return nil
}

// authenticate admits a request with a valid API key or bearer token
// (auth.Middleware), records the caller for the access log, and
// leaves on the request only the credential it checked (onlyChecked).
func (g *Gateway) authenticate(next http.Handler, keepCookies bool) http.Handler {
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.FromContext(r.Context())
		if h := holderOf(r.Context()); h != nil {
			h.p = p
		}
		onlyChecked(r.Header, p, keepCookies)
		next.ServeHTTP(w, r)
	})
	return auth.Middleware(g.deps.APIKeys, g.deps.Tokens)(record)
}

// Deadlines on the client's connection. A request that is not routed
// (404, /healthz, a preflight, a refusal) must still be read and answered
// within DefaultTimeout; a routed one within its route's timeout. The
// response may take writeGrace longer to reach a slow client.
const writeGrace = 5 * time.Second

// setDeadlines bounds the time left to read the request and write the
// response. Every request sets its own, so that none outlives it on a
// kept-alive connection.
func setDeadlines(w http.ResponseWriter, timeout time.Duration) {
	rc := http.NewResponseController(w)
	now := time.Now()
	rc.SetReadDeadline(now.Add(timeout)) // errors: a writer without deadlines (tests)
	rc.SetWriteDeadline(now.Add(timeout + writeGrace))
}

// limitBody applies the route's body limit and timeout: a declared length
// over the limit is refused at once, a body that grows over it is cut
// (413 for the client, http.MaxBytesError for the proxy). The body is a
// clientBody, so that its failures are the client's.
func limitBody(rt *route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.Timeout != DefaultTimeout { // the front set those
			setDeadlines(w, rt.Timeout)
		}
		if r.ContentLength > rt.MaxBody {
			writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("the body is limited to %d bytes", rt.MaxBody))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), rt.Timeout)
		defer cancel()
		if r.Body != nil && r.Body != http.NoBody {
			b := &clientBody{ReadCloser: http.MaxBytesReader(w, r.Body, rt.MaxBody)}
			ctx = context.WithValue(ctx, clientBodyKey{}, b)
			r = r.WithContext(ctx)
			r.Body = b
		} else {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// declaredSize is limitBody for a Decider: a declared length over the
// route's limit is refused.
func declaredSize(rt *route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > rt.MaxBody {
			writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("the body is limited to %d bytes", rt.MaxBody))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// upstreamError answers a failed proxy request: the client's failure if
// reading its body failed (clientBodyError), else 502, 504 on a timeout,
// 413 when the body was cut. The detail goes to the log only.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	// ReverseProxy hands over its own request, whose body wraps the
	// clientBody: the context leads to it.
	if b, ok := r.Context().Value(clientBodyKey{}).(*clientBody); ok && r.Context().Err() == nil {
		if berr := b.failure(); berr != nil {
			clientBodyError(w, berr)
			return
		}
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("the body is limited to %d bytes", mbe.Limit))
	// The route's timeout is both the request's deadline and the
	// transport's ResponseHeaderTimeout; when both have fired, the
	// transport may report either, and HTTP/2's header timeout is a
	// net.Error, not a context.DeadlineExceeded.
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		g.metrics.upstreamErrors.WithLabelValues("timeout").Inc()
		writeProblem(w, http.StatusGatewayTimeout, "Gateway Timeout", "the service did not answer in time")
	case errors.Is(err, context.Canceled):
		// The client went away.
	default:
		g.metrics.upstreamErrors.WithLabelValues("error").Inc()
		g.log.Error("gateway: upstream failed", "path", r.URL.Path, "err", err)
		writeProblem(w, http.StatusBadGateway, "Bad Gateway", "the service could not be reached")
	}
}

// bufferPool reuses the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// writeProblem answers with RFC 9457 problem details.
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	httpx.WriteProblem(w, httpx.Problem{Status: status, Title: title, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
