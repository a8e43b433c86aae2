package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// New refuses what it would not serve safely, with an error saying which
// field, and never a panic (P2: a literal used to crash in New).
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	keys := newKeyStore(t)
	open := func(r Route) Options {
		return Options{Routes: []Route{r}, Logger: discardLog}
	}
	https := func(with ...func(*Route)) Options {
		o := open(routeTo("/v1/", "https://10.0.0.5:9444", with...))
		o.Identity, o.Roots, o.APIKeys = pki.static(t, gatewayID), pki.roots, keys.v
		return o
	}
	with := func(o Options, f func(*Options)) Options { f(&o); return o }
	loopback := mustURL("http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no routes", Options{}, "gateway: no routes"},
		{"empty prefix", open(Route{Upstream: loopback, AllowAnonymous: true}), `gateway: route "": prefix`},
		{"wildcard prefix", open(Route{Prefix: "/v1/{id}/", Upstream: loopback, AllowAnonymous: true}), "no wildcards"},
		{"escaped prefix", open(Route{Prefix: "/v%31/", Upstream: loopback, AllowAnonymous: true}), "prefix"},
		{"nil upstream", open(Route{Prefix: "/v1/", AllowAnonymous: true}), `route "/v1/": no upstream`},
		{"upstream without host", open(Route{Prefix: "/v1/", Upstream: &url.URL{Scheme: "http", Path: "/x"}, AllowAnonymous: true}), "want https://host:port"},
		{"ftp upstream", open(Route{Prefix: "/v1/", Upstream: mustURL("ftp://127.0.0.1"), AllowAnonymous: true}), "want https://host:port"},
		{"plain http on the network", open(Route{Prefix: "/v1/", Upstream: mustURL("http://10.0.0.5:8080"), AllowAnonymous: true}), "plain http only to loopback"},
		{"password in the error", open(Route{Prefix: "/v1/", Upstream: mustURL("http://u:secret@10.0.0.5"), AllowAnonymous: true}), "xxxxx"},
		{"https without an ID", https(func(r *Route) { r.UpstreamID = spiffeid.ID{} }), "UpstreamID"},
		{"negative MaxBody", open(Route{Prefix: "/v1/", Upstream: loopback, AllowAnonymous: true, MaxBody: -1}), "MaxBody -1"},
		{"negative Timeout", open(Route{Prefix: "/v1/", Upstream: loopback, AllowAnonymous: true, Timeout: -time.Second}), "Timeout -1s"},
		{"lower-case method", open(Route{Prefix: "/v1/", Upstream: loopback, AllowAnonymous: true, Methods: []string{"post"}}), "upper case"},
		{"CONNECT", open(Route{Prefix: "/v1/", Upstream: loopback, AllowAnonymous: true, Methods: []string{"CONNECT"}}), "never proxied"},
		{"a route twice", Options{Routes: []Route{routeTo("/v1/", "http://127.0.0.1:1", anonymous), routeTo("/v1/", "http://localhost:2", anonymous)}}, `route "/v1/": listed twice`},
		{"a host with a path", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) { o.Hosts = []string{"api.example/v1"} }), "gateway: hosts:"},
		{"a wildcard origin", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) { o.CORS = &CORS{AllowedOrigins: []string{"*"}} }), "wildcards are refused"},
		{"CORS without origins", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) { o.CORS = &CORS{} }), "allowed_origins is empty"},
		{"negative MaxAge", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) {
			o.CORS = &CORS{AllowedOrigins: []string{"https://a.example"}, MaxAge: -time.Minute}
		}), "MaxAge"},
		{"an invalid proxy prefix", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) { o.TrustedProxies = []netip.Prefix{{}} }), "trusted proxy"},
		{"a rule without a rate", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) {
			o.Limits = []ratelimit.Rule{{Name: "a", By: byAddr}}
		}), "ratelimit: rule a"},
		{"a rule pattern ServeMux refuses", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) {
			o.Limits = []ratelimit.Rule{rule("a", 1, time.Second, byAddr, "/{x")}
		}), "routes"},
		{"a business rule named twice", with(open(routeTo("/v1/", "http://127.0.0.1:1", anonymous)), func(o *Options) {
			o.Limits = []ratelimit.Rule{rule("a", 1, time.Second, nil), rule("a", 1, time.Second, nil)}
		}), "named twice"},
		{"authentication without verifiers", open(routeTo("/v1/", "http://127.0.0.1:1")), "neither APIKeys nor Tokens"},
		{"https without an identity", with(https(), func(o *Options) { o.Identity = nil }), "need Identity and Roots"},
		{"https without roots", with(https(), func(o *Options) { o.Roots = nil }), "need Identity and Roots"},
		{"an identity never started", with(https(), func(o *Options) { o.Identity = &mtls.Reloader{} }), "Identity holds no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.o.Check(); err == nil && !strings.Contains(tc.want, "APIKeys") && !strings.Contains(tc.want, "Identity") {
				t.Errorf("Check accepts it")
			}
			g, err := New(tc.o)
			if err == nil || g != nil {
				t.Fatalf("New = %v, %v; want an error", g, err)
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to start with \"gateway: \" and contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("err = %q holds the upstream's password", err)
			}
		})
	}
}

