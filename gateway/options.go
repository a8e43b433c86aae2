package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// Options configure a [Gateway]: [New] and [Gateway.Reload] take them.
// Routes is the one field without a default; https upstreams need
// Identity and Roots, and routes that authenticate APIKeys or Tokens.
// New checks everything ([Options.Check] and the dependencies) and keeps
// copies of the slices and URLs: changing Options afterwards changes
// nothing.
//
//	u, _ := url.Parse("https://10.0.0.5:9444")
//	g, err := gateway.New(gateway.Options{
//		Routes: []gateway.Route{{
//			Prefix:     "/v1/",
//			Upstream:   u,
//			UpstreamID: spiffeid.RequireFromString("spiffe://pay.internal/payments"),
//		}},
//		APIKeys:  verifier, // *apikey.Verifier
//		Identity: identity, // a started *mtls.Reloader: the gateway's certificate
//		Roots:    roots,    // x509bundle.Source: the upstreams' roots
//	})
//
// Rampart's configuration file (rampart gateway --config, docs/gateway.md)
// is one way to write Options; its reader is rampart's, not this
// package's.
type Options struct {
	// Routes send requests under their prefixes to their upstreams, the
	// longest prefix first (as http.ServeMux); at least one, no prefix
	// twice. A request no route takes is a 404.
	Routes []Route
	// Hosts are the only values of Host (or an absolute request target's
	// host) the gateway answers, each a host name or address with an
	// optional port, as clients send it (international names in
	// punycode, no trailing dot); other hosts get 421. With Hosts set the
	// gateway vouches for the host upstream (X-Forwarded-Host). If empty,
	// any host is answered and none is vouched for.
	Hosts []string
	// CORS is the cross-origin policy. If nil, there is none: no
	// cross-origin request is allowed. Either way the services' own
	// Access-Control-* response headers are dropped.
	CORS *CORS
	// Limits are the edge rate limits. Those not keyed by
	// ratelimit.ByClient run before routing and authentication, so that
	// floods and guessing stop before any lookup; those keyed by client
	// after authentication. Business rules (ratelimit.Rule.Kind, or no By
	// and no Routes) are the services' and are skipped. If empty, no
	// limits.
	Limits []ratelimit.Rule
	// TrustedProxies are the proxies in front of the gateway whose
	// X-Forwarded-For is believed, for the limits, the access log and the
	// X-Forwarded-For sent upstream. If empty, none: the client is the
	// connection's peer.
	TrustedProxies []netip.Prefix

	// APIKeys checks API keys on the routes that authenticate. If nil,
	// API keys are refused.
	APIKeys *apikey.Verifier
	// Tokens checks bearer tokens on the routes that authenticate. If
	// nil, bearer tokens are refused.
	Tokens *token.Validator
	// RateLimitStore shares the limits between instances
	// (ratelimit/redisstore). If nil, they are kept in memory, for the
	// gateway's life: a Reload gives nobody a fresh budget.
	RateLimitStore ratelimit.Store
	// Identity is the gateway's service certificate, presented to the
	// https upstreams (mutual TLS); required when a route is https. It
	// must hold a certificate (started, or mtls.NewStatic). The caller
	// owns it: loads it, watches its files or renews it (Renew set to
	// mtls.Renewer, as identity.renew in rampart gateway's file), stops
	// it.
	Identity *mtls.Reloader
	// Roots are the upstreams' roots by trust domain: an upstream's
	// certificate verifies against the bundle of its UpstreamID's trust
	// domain alone (mtls.ClientConfig). Required when a route is https.
	// An x509bundle.Set of mtls.LoadBundles (roots that name their trust
	// domain) and mtls.LoadBundle (roots bound to one by name, as
	// identity.bundles) is what rampart gateway gives; a Source may also
	// learn trust domains while the gateway runs.
	Roots x509bundle.Source

	// Logger receives upstream failures and the limits' store failures.
	// If nil, slog.Default(). New reads it; Reload keeps New's.
	Logger *slog.Logger
	// AccessLog receives a line per request. If nil, Logger. A logger
	// whose handler is not enabled at slog.LevelInfo
	// (slog.DiscardHandler) turns the access log off; requests are
	// counted all the same. New reads it; Reload keeps New's.
	AccessLog *slog.Logger
	// Registry receives the metrics. If nil, a new registry with the Go
	// and process collectors. New reads it; Reload keeps New's.
	Registry *prometheus.Registry
}

