// Package gateway is Rampart's edge: a reverse proxy that makes a request
// pass every control before it reaches a payment service, so that the
// services' own checks are the second line, not the only one.
//
// # The request path
//
//	TLS termination (certificate reloaded when its files change; HTTP/2)
//	 -> request framing: an HTTP/1 request with a body, and any HTTP/1.0
//	    one, is answered and its connection closed (RFC 9112 §6.1)
//	 -> the request itself: a registered method, a path no decoder or
//	    normaliser reads otherwise, a Host of Config.Hosts, a Connection
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
// # Operations
//
// Gateway.Handler serves the requests, and GET /healthz (which no route
// can take); Gateway.AdminHandler /metrics and /healthz. Gateway.Reload
// swaps in a new configuration without dropping a connection (rampart
// gateway does it on SIGHUP). The service certificate is reloaded from its
// files, or renewed at the control plane (Identity.Renew).
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
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/httpx"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// Deps are what a configuration file cannot hold: the stores and
// verifiers the caller builds.
type Deps struct {
	// APIKeys checks API keys; nil refuses them.
	APIKeys *apikey.Verifier
	// Tokens checks bearer tokens; nil refuses them.
	Tokens *token.Validator
	// RateLimitStore shares limits between instances (redisstore); nil
	// keeps them in memory.
	RateLimitStore ratelimit.Store
	// Identity is the gateway's service certificate for mutual TLS to the
	// upstreams; nil loads Config.Identity's files (and watches them, or
	// renews the certificate at Config.Identity.Renew).
	Identity *mtls.Reloader
	// Roots are the upstreams' roots, by trust domain (an upstream's
	// certificate verifies against its own trust domain's bundle alone);
	// nil loads Config.Identity.Roots and Bundles.
	Roots x509bundle.Source
	// Logger receives errors and certificate changes; nil means
	// slog.Default().
	Logger *slog.Logger
	// AccessLog receives a line per request (unless Config.AccessLog is
	// "off"); nil means Logger.
	AccessLog *slog.Logger
	// Registry receives the metrics; nil means a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
}

// Gateway is the edge proxy.
type Gateway struct {
	deps     Deps
	log      *slog.Logger
	access   *slog.Logger
	reg      *prometheus.Registry
	metrics  *metrics
	current  atomic.Pointer[handler]
	mu       sync.Mutex // serializes Reload and Close
	fallback *ratelimit.Memory

	// identity is the service certificate loaded from Config.Identity
	// when Deps.Identity is nil, watched until the files it came from
	// change in the configuration or the gateway closes.
	identity     *mtls.Reloader
	identityFrom identitySource
	stopIdentity context.CancelFunc
}

// handler is one configuration, ready to serve.
type handler struct {
	cfg  *Config
	http http.Handler
	// transports are closed when the configuration is replaced.
	transports []*http.Transport
}

// New builds a gateway for cfg.
func New(cfg *Config, deps Deps) (*Gateway, error) {
	g := &Gateway{deps: deps, log: deps.Logger, reg: deps.Registry, fallback: &ratelimit.Memory{}}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.access = deps.AccessLog; g.access == nil {
		g.access = g.log
	}
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
		// The constructors of package prometheus, not of its collectors
		// package, which collectors.NewGoCollector only wraps: that
		// package imports database/sql (its DBStatsCollector), a
		// dependency public packages must not have (internal/meta).
		g.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{})) //nolint:staticcheck // SA1019, see above
	}
	g.metrics = newMetrics(g.reg)
	h, commit, err := g.build(cfg)
	if err != nil {
		return nil, err
	}
	commit()
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
	return mux
}

// Reload replaces the configuration: new requests use cfg, requests in
// flight finish with the old one. On error the old one stays.
func (g *Gateway) Reload(cfg *Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	h, commit, err := g.build(cfg)
	if err != nil {
		return err
	}
	commit()
	old := g.current.Swap(h)
	// Idle upstream connections of the old configuration are closed;
	// connections in use finish their requests.
	for _, t := range old.transports {
		t.CloseIdleConnections()
	}
	return nil
}

// Close stops watching the identity files. Requests in flight are not
// affected; the caller shuts its servers down first.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopIdentity != nil {
		g.stopIdentity()
		g.stopIdentity = nil
	}
	for _, t := range g.current.Load().transports {
		t.CloseIdleConnections()
	}
	return nil
}

// Config returns the configuration in use.
func (g *Gateway) Config() *Config { return g.current.Load().cfg }