// The zero values are the documented defaults: a Route authenticates,
// takes DefaultMethods and bodies up to DefaultMaxBody. New keeps copies:
// changing the Options afterwards changes nothing.
func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	keys := newKeyStore(t)
	key := keys.key(t, "shop")
	u := mustURL(up.URL)
	o := Options{Routes: []Route{{Prefix: "/v1/", Upstream: u}}, APIKeys: keys.v}
	tg := startGateway(t, o)
	o.Routes[0].Prefix, o.Routes[0].AllowAnonymous, u.Host = "/v2/", true, "127.0.0.1:1"

	resp, body := tg.get(t, "/v1/payments")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = tg.do(t, http.MethodPost, "/v1/payments", strings.NewReader(strings.Repeat("x", DefaultMaxBody)), "X-API-Key", key)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = tg.do(t, http.MethodPost, "/v1/payments", strings.NewReader(strings.Repeat("x", DefaultMaxBody+1)), "X-API-Key", key)
	wantProblem(t, resp, body, http.StatusRequestEntityTooLarge)
	resp, body = tg.do(t, "PROPFIND", "/v1/payments", nil, "X-API-Key", key)
	wantProblem(t, resp, body, http.StatusNotImplemented)
	resp, body = tg.get(t, "/v2/payments")
	wantProblem(t, resp, body, http.StatusNotFound)
}

// A Registry shared by two gateways is an error, not a panic; a New that
// fails leaves the Registry as it was.
func TestNewRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	o := Options{Routes: []Route{routeTo("/v1/", "http://127.0.0.1:1", anonymous)}, Logger: discardLog, Registry: reg}
	bad := o
	bad.Limits = []ratelimit.Rule{{Name: "Bad Name"}}
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted a bad rule")
	}
	if _, err := New(o); err != nil {
		t.Fatalf("New after a failed New with the same Registry: %v", err)
	}
	if _, err := New(o); err == nil || !strings.HasPrefix(err.Error(), "gateway: Registry: ") {
		t.Fatalf("a second gateway on the same Registry: %v, want an error", err)
	}
}