// Route sends the requests under Prefix to Upstream. Its zero value
// authenticates: AllowAnonymous says otherwise.
type Route struct {
	// Prefix is the path the route takes: with a trailing slash, that
	// path and every path under it (/v1/ takes /v1/payments); without,
	// that path alone (/status). A clean path of RFC 3986 path
	// characters, without escapes or wildcards. Required.
	Prefix string
	// Upstream is the service: https://host:port, over mutual TLS (then
	// UpstreamID, Options.Identity and Options.Roots are required), or
	// http:// to a loopback address only. A path is prepended to the
	// request's, a query joined to its (httputil.ProxyRequest.SetURL).
	// Required, but in a Decider, which proxies nothing.
	Upstream *url.URL
	// UpstreamID is the SPIFFE ID an https upstream must present;
	// required for https upstreams, unused for http ones.
	UpstreamID spiffeid.ID
	// AllowAnonymous lets requests through without a credential. If
	// false, each request needs a valid API key (Options.APIKeys) or
	// bearer token (Options.Tokens), and only the credential checked goes
	// on.
	AllowAnonymous bool
	// MaxBody is the largest request body, in bytes: a declared length
	// over it is refused at once, a body that grows over it cut (413). If
	// 0, DefaultMaxBody; negative is refused.
	MaxBody int64
	// Timeout bounds the exchange: reading the request, the upstream's
	// answer (504 if it is late), and a websocket connection's life. If
	// 0, DefaultTimeout; negative is refused.
	Timeout time.Duration
	// Methods are the methods the route takes, in upper case as
	// registered (methods are case-sensitive); others get 405 with Allow.
	// HEAD comes with GET; CONNECT and TRACE are never proxied. If empty,
	// DefaultMethods.
	Methods []string
	// StripPrefix sends the path without the prefix upstream (/v1/x as
	// /x), and X-Forwarded-Prefix with it.
	StripPrefix bool
	// Websocket lets a GET with Upgrade: websocket through (after
	// authentication and limits); the connection then lives at most the
	// route's timeout. Without it any Upgrade but h2c is refused.
	Websocket bool
	// ForwardCookies lets the client's Cookie reach the service on a
	// route that authenticates; without it only the credential the
	// gateway checked does.
	ForwardCookies bool
	// Scopes are the scopes a caller's credential must carry, every one
	// of them, compared exactly (auth.RequireScope): a caller without
	// one gets 403 insufficient_scope (RFC 6750 §3.1). Only on a route
	// that authenticates. If empty, any authenticated caller.
	Scopes []string
}

// CORS is the cross-origin policy (rs/cors): an allow-list of origins.
type CORS struct {
	// AllowedOrigins are the origins allowed, each exactly as browsers
	// send it (scheme://host[:port], lower case, without the default
	// port, international names in punycode); http only for loopback.
	// Wildcards are refused. Required.
	AllowedOrigins []string
	// AllowedMethods are the methods a cross-origin request may use. If
	// empty, GET and POST.
	AllowedMethods []string
	// AllowedHeaders are the request headers a cross-origin request may
	// send. If empty, the CORS-safelisted ones only.
	AllowedHeaders []string
	// ExposedHeaders are the response headers scripts may read. If empty,
	// the CORS-safelisted ones only.
	ExposedHeaders []string
	// AllowCredentials lets cross-origin requests carry cookies and
	// credentials, and their answers be read.
	AllowCredentials bool
	// MaxAge is how long browsers may keep a preflight's answer, in
	// whole seconds. If 0, the browser's default; negative is refused.
	MaxAge time.Duration
}

// Defaults of a Route.
const (
	// DefaultMaxBody is a route's request body limit when it sets none.
	DefaultMaxBody = 1 << 20
	// DefaultTimeout is a route's timeout when it sets none, and the
	// time to read and answer a request no route takes.
	DefaultTimeout = 30 * time.Second
)

// DefaultMethods are the methods a route takes unless it lists its own:
// those of RFC 9110 §9.3 (but CONNECT and TRACE, which the gateway never
// proxies) and PATCH (RFC 5789).
var DefaultMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Check reports the first thing in o that New refuses, but for the
// dependencies New also checks (Identity and Roots for https upstreams,
// APIKeys or Tokens for routes that authenticate): a program that reads
// Options from a file checks them before it has built those. Errors start
// "gateway: ".
func (o *Options) Check() error { return o.check(false) }

