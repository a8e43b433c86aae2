package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/ratelimit"
)

// decideOptions are the routes and limits both sides of TestDeciderIsTheGateway
// run: every kind of refusal the gateway makes before it proxies.
func decideOptions(up string) Options {
	return Options{
		Hosts: []string{"pay.example", "127.0.0.1"},
		Routes: []Route{
			routeTo("/v1/", up, func(r *Route) { r.Methods = []string{"GET", "POST"} }),
			routeTo("/v1/withdrawals", up, func(r *Route) { r.Scopes = []string{"payment.withdraw"} }),
			routeTo("/v1/payments", up, func(r *Route) { r.Scopes = []string{"payment.write"}; r.MaxBody = 100 }),
			routeTo("/open/", up, anonymous),
		},
		CORS: &CORS{AllowedOrigins: []string{"https://app.example"}, AllowedHeaders: []string{"X-Api-Key"}},
		Limits: []ratelimit.Rule{
			rule("per-client", 3, time.Minute, []ratelimit.By{ratelimit.ByClient}, "/v1/"),
			rule("open", 2, time.Minute, []ratelimit.By{ratelimit.ByAddr}, "/open/"),
		},
	}
}

// TestDeciderIsTheGateway sends the same requests to a Gateway (over
// TLS, to a real upstream) and to a Decider built from the same Options:
// each request the gateway proxies the Decider allows, and each refusal
// is the gateway's, status, headers and body.
func TestDeciderIsTheGateway(t *testing.T) {
	t.Parallel()
	e := newE2E(t, decideOptions)
	o := decideOptions(e.up.URL)
	o.APIKeys, o.Tokens, o.Logger = e.keys.v, e.tokens.validator(), discardLog
	d, err := NewDecider(o)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, rec, err := e.keys.m.Create(context.Background(), "partner", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	old := oldKey.String()
	if _, _, err := e.keys.m.Rotate(context.Background(), rec.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	tok := e.tokens.mint(t, "shop", time.Now(), 5*time.Minute)

	type req struct {
		name, method, path string
		hdr                []string
	}
	reqs := []req{
		{"no credential", "GET", "/v1/accounts", nil},
		{"a wrong key", "GET", "/v1/accounts", []string{"X-API-Key", "rk_live_" + strings.Repeat("A", apikey.Len-len("rk_live_"))}},
		{"two credentials", "GET", "/v1/accounts", []string{"X-API-Key", e.shopKey, "Authorization", "Bearer " + tok}},
		{"a bearer token", "GET", "/v1/accounts", []string{"Authorization", "Bearer " + tok}},
		{"a key", "GET", "/v1/accounts", []string{"X-API-Key", e.shopKey, "X-Rampart_Client", "forged", "Cookie", "s=1"}},
		{"a missing scope", "POST", "/v1/withdrawals", []string{"X-API-Key", e.shopKey}},
		{"the scope", "POST", "/v1/payments", []string{"X-API-Key", e.shopKey}},
		{"a declared body over the limit", "POST", "/v1/payments", []string{"X-API-Key", e.shopKey, "Content-Length", "101"}},
		{"over the client's limit", "GET", "/v1/accounts", []string{"X-API-Key", e.shopKey}},
		{"a rotated key in its grace period", "GET", "/v1/accounts", []string{"X-API-Key", old}},
		{"a method the route does not take", "DELETE", "/v1/accounts", []string{"X-API-Key", e.shopKey}},
		{"an unknown method", "PURGE", "/v1/accounts", nil},
		{"a method in the wrong case", "get", "/v1/accounts", nil},
		{"an encoded dot segment", "GET", "/v1/%2e%2e/admin", nil},
		{"no route", "GET", "/admin", nil},
		{"another host", "GET", "/open/x", []string{"Host", "evil.example"}},
		{"an upgrade", "GET", "/open/x", []string{"Connection", "upgrade", "Upgrade", "websocket"}},
		{"anonymous", "GET", "/open/x", nil},
		{"anonymous again", "GET", "/open/x", nil},
		{"anonymous over the limit", "GET", "/open/x", nil},
		{"a preflight", "OPTIONS", "/v1/accounts", []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-api-key"}},
		{"a cross-origin request", "GET", "/v1/accounts", []string{"Origin", "https://app.example", "X-API-Key", old}},
	}
	// What some of the requests must come to, so that the comparison
	// is not between two gateways that allow, or refuse, everything.
	want := map[string]int{"no credential": 401, "a key": 0, "a missing scope": 403, "the scope": 0,
		"over the client's limit": 429, "a rotated key in its grace period": 0, "anonymous over the limit": 429,
		"a preflight": 204, "a declared body over the limit": 413}
	for _, rq := range reqs {
		before := len(e.up.requests())
		gwReq, err := http.NewRequest(rq.method, e.gw.URL+rq.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		dReq := httptest.NewRequest(rq.method, "https://127.0.0.1"+rq.path, nil)
		dReq.RemoteAddr = "127.0.0.1:40000"
		for i := 0; i+1 < len(rq.hdr); i += 2 {
			switch name, v := rq.hdr[i], rq.hdr[i+1]; name {
			case "Host":
				gwReq.Host, dReq.Host = v, v
			case "Content-Length":
				gwReq.ContentLength = 101
				gwReq.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", 101)))
				dReq.ContentLength = 101
			default:
				gwReq.Header.Add(name, v)
				dReq.Header.Add(name, v)
			}
		}
		resp, err := e.gw.client.Do(gwReq)
		if err != nil {
			t.Fatalf("%s: %v", rq.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		proxied := len(e.up.requests()) > before
		dec, err := d.Decide(dReq, "")
		if err != nil {
			t.Fatalf("%s: Decide: %v", rq.name, err)
		}
		if code, ok := want[rq.name]; ok && code != dec.Status {
			t.Errorf("%s: Decide's status %d, want %d (0: allowed)", rq.name, dec.Status, code)
		}
		if rq.name == "a rotated key in its grace period" && (dec.Header.Get("Sunset") == "" || dec.Header.Get("Deprecation") == "") {
			t.Errorf("%s: no Sunset and Deprecation in %v (RFC 8594, RFC 9745)", rq.name, dec.Header)
		}
		if dec.Allowed != proxied {
			t.Errorf("%s: Decide allowed %v; the gateway proxied it: %v (status %d %s)", rq.name, dec.Allowed, proxied, resp.StatusCode, body)
			continue
		}
		if proxied {
			for _, name := range []string{"Ratelimit", "Ratelimit-Policy", "Deprecation", "Sunset", "Access-Control-Allow-Origin"} {
				if got, want := dec.Header.Values(name), resp.Header.Values(name); !slices.Equal(got, want) {
					t.Errorf("%s: Decide's %s %q; the gateway's answer %q", rq.name, name, got, want)
				}
			}
			continue
		}
		if dec.Status != resp.StatusCode || string(dec.Body) != string(body) {
			t.Errorf("%s: Decide %d %s; the gateway %d %s", rq.name, dec.Status, dec.Body, resp.StatusCode, body)
		}
		for name := range resp.Header {
			if name == "Date" || name == "Content-Length" || name == "Connection" {
				continue
			}
			if got, want := dec.Header.Values(name), resp.Header.Values(name); !slices.Equal(got, want) {
				t.Errorf("%s: Decide's %s %q; the gateway's %q", rq.name, name, got, want)
			}
		}
		for name := range dec.Header {
			if _, ok := resp.Header[name]; !ok {
				t.Errorf("%s: Decide's refusal has %s, the gateway's none", rq.name, name)
			}
		}
	}
}

// TestDecideDrop: the fields the service must not receive are named,
// whatever the decision.
func TestDecideDrop(t *testing.T) {
	t.Parallel()
	ks := newKeyStore(t)
	d, err := NewDecider(Options{Routes: []Route{{Prefix: "/v1/"}, {Prefix: "/web/", ForwardCookies: true}}, APIKeys: ks.v, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	key := ks.key(t, "shop")
	for _, c := range []struct {
		path string
		want []string
	}{
		{"/v1/x", []string{"Cookie", "X_api_key"}},
		{"/web/x", []string{"X_api_key"}},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		r.Header.Set("X-API-Key", key)
		r.Header.Set("Cookie", "s=1")
		r.Header.Set("X_API_Key", "other")
		dec, err := d.Decide(r, "")
		if err != nil {
			t.Fatal(err)
		}
		if !dec.Allowed || dec.Caller == nil || dec.Caller.ClientID != "shop" || dec.Route != strings.TrimSuffix(c.path, "x") {
			t.Fatalf("%s: %+v, want allowed for shop", c.path, dec)
		}
		if !slices.Equal(dec.Drop, c.want) {
			t.Errorf("%s: Drop %q, want %q", c.path, dec.Drop, c.want)
		}
	}
}

// TestDecideRoute: a route named by the engine applies, whatever the path;
// an unknown one is an error, never an allowed request.
func TestDecideRoute(t *testing.T) {
	t.Parallel()
	ks := newKeyStore(t)
	d, err := NewDecider(Options{Routes: []Route{{Prefix: "/v1/", Scopes: []string{"payment.read"}}, {Prefix: "/open/", AllowAnonymous: true}}, APIKeys: ks.v, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/open/anything", nil)
	dec, err := d.Decide(r, "/v1/")
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allowed || dec.Status != http.StatusUnauthorized || dec.Route != "/v1/" {
		t.Errorf("route /v1/ on /open/anything without a key: %+v, want 401 from route /v1/", dec)
	}
	if _, err := d.Decide(httptest.NewRequest("GET", "/v1/x", nil), "/v2/"); !errors.Is(err, ErrUnknownRoute) {
		t.Errorf("an unknown route: %v, want ErrUnknownRoute", err)
	}
	if got := d.Routes(); !slices.Equal(got, []string{"/v1/", "/open/"}) {
		t.Errorf("Routes %q", got)
	}
}

// TestRouteScopes: a route's scopes are required, every one, compared
// exactly (RFC 6750 §3.1 insufficient_scope), at the gateway too.
func TestRouteScopes(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: []Route{
			routeTo("/read/", up, func(r *Route) { r.Scopes = []string{"payment.read"} }),
			routeTo("/withdraw/", up, func(r *Route) { r.Scopes = []string{"payment.read", "payment.withdraw"} }),
		}}
	})
	resp, body := e.gw.get(t, "/read/x", "X-API-Key", e.shopKey)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.gw.get(t, "/withdraw/x", "X-API-Key", e.shopKey)
	wantStatus(t, resp, body, http.StatusForbidden)
	if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="payment.read payment.withdraw"`) {
		t.Errorf("WWW-Authenticate %q, want insufficient_scope with the scopes required (RFC 6750 §3.1)", h)
	}
	for _, bad := range []Route{
		{Prefix: "/x/", Upstream: mustURL("http://127.0.0.1:1"), Scopes: []string{"a b"}},
		{Prefix: "/x/", Upstream: mustURL("http://127.0.0.1:1"), Scopes: []string{"payment.read"}, AllowAnonymous: true},
	} {
		if err := (&Options{Routes: []Route{bad}}).Check(); err == nil {
			t.Errorf("Check(%+v): nil, want an error", bad)
		}
	}
}

// TestDeciderNeedsNoUpstream: a Decider's routes have no upstream; a
// Gateway's must.
func TestDeciderNeedsNoUpstream(t *testing.T) {
	t.Parallel()
	o := Options{Routes: []Route{{Prefix: "/v1/", AllowAnonymous: true}}}
	if _, err := NewDecider(o); err != nil {
		t.Errorf("NewDecider: %v", err)
	}
	if _, err := New(o); err == nil {
		t.Error("New without an upstream: nil error")
	}
}