// FuzzNew builds Options from arbitrary values (nil and odd URLs, zero
// and malformed IDs, negative sizes and durations, empty and duplicate
// prefixes, methods, hosts, origins, rules, proxies, missing or unstarted
// dependencies) and checks that New returns an error starting
// "gateway: ", or a gateway that serves: GET /healthz answers 200, and a
// request to the route is served (its context is cancelled, so that no
// upstream is dialled). Never a panic.
func FuzzNew(f *testing.F) {
	type args struct {
		prefix, upstream, id     string
		maxBody, timeout, maxAge int64
		methods, host, origin    string
		rule, pattern, proxy     string
		rate                     int
		per                      int64
		flags                    uint16
	}
	for _, a := range []args{
		{prefix: "/v1/", upstream: "http://127.0.0.1:1", flags: fAnonymous},
		{prefix: "/v1/", upstream: "https://10.0.0.5:9444", id: "spiffe://pay.internal/ns/prod/sa/payments", flags: fIdentity | fAPIKeys},
		{prefix: "/", upstream: "http://localhost:1", flags: fAnonymous | fStrip | fWebsocket | fCookies | fSecond},
		{prefix: "/v1", upstream: "http://[::1]:1/base?x=1", flags: fAnonymous | fDuplicate},
		{prefix: "", upstream: "", maxBody: -1, timeout: -1, flags: fNilURL},
		{prefix: "/a/", upstream: "https://h", id: "spiffe://t/w", flags: fUnstarted | fAPIKeys},
		{prefix: "/a/", upstream: "http://127.0.0.1:1", methods: "GET,PROPFIND,post", host: "API.example:8443", flags: fAnonymous},
		{prefix: "/a/", upstream: "http://127.0.0.1:1", origin: "https://a.example", maxAge: int64(time.Hour), flags: fAnonymous | fCORS},
		{prefix: "/a/", upstream: "http://127.0.0.1:1", rule: "a", rate: 1, per: int64(time.Second), pattern: "GET /a/{id}", flags: fAnonymous | fByAddr},
		{prefix: "/a/", upstream: "http://127.0.0.1:1", rule: "b", rate: 5, per: 1, pattern: "/{x", proxy: "10.0.0.0/8", flags: fAPIKeys | fByClient},
	} {
		f.Add(a.prefix, a.upstream, a.id, a.maxBody, a.timeout, a.maxAge, a.methods, a.host, a.origin, a.rule, a.pattern, a.proxy, a.rate, a.per, a.flags)
	}
	pki := newTestPKI(f)
	identity := pki.static(f, gatewayID)
	keys := newKeyStore(f)
	f.Fuzz(func(t *testing.T, prefix, upstream, id string, maxBody, timeout, maxAge int64, methods, host, origin, ruleName, pattern, proxy string, rate int, per int64, flags uint16) {
		r := Route{Prefix: prefix, MaxBody: maxBody, Timeout: time.Duration(timeout),
			AllowAnonymous: flags&fAnonymous != 0, StripPrefix: flags&fStrip != 0, Websocket: flags&fWebsocket != 0, ForwardCookies: flags&fCookies != 0}
		if u, err := url.Parse(upstream); err == nil && flags&fNilURL == 0 {
			r.Upstream = u
		}
		r.UpstreamID, _ = spiffeid.FromString(id) // the zero ID if malformed
		if methods != "" {
			r.Methods = strings.Split(methods, ",")
		}
		o := Options{Routes: []Route{r}, Logger: discardLog, AccessLog: discardLog, Registry: prometheus.NewRegistry()}
		if flags&fDuplicate != 0 {
			o.Routes = append(o.Routes, r)
		}
		if flags&fSecond != 0 {
			o.Routes = append(o.Routes, Route{Prefix: "/second/", Upstream: mustURL("http://127.0.0.1:1"), AllowAnonymous: true})
		}
		if host != "" {
			o.Hosts = []string{host}
		}
		if flags&fCORS != 0 {
			o.CORS = &CORS{AllowedOrigins: []string{origin}, AllowedMethods: r.Methods, AllowedHeaders: []string{pattern}, MaxAge: time.Duration(maxAge)}
		}
		if ruleName != "" {
			lr := ratelimit.Rule{Name: ruleName, Limit: ratelimit.Limit{Rate: rate, Period: time.Duration(per), Burst: rate}}
			if flags&fByAddr != 0 {
				lr.By = append(lr.By, ratelimit.ByAddr)
			}
			if flags&fByClient != 0 {
				lr.By = append(lr.By, ratelimit.ByClient)
			}
			if pattern != "" {
				lr.Routes = []string{pattern}
			}
			o.Limits = []ratelimit.Rule{lr}
		}
		if proxy != "" {
			p, _ := netip.ParsePrefix(proxy) // the zero, invalid, prefix if malformed
			o.TrustedProxies = []netip.Prefix{p}
		}
		if flags&fIdentity != 0 {
			o.Identity, o.Roots = identity, pki.roots
		}
		if flags&fUnstarted != 0 {
			o.Identity, o.Roots = &mtls.Reloader{}, pki.roots
		}
		if flags&fAPIKeys != 0 {
			o.APIKeys = keys.v
		}

		g, err := New(o)
		if err != nil {
			if g != nil {
				t.Fatal("a gateway and an error")
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		defer g.Close()
		if r.Upstream == nil || r.Upstream.Scheme == "https" && (o.Identity == nil || o.Identity.Certificate() == nil) {
			t.Fatalf("accepted a route it cannot proxy: %+v", r)
		}
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /healthz: %d %s", rec.Code, rec.Body)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
		req.URL.Path, req.Host = r.Prefix, "gateway.test"
		if len(o.Hosts) > 0 {
			req.Host = o.Hosts[0]
		}
		rec = httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, req)
	})
}

// The flags of FuzzNew.
const (
	fAnonymous uint16 = 1 << iota
	fStrip
	fWebsocket
	fCookies
	fNilURL
	fDuplicate
	fSecond
	fCORS
	fByAddr
	fByClient
	fIdentity
	fUnstarted
	fAPIKeys
)