// CheckDecider is Check for [NewDecider]: routes need no upstream.
func (o *Options) CheckDecider() error { return o.check(true) }

// check is Check; for a Decider (decide), routes need no upstream.
func (o *Options) check(decide bool) error {
	for _, h := range o.Hosts {
		if err := checkHost(h); err != nil {
			return fmt.Errorf("gateway: hosts: %w", err)
		}
	}
	if len(o.Routes) == 0 {
		return errors.New("gateway: no routes")
	}
	seen := map[string]bool{}
	for i := range o.Routes {
		r := &o.Routes[i]
		if err := r.check(decide); err != nil {
			return fmt.Errorf("gateway: route %q: %w", r.Prefix, err)
		}
		if seen[r.Prefix] {
			return fmt.Errorf("gateway: route %q: listed twice", r.Prefix)
		}
		seen[r.Prefix] = true
	}
	if o.CORS != nil {
		if err := o.CORS.check(); err != nil {
			return fmt.Errorf("gateway: cors: %w", err)
		}
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("gateway: trusted proxy %v: not a valid prefix", p)
		}
	}
	// The rules, business ones too, as a Limiter checks them.
	if err := (&ratelimit.Limiter{Rules: o.Limits}).Check(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// checkDeps checks what Check leaves to New: the dependencies the routes
// need.
func (o *Options) checkDeps(decide bool) error {
	for _, r := range o.Routes {
		if !r.AllowAnonymous && o.APIKeys == nil && o.Tokens == nil {
			return fmt.Errorf("gateway: route %q authenticates, but Options has neither APIKeys nor Tokens", r.Prefix)
		}
	}
	if decide || !slices.ContainsFunc(o.Routes, func(r Route) bool { return r.Upstream.Scheme == "https" }) {
		return nil
	}
	if o.Identity == nil || o.Roots == nil {
		return errors.New("gateway: https upstreams need Identity and Roots (mutual TLS)")
	}
	if o.Identity.Certificate() == nil {
		return errors.New("gateway: Identity holds no certificate: start it first (or use mtls.NewStatic)")
	}
	return nil
}

func (r *Route) check(decide bool) error {
	if err := checkPrefix(r.Prefix); err != nil {
		return err
	}
	for _, sc := range r.Scopes {
		if !httpx.IsScopeToken(sc) {
			return fmt.Errorf("scopes: %q: want a scope token of RFC 6749 §3.3 (no spaces, quotes or backslashes)", sc)
		}
	}
	if len(r.Scopes) > 0 && r.AllowAnonymous {
		return errors.New("scopes need a caller: a route that requires scopes cannot be anonymous")
	}
	if r.MaxBody < 0 {
		return fmt.Errorf("MaxBody %d: want a size in bytes (0 means %d)", r.MaxBody, DefaultMaxBody)
	}
	if r.Timeout < 0 {
		return fmt.Errorf("Timeout %v: want a positive duration (0 means %v)", r.Timeout, DefaultTimeout)
	}
	for _, m := range r.Methods {
		if !isToken(m) || strings.ToUpper(m) != m {
			return fmt.Errorf("methods: %q: want a method in upper case, such as POST (methods are case-sensitive, RFC 9110 §9.1)", m)
		}
		if m == http.MethodConnect || m == http.MethodTrace {
			return fmt.Errorf("methods: %s is never proxied", m)
		}
	}
	if decide {
		return nil
	}
	return r.checkUpstream()
}

// checkUpstream checks where the route sends its requests.
func (r *Route) checkUpstream() error {
	u := r.Upstream
	if u == nil {
		return errors.New("no upstream: want https://host:port")
	}
	if u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("upstream %q: want https://host:port", u.Redacted())
	}
	if u.Scheme == "http" && !httpx.IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("upstream %q: plain http only to loopback; use https (mutual TLS)", u.Redacted())
	}
	if u.Scheme == "https" && r.UpstreamID.IsZero() {
		return errors.New("an https upstream needs UpstreamID, the SPIFFE ID it must present")
	}
	return nil
}

// route is a Route as the gateway uses it: a copy, its defaults filled
// in.
type route struct {
	Route
	methods map[string]bool
	allow   string // the Allow header value (RFC 9110 §10.2.1)
}