// build makes the handler of cfg; commit, called once it is in use,
// switches to the identity it loaded, if it loaded one.
func (g *Gateway) build(cfg *Config) (*handler, func(), error) {
	h := &handler{cfg: cfg}

	// Rate limits: those not keyed by client run before everything else,
	// so that floods and guessing stop before authentication; those keyed
	// by client after it.
	var before, after []ratelimit.Rule
	var trusted []netip.Prefix
	if cfg.Limits != nil {
		trusted = cfg.Limits.TrustedProxies
		for _, r := range cfg.Limits.Rules {
			if r.Kind == ratelimit.Business {
				continue // the services apply those
			}
			if slices.Contains(r.By, ratelimit.ByClient) {
				after = append(after, r)
			} else {
				before = append(before, r)
			}
		}
	}
	var beforeLimits, afterLimits *ratelimit.Limiter
	for _, l := range []struct {
		rules []ratelimit.Rule
		into  **ratelimit.Limiter
	}{{before, &beforeLimits}, {after, &afterLimits}} {
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
		lim := &ratelimit.Limiter{Store: store, Fallback: g.fallback, Rules: l.rules,
			TrustedProxies: trusted, Metrics: g.metrics.limits, Logger: g.log}
		if err := lim.Init(); err != nil {
			return nil, nil, fmt.Errorf("gateway: %w", err)
		}
		*l.into = lim
	}

	// The identity comes last: nothing fails after it is loaded, so a
	// failed build never leaves a watcher behind.
	commit := func() {}
	identity, roots := g.deps.Identity, g.deps.Roots
	if slices.ContainsFunc(cfg.Routes, func(r Route) bool { return r.upstream.Scheme == "https" }) {
		var err error
		if roots == nil {
			// The files are all there is (a Deps.Roots source may learn
			// bundles later): every upstream's trust domain needs one.
			set, err := loadBundles(cfg.Identity)
			if err != nil {
				return nil, nil, fmt.Errorf("gateway: identity: %w", err)
			}
			for _, rt := range cfg.Routes {
				if td := rt.id.TrustDomain(); rt.upstream.Scheme == "https" && !set.Has(td) {
					return nil, nil, fmt.Errorf("gateway: route %q: upstream_id %s: no roots for trust domain %s: add identity.bundles: {%s: FILE}", rt.Prefix, rt.id, td.Name(), td.Name())
				}
			}
			roots = set
		}
		if identity == nil {
			if identity, commit, err = g.loadIdentity(cfg.Identity); err != nil {
				return nil, nil, err
			}
		}
	}

	mux := http.NewServeMux()
	routes := map[string]*Route{}
	vouchHost := len(cfg.Hosts) > 0
	for i := range cfg.Routes {
		rt := &cfg.Routes[i]
		routes[rt.Prefix] = rt
		tr := &http.Transport{
			Proxy:                 nil, // never an environment proxy between the gateway and its services
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: rt.timeout,
		}
		if rt.upstream.Scheme == "https" {
			tr.TLSClientConfig = mtls.ClientConfig(identity, roots, rt.id)
		}
		h.transports = append(h.transports, tr)
		var next http.Handler = &httputil.ReverseProxy{
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
		if afterLimits != nil {
			next = afterLimits.Middleware(next)
		}
		if rt.Auth == "required" {
			next = g.authenticate(next, rt.ForwardCookies)
		}
		mux.Handle(rt.Prefix, routeMark(rt.Prefix, limitBody(rt, routeMethods(rt, next))))
	}
	if !slices.ContainsFunc(cfg.Routes, func(r Route) bool { return r.Prefix == "/" }) {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, http.StatusNotFound, "Not Found", "no route for this path")
		})
	}
	var inner http.Handler = mux
	if cfg.CORS != nil {
		// rs/cors answers preflights itself, before any limit; with
		// OptionsPassthrough it sets their headers and lets them
		// through the limits, then answerPreflight answers them.
		inner = answerPreflight(inner)
	}
	if beforeLimits != nil {
		inner = beforeLimits.Middleware(inner)
	}
	if cfg.CORS != nil {
		inner = corsHandler(cfg.CORS).Handler(inner)
	}
	routeOf := func(r *http.Request) *Route {
		_, pattern := mux.Handler(r)
		return routes[pattern]
	}
	h.http = g.accessLog(cfg, mux, httpx.Framing(newFront(cfg, routeOf, inner)))
	return h, commit, nil
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
func routeMethods(rt *Route, next http.Handler) http.Handler {
	allow := rt.allow()
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
	maxAge := 0
	if c.MaxAge != "" {
		d, _ := time.ParseDuration(c.MaxAge)
		maxAge = int(d / time.Second)
	}
	methods := c.AllowedMethods
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
		AllowedHeaders:   c.AllowedHeaders,
		ExposedHeaders:   c.ExposedHeaders,
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
// gateway's policy (Config.CORS; none without it) is the one that
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
// within defaultTimeout; a routed one within its route's timeout. The
// response may take writeGrace longer to reach a slow client.
const (
	defaultTimeout = 30 * time.Second
	writeGrace     = 5 * time.Second
)

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
func limitBody(rt *Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.timeout != defaultTimeout { // the front set those
			setDeadlines(w, rt.timeout)
		}
		if r.ContentLength > rt.maxBody {
			writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("the body is limited to %d bytes", rt.maxBody))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
		defer cancel()
		if r.Body != nil && r.Body != http.NoBody {
			b := &clientBody{ReadCloser: http.MaxBytesReader(w, r.Body, rt.maxBody)}
			ctx = context.WithValue(ctx, clientBodyKey{}, b)
			r = r.WithContext(ctx)
			r.Body = b
		} else {
			r = r.WithContext(ctx)
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

// loadBundles loads the upstreams' roots: those of id.Roots, each bound
// to the trust domain it names, and id.Bundles', bound by name.
func loadBundles(id *Identity) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	if id.Roots != "" {
		s, err := mtls.LoadBundles(id.Roots)
		if err != nil {
			return nil, fmt.Errorf("roots: %w (to bind roots to a trust domain by name: identity.bundles: {TRUST-DOMAIN: FILE})", err)
		}
		set = s
	}
	for name, file := range id.Bundles {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("bundles: %q: %w", name, err)
		}
		if set.Has(td) {
			return nil, fmt.Errorf("bundles: %s: %s has roots in identity.roots too; keep its roots in one place", name, name)
		}
		b, err := mtls.LoadBundle(td, file)
		if err != nil {
			return nil, fmt.Errorf("bundles: %w", err)
		}
		set.Add(b)
	}
	return set, nil
}

// writeProblem answers with RFC 9457 problem details.
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	httpx.WriteProblem(w, httpx.Problem{Status: status, Title: title, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