// compile returns the route r stands for; r has been checked.
func compile(r Route) *route {
	if r.Upstream != nil {
		u := *r.Upstream
		r.Upstream = &u
	}
	r.Scopes = slices.Clone(r.Scopes)
	if r.MaxBody == 0 {
		r.MaxBody = DefaultMaxBody
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultTimeout
	}
	methods := r.Methods
	if len(methods) == 0 {
		methods = DefaultMethods
	}
	r.Methods = slices.Clone(methods)
	rt := &route{Route: r, methods: map[string]bool{}}
	for _, m := range methods {
		rt.methods[m] = true
	}
	if rt.methods[http.MethodGet] {
		rt.methods[http.MethodHead] = true
	}
	ms := make([]string, 0, len(rt.methods))
	for m := range rt.methods {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	rt.allow = strings.Join(ms, ", ")
	return rt
}

// checkHost checks an entry of Hosts: a host name or address as clients
// send it in Host (international names in punycode), with an optional
// port.
func checkHost(h string) error {
	u, err := url.Parse("//" + h)
	if err != nil || u.Host != h || u.User != nil || u.Hostname() == "" || strings.ContainsAny(h, "*/") {
		return fmt.Errorf("%q: want a host name such as api.payments.example, with an optional :port", h)
	}
	if strings.ContainsFunc(h, func(r rune) bool { return r > unicode.MaxASCII }) {
		return fmt.Errorf("%q: write the host name as clients send it, in punycode (xn--...)", h)
	}
	if strings.HasSuffix(u.Hostname(), ".") {
		return fmt.Errorf("%q: without the trailing dot", h)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 §5.6.2 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// checkPrefix accepts a clean path of RFC 3986 path characters, without
// percent-encoding: http.ServeMux decodes escapes in patterns, so /a%62/
// would be the route /ab/ (and a second registration of it a panic), and
// the access log would not know it. '*' and braces look like patterns
// but would match only themselves.
func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("prefix: want a clean path such as /v1/ (no wildcards)")
	}
	for _, c := range p {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("/-._~!$&'()+,;=:@", c)
		if !ok {
			return fmt.Errorf("prefix: %q: want a clean path such as /v1/ of letters, digits and -._~!$&'()+,;=:@ (no wildcards or escapes)", c)
		}
	}
	if path.Clean(p) != strings.TrimSuffix(p, "/") && p != "/" {
		return fmt.Errorf("prefix: want a clean path such as /v1/ (no //, . or ..)")
	}
	return nil
}

func (c *CORS) check() error {
	if len(c.AllowedOrigins) == 0 {
		return fmt.Errorf("allowed_origins is empty")
	}
	for _, o := range c.AllowedOrigins {
		// A strict allow-list: no "*", no patterns. rs/cors answers "*"
		// with credentials by reflecting the request's Origin, which lets
		// every site read credentialed responses.
		if strings.Contains(o, "*") {
			return fmt.Errorf("allowed origin %q: list each origin; wildcards are refused", o)
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return fmt.Errorf("allowed origin %q: want scheme://host[:port]", o)
		}
		// Origins are compared exactly (the Fetch standard), and browsers
		// send them serialized: lower case, without the default port,
		// international names in punycode. An origin written otherwise
		// would never match.
		if strings.ContainsFunc(u.Host, func(r rune) bool { return r > unicode.MaxASCII }) {
			return fmt.Errorf("allowed origin %q: write the host name as browsers send it, in punycode (xn--...)", o)
		}
		if canon := canonicalOrigin(u); o != canon {
			return fmt.Errorf("allowed origin %q: write it as browsers send it: %q", o, canon)
		}
		if u.Scheme == "http" && !httpx.IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("allowed origin %q: an http origin can be impersonated on the network; use https", o)
		}
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("MaxAge %v: want a positive duration, or 0", c.MaxAge)
	}
	return nil
}

// canonicalOrigin is the ASCII serialization of an origin (RFC 6454 §6.2)
// for a URL with a scheme and a host only.
func canonicalOrigin(u *url.URL) string {
	host := strings.TrimSuffix(strings.ToLower(u.Host), ":")
	if p := u.Port(); u.Scheme == "https" && p == "443" || u.Scheme == "http" && p == "80" {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return u.Scheme + "://" + host
}
