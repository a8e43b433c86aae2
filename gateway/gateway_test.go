package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// e2e is a gateway in front of one payment service, over mutual TLS, with
// real API keys (SQLite) and bearer tokens. Everything the gateway logs
// goes to log, as JSON.
type e2e struct {
	pki     *testPKI
	up      *testUpstream
	keys    *keyStore
	tokens  *tokenIssuer
	gw      *testGateway
	log     *syncBuffer
	shopKey string
}

// newE2E starts the upstream, then the gateway with the options
// opts(upstream URL) and the test's verifiers, identity, roots and
// loggers.
func newE2E(t *testing.T, opts func(upstream string) Options) *e2e {
	t.Helper()
	e := &e2e{pki: newTestPKI(t), keys: newKeyStore(t), tokens: newTokenIssuer(t), log: &syncBuffer{}}
	e.up = startUpstream(t, e.pki.static(t, paymentsID), e.pki.roots, gatewayID)
	e.shopKey = e.keys.key(t, "shop")
	logger := slog.New(slog.NewJSONHandler(e.log, nil))
	o := opts(e.up.URL)
	o.APIKeys, o.Tokens = e.keys.v, e.tokens.validator()
	o.Identity, o.Roots = e.pki.static(t, gatewayID), e.pki.roots
	o.Logger, o.AccessLog = logger, logger
	e.gw = startGateway(t, o)
	return e
}

// standardRoutes: /v1/ needs authentication, /open/ does not, /small/
// takes 1 KiB bodies, /slow/ waits 300 ms for the upstream.
func standardRoutes(up string) []Route {
	return []Route{
		routeTo("/v1/", up),
		routeTo("/open/", up, anonymous),
		routeTo("/small/", up, func(r *Route) { r.MaxBody = 1 << 10 }),
		routeTo("/slow/", up, func(r *Route) { r.Timeout = 300 * time.Millisecond }),
	}
}

// standard is the options of standardRoutes.
func standard(up string) Options { return Options{Routes: standardRoutes(up)} }

// wantBearerChallenge checks an RFC 6750 §3 challenge: the Bearer scheme
// with a realm, and the error code (none for a request without
// credentials, §3.1).
func wantBearerChallenge(t *testing.T, resp *http.Response, code string) {
	t.Helper()
	h := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, `realm="`) {
		t.Fatalf("WWW-Authenticate %q, want a Bearer challenge with a realm (RFC 6750 §3)", h)
	}
	if code == "" && strings.Contains(h, "error=") {
		t.Errorf("WWW-Authenticate %q: a request without credentials gets no error code (RFC 6750 §3.1)", h)
	}
	if code != "" && !strings.Contains(h, `error="`+code+`"`) {
		t.Errorf("WWW-Authenticate %q, want error=%q", h, code)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	now := time.Now()
	unknownKey, err := apikey.Generate(apikey.Live)
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer := newTokenIssuer(t)

	t.Run("no credentials", func(t *testing.T) {
		resp, body := e.gw.get(t, "/v1/payments/none")
		wantStatus(t, resp, body, http.StatusUnauthorized)
		wantBearerChallenge(t, resp, "")
		if n := e.up.count("/v1/payments/none"); n != 0 {
			t.Errorf("the upstream saw %d unauthenticated requests", n)
		}
	})

	t.Run("api key", func(t *testing.T) {
		// X-Forwarded-For from the client is not believed: the gateway
		// writes its own.
		resp, body := e.gw.do(t, http.MethodPost, "/v1/payments?limit=5", strings.NewReader(`{"amount":100}`),
			"X-API-Key", e.shopKey, "X-Forwarded-For", "203.0.113.9", "Content-Type", "application/json",
			"Forwarded", "for=203.0.113.9", "X-Real-IP", "203.0.113.9")
		wantStatus(t, resp, body, http.StatusOK)
		if resp.ProtoMajor != 2 {
			t.Errorf("client got %s, want HTTP/2", resp.Proto)
		}
		s := echoed(t, body)
		if s.Method != http.MethodPost || s.Path != "/v1/payments" || s.RawQuery != "limit=5" || s.BodyLen != len(`{"amount":100}`) {
			t.Errorf("upstream saw %s %s?%s with %d bytes", s.Method, s.Path, s.RawQuery, s.BodyLen)
		}
		if got := s.Header.Values("X-Forwarded-For"); !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("X-Forwarded-For %q, want the client's address only", got)
		}
		// Neither are the other headers that name a client.
		for _, h := range []string{"Forwarded", "X-Real-Ip"} {
			if got := s.Header.Values(h); got != nil {
				t.Errorf("the upstream got the client's %s: %q", h, got)
			}
		}
		if got := s.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q", got)
		}
		// The service authenticates again: the credential goes along.
		if got := s.Header.Get("X-API-Key"); got != e.shopKey {
			t.Errorf("the API key was not forwarded: %q", got)
		}
		// Over mutual TLS, as the gateway.
		if s.PeerID != gatewayID.String() {
			t.Errorf("upstream saw client certificate %q, want %s", s.PeerID, gatewayID)
		}
	})

	t.Run("api key as bearer", func(t *testing.T) {
		resp, body := e.gw.get(t, "/v1/payments/1", "Authorization", "Bearer "+e.shopKey)
		wantStatus(t, resp, body, http.StatusOK)
		if got := echoed(t, body).Header.Get("Authorization"); got != "Bearer "+e.shopKey {
			t.Errorf("Authorization forwarded as %q", got)
		}
	})

	t.Run("unknown api key", func(t *testing.T) {
		resp, body := e.gw.get(t, "/v1/payments/unknown-key", "X-API-Key", unknownKey.String())
		wantStatus(t, resp, body, http.StatusUnauthorized)
		wantBearerChallenge(t, resp, "invalid_token")
	})

	t.Run("bearer token", func(t *testing.T) {
		tok := e.tokens.mint(t, "shop", now, 15*time.Minute)
		resp, body := e.gw.get(t, "/v1/payments/2", "Authorization", "Bearer "+tok)
		wantStatus(t, resp, body, http.StatusOK)
		if got := echoed(t, body).Header.Get("Authorization"); got != "Bearer "+tok {
			t.Errorf("Authorization forwarded as %q", got)
		}
	})

	for _, tc := range []struct{ name, token string }{
		{"expired token", e.tokens.mint(t, "shop", now.Add(-2*time.Hour), 15*time.Minute)},
		{"token of another issuer key", otherIssuer.mint(t, "shop", now, 15*time.Minute)},
		{"garbage token", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
		{"not a jwt", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/payments/" + strings.ReplaceAll(tc.name, " ", "-")
			resp, body := e.gw.get(t, path, "Authorization", "Bearer "+tc.token)
			wantStatus(t, resp, body, http.StatusUnauthorized)
			wantBearerChallenge(t, resp, "invalid_token")
			if n := e.up.count(path); n != 0 {
				t.Errorf("the upstream saw %d requests", n)
			}
		})
	}

	t.Run("token in the query", func(t *testing.T) {
		// RFC 6750 §2.3 allows it; the gateway does not, since URIs are
		// logged.
		tok := e.tokens.mint(t, "shop", now, 15*time.Minute)
		resp, body := e.gw.get(t, "/v1/payments/query?access_token="+tok)
		wantStatus(t, resp, body, http.StatusBadRequest)
		wantBearerChallenge(t, resp, "invalid_request")
	})

	t.Run("route without authentication", func(t *testing.T) {
		resp, body := e.gw.get(t, "/open/status")
		wantStatus(t, resp, body, http.StatusOK)
		if s := echoed(t, body); s.Path != "/open/status" || s.PeerID != gatewayID.String() {
			t.Errorf("upstream saw %+v", s)
		}
	})
}

func TestRouting(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)

	t.Run("unknown path", func(t *testing.T) {
		resp, body := e.gw.get(t, "/v2/payments", "X-API-Key", e.shopKey)
		wantProblem(t, resp, body, http.StatusNotFound)
	})
	t.Run("healthz", func(t *testing.T) {
		// No credentials, no route: load balancers call it.
		resp, body := e.gw.get(t, "/healthz")
		wantStatus(t, resp, body, http.StatusOK)
		if strings.TrimSpace(string(body)) != `{"status":"ok"}` {
			t.Errorf("body %s", body)
		}
	})
	t.Run("path cleaning", func(t *testing.T) {
		// http.ServeMux redirects to the clean path rather than routing
		// /open/../v1/ as /open/.
		req, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/open/../v1/x", nil)
		req.URL.Opaque = "/open/../v1/x"
		c := *e.gw.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/v1/x" {
			t.Errorf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := e.up.count("/v1/x") + e.up.count("/open/../v1/x"); n != 0 {
			t.Errorf("upstream saw it")
		}
	})
	t.Run("paths a service could read otherwise", func(t *testing.T) {
		// /open/ needs no credentials, /v1/ does: a service that decodes
		// or normalises what the gateway routed as /open/... must never
		// be handed it. Each is refused before any route, without
		// credentials or with.
		for _, p := range []string{
			"/open/%2E%2E/v1/x", "/open/%2e%2e%2fv1/x", "/open/..%2Fv1/x", "/open/..%5Cv1/x",
			"/open/..;/v1/x", "/open/%252e%252e/v1/x", "/open/x%00", `/open/..\v1/x`,
		} {
			req, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/", nil)
			req.URL.Opaque = p
			resp, err := e.gw.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", p, resp.StatusCode)
			}
		}
		for _, m := range []string{http.MethodConnect, http.MethodTrace} {
			req, _ := http.NewRequest(m, e.gw.URL+"/", nil)
			req.URL.Opaque = "/open/../v1/x"
			resp, err := e.gw.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s: %d, want 405", m, resp.StatusCode)
			}
		}
		if n := len(e.up.requests()); n != 0 {
			t.Errorf("the service saw %d of them: %+v", n, e.up.requests())
		}
	})
}

// Without a CORS policy there is no cross-origin access, whatever the
// service answers.
func TestNoCORS(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	e.up.mu.Lock()
	e.up.headers = http.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Allow-Credentials": {"true"}}
	e.up.mu.Unlock()
	resp, body := e.gw.get(t, "/open/cors", "Origin", "https://evil.example")
	wantStatus(t, resp, body, http.StatusOK)
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
		if got := resp.Header.Values(h); got != nil {
			t.Errorf("%s %q", h, got)
		}
	}
}

// A route may take every path; /healthz stays the gateway's.
func TestRootRoute(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: []Route{routeTo("/", up, anonymous)}}
	})
	resp, body := e.gw.get(t, "/anything/at/all")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body); s.Path != "/anything/at/all" {
		t.Errorf("upstream saw %q", s.Path)
	}
	resp, body = e.gw.get(t, "/healthz")
	wantStatus(t, resp, body, http.StatusOK)
	if e.up.count("/healthz") != 0 {
		t.Error("GET /healthz was proxied")
	}
}

// unsized hides the length of a reader, so that the request goes without
// Content-Length (a DATA stream in HTTP/2, chunked in HTTP/1.1).
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

// RFC 9110 §15.5.14: 413 Content Too Large.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	big := bytes.Repeat([]byte("x"), 64<<10)

	t.Run("declared length", func(t *testing.T) {
		resp, body := e.gw.do(t, http.MethodPost, "/small/declared", bytes.NewReader(big), "X-API-Key", e.shopKey)
		wantProblem(t, resp, body, http.StatusRequestEntityTooLarge)
		if n := e.up.count("/small/declared"); n != 0 {
			t.Errorf("the upstream saw %d requests", n)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		resp, body := e.gw.do(t, http.MethodPost, "/small/streamed", unsized{bytes.NewReader(big)}, "X-API-Key", e.shopKey)
		if resp.Request.ContentLength != -1 && resp.Request.ContentLength != 0 {
			t.Fatalf("request sent with a length: %d", resp.Request.ContentLength)
		}
		wantProblem(t, resp, body, http.StatusRequestEntityTooLarge)
	})
	t.Run("at the limit", func(t *testing.T) {
		resp, body := e.gw.do(t, http.MethodPost, "/small/exact", unsized{bytes.NewReader(big[:1<<10])}, "X-API-Key", e.shopKey)
		wantStatus(t, resp, body, http.StatusOK)
		if s := echoed(t, body); s.BodyLen != 1<<10 {
			t.Errorf("upstream got %d bytes", s.BodyLen)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		// The size is refused before the credential is even looked at.
		resp, body := e.gw.do(t, http.MethodPost, "/small/anon", bytes.NewReader(big))
		wantProblem(t, resp, body, http.StatusRequestEntityTooLarge)
	})
}

// RFC 9110 §15.6.5: 504 Gateway Timeout when the upstream does not answer
// within the route's timeout.
func TestUpstreamTimeout(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	start := time.Now()
	resp, body := e.gw.get(t, "/slow/report/slow", "X-API-Key", e.shopKey)
	wantProblem(t, resp, body, http.StatusGatewayTimeout)
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("answered after %v, want about 300ms", d)
	}
	if n := e.up.count("/slow/report/slow"); n != 1 {
		t.Errorf("upstream saw %d requests", n)
	}
	// A fast answer on the same route is fine.
	resp, body = e.gw.get(t, "/slow/report", "X-API-Key", e.shopKey)
	wantStatus(t, resp, body, http.StatusOK)
}

// The gateway talks only to the service named by upstream_id, with a
// certificate from the internal CA: anything else is 502 and the request
// never reaches it.
func TestUpstreamIdentity(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	foreign := newTestPKI(t)
	for _, tc := range []struct {
		name string
		// the upstream's certificate and the IDs it lets in
		up func(t *testing.T) *testUpstream
	}{
		{"another SPIFFE ID", func(t *testing.T) *testUpstream {
			return startUpstream(t, pki.static(t, impostorID), pki.roots, gatewayID)
		}},
		{"another CA", func(t *testing.T) *testUpstream {
			// Same ID, but a CA the gateway does not trust; it trusts
			// the gateway's, so that only the gateway's check fails.
			return startUpstream(t, foreign.static(t, paymentsID), pki.roots, gatewayID)
		}},
		{"gateway not allowed by the upstream", func(t *testing.T) *testUpstream {
			return startUpstream(t, pki.static(t, paymentsID), pki.roots, impostorID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up(t)
			log := &syncBuffer{}
			gw := startGateway(t, Options{Routes: []Route{routeTo("/v1/", up.URL, anonymous)},
				Identity: pki.static(t, gatewayID), Roots: pki.roots, Logger: slog.New(slog.NewJSONHandler(log, nil))})
			resp, body := gw.get(t, "/v1/payments")
			wantProblem(t, resp, body, http.StatusBadGateway)
			if strings.Contains(string(body), "certificate") || strings.Contains(string(body), "spiffe") {
				t.Errorf("the client learns why: %s", body)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("the upstream handler ran %d times", n)
			}
			// Whoever is on call learns why.
			eventually(t, "the error log", func() bool { return strings.Contains(log.String(), "upstream failed") })
		})
	}

	t.Run("the right one", func(t *testing.T) {
		up := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
		gw := startGateway(t, Options{Routes: []Route{routeTo("/v1/", up.URL, anonymous)},
			Identity: pki.static(t, gatewayID), Roots: pki.roots})
		resp, body := gw.get(t, "/v1/payments")
		wantStatus(t, resp, body, http.StatusOK)
	})
}

// wantRateLimited checks a 429 answer (RFC 6585 §4) with Retry-After
// (RFC 9110 §10.2.3) and the RateLimit fields.
func wantRateLimited(t *testing.T, resp *http.Response, body []byte, rule string) {
	t.Helper()
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want delta seconds", resp.Header.Get("Retry-After"))
	}
	if p := resp.Header.Get("RateLimit-Policy"); !strings.Contains(p, `"`+rule+`"`) {
		t.Errorf("RateLimit-Policy %q, want rule %s", p, rule)
	}
	if l := resp.Header.Get("RateLimit"); !strings.Contains(l, `"`+rule+`";r=0`) {
		t.Errorf("RateLimit %q, want rule %s with nothing remaining", l, rule)
	}
}

func TestEdgeRateLimit(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: standardRoutes(up), Limits: []ratelimit.Rule{rule("per-address", 3, time.Minute, byAddr)}}
	})
	for i := range 3 {
		resp, body := e.gw.get(t, fmt.Sprintf("/open/%d", i))
		wantStatus(t, resp, body, http.StatusOK)
		if resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Policy") == "" {
			t.Errorf("request %d: no RateLimit fields", i)
		}
	}
	resp, body := e.gw.get(t, "/open/3")
	wantRateLimited(t, resp, body, "per-address")
	// Before authentication: a flood of guesses costs no key lookup, and
	// a valid key does not lift it.
	resp, body = e.gw.get(t, "/v1/payments", "X-API-Key", e.shopKey)
	wantRateLimited(t, resp, body, "per-address")
	if n := e.up.count("/open/3") + e.up.count("/v1/payments"); n != 0 {
		t.Errorf("upstream saw %d limited requests", n)
	}
}

func TestClientRateLimit(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: standardRoutes(up), Limits: []ratelimit.Rule{rule("per-client", 2, time.Minute, byClient)}}
	})
	partnerKey := e.keys.key(t, "partner")
	// Two keys of one client share its limit.
	shop2 := e.keys.key(t, "shop")
	for _, k := range []string{e.shopKey, shop2} {
		resp, body := e.gw.get(t, "/v1/payments", "X-API-Key", k)
		wantStatus(t, resp, body, http.StatusOK)
	}
	resp, body := e.gw.get(t, "/v1/payments", "X-API-Key", e.shopKey)
	wantRateLimited(t, resp, body, "per-client")
	tok := e.tokens.mint(t, "shop", time.Now(), time.Minute)
	resp, body = e.gw.get(t, "/v1/payments", "Authorization", "Bearer "+tok)
	wantRateLimited(t, resp, body, "per-client")

	// Another client is not affected.
	resp, body = e.gw.get(t, "/v1/payments", "X-API-Key", partnerKey)
	wantStatus(t, resp, body, http.StatusOK)
	// Nor are requests without a client.
	resp, body = e.gw.get(t, "/open/status")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.gw.get(t, "/v1/payments")
	wantStatus(t, resp, body, http.StatusUnauthorized)
}

func TestReload(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)

	// A request in flight on the old configuration...
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := e.gw.client.Get(e.gw.URL + "/open/long/hold")
		if err != nil {
			done <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	eventually(t, "the held request at the upstream", func() bool { return e.up.count("/open/long/hold") == 1 })

	// ...while the configuration changes: /open/ goes away, /v2/ comes.
	if err := e.gw.g.Reload(Options{Routes: []Route{routeTo("/v2/", e.up.URL, anonymous)}, Identity: e.pki.static(t, gatewayID), Roots: e.pki.roots}); err != nil {
		t.Fatal(err)
	}
	resp, body := e.gw.get(t, "/open/status")
	wantProblem(t, resp, body, http.StatusNotFound)
	resp, body = e.gw.get(t, "/v2/status")
	wantStatus(t, resp, body, http.StatusOK)

	// The old request finishes, on the old configuration.
	close(e.up.release)
	select {
	case r := <-done:
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("request in flight during the reload: %d %v", r.status, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight never finished")
	}
}

// Options that cannot be built are refused and the old ones keep
// serving; another identity given to Reload is used for new connections.
// (Identity files and their reload are internal/app/edge's.)
func TestReloadBroken(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	up := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
	opts := func(id *mtls.Reloader) Options {
		return Options{Routes: []Route{routeTo("/v1/", up.URL, anonymous)}, Identity: id, Roots: pki.roots}
	}
	gw := startGateway(t, opts(pki.static(t, gatewayID)))
	resp, body := gw.get(t, "/v1/before")
	wantStatus(t, resp, body, http.StatusOK)
	firstSerial := echoed(t, body).PeerSerial

	noRoots := opts(pki.static(t, gatewayID))
	noRoots.Roots = nil
	badRoute := opts(pki.static(t, gatewayID))
	badRoute.Routes = append(badRoute.Routes, routeTo("/v1/", up.URL, anonymous))
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"identity missing", opts(nil), "Identity"},
		{"identity not started", opts(&mtls.Reloader{}), "Identity holds no certificate"},
		{"roots missing", noRoots, "Roots"},
		{"a route twice", badRoute, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := gw.g.Reload(tc.o)
			if err == nil || !strings.HasPrefix(err.Error(), "gateway: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error about %s", err, tc.want)
			}
			resp, body := gw.get(t, "/v1/after-"+strings.ReplaceAll(tc.name, " ", "-"))
			wantStatus(t, resp, body, http.StatusOK)
			if s := echoed(t, body).PeerSerial; s != firstSerial {
				t.Errorf("the gateway presents another certificate: %s, want %s", s, firstSerial)
			}
		})
	}

	// Another identity is used for new connections.
	if err := gw.g.Reload(opts(pki.static(t, gatewayID))); err != nil {
		t.Fatal(err)
	}
	resp, body = gw.get(t, "/v1/renewed")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body).PeerSerial; s == firstSerial {
		t.Error("the gateway still presents the certificate of the old identity")
	}
}

// The access log holds what on-call needs (method, path, status, client)
// and no credential or query string, on success and on every failure.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	dead := freeAddr(t)
	e := newE2E(t, func(up string) Options {
		return Options{Routes: append(standardRoutes(up), routeTo("/dead/", "http://"+dead, anonymous))}
	})
	tok := e.tokens.mint(t, "shop", time.Now(), 15*time.Minute)
	badKey, _ := apikey.Generate(apikey.Live)
	const querySecret = "hunter2-in-the-query"
	requests := []struct {
		path   string
		hdr    []string
		status int
	}{
		{"/v1/payments?secret=" + querySecret, []string{"X-API-Key", e.shopKey}, http.StatusOK},
		{"/v1/payments/token?secret=" + querySecret, []string{"Authorization", "Bearer " + tok}, http.StatusOK},
		{"/v1/payments/bad?secret=" + querySecret, []string{"X-API-Key", badKey.String()}, http.StatusUnauthorized},
		{"/v1/payments/query?access_token=" + tok, nil, http.StatusBadRequest},
		{"/open/status?secret=" + querySecret, []string{"Cookie", "session=" + querySecret}, http.StatusOK},
		{"/dead/x?secret=" + querySecret, []string{"X-API-Key", e.shopKey}, http.StatusBadGateway},
		{"/nowhere?secret=" + querySecret, []string{"Authorization", "Bearer " + tok}, http.StatusNotFound},
	}
	for _, r := range requests {
		resp, body := e.gw.get(t, r.path, r.hdr...)
		wantStatus(t, resp, body, r.status)
	}
	eventually(t, "a log line per request", func() bool {
		n := 0
		for _, l := range e.log.lines(t) {
			if l["msg"] == "request" {
				n++
			}
		}
		return n == len(requests)
	})
	out := e.log.String()
	for name, secret := range map[string]string{"API key": e.shopKey, "bad API key": badKey.String(), "token": tok, "query": querySecret, "token signature": tok[strings.LastIndexByte(tok, '.')+1:]} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds the %s:\n%s", name, out)
		}
	}
	if strings.Contains(out, "?") {
		t.Errorf("the log holds a query string:\n%s", out)
	}

	byPath := map[string]map[string]any{}
	for _, l := range e.log.lines(t) {
		if l["msg"] == "request" {
			byPath[l["path"].(string)] = l
		}
	}
	for _, tc := range []struct {
		path, route, client, auth string
		status                    int
	}{
		{"/v1/payments", "/v1/", "shop", "api-key", 200},
		{"/v1/payments/token", "/v1/", "shop", "bearer", 200},
		{"/v1/payments/bad", "/v1/", "", "", 401},
		{"/open/status", "/open/", "", "", 200},
		{"/dead/x", "/dead/", "", "", 502},
		{"/nowhere", "none", "", "", 404},
	} {
		l := byPath[tc.path]
		if l == nil {
			t.Errorf("no log line for %s", tc.path)
			continue
		}
		if l["method"] != "GET" || l["route"] != tc.route || l["status"] != float64(tc.status) || l["proto"] != "HTTP/2.0" ||
			!strings.HasPrefix(fmt.Sprint(l["remote"]), "127.0.0.1:") {
			t.Errorf("%s: %v", tc.path, l)
		}
		if c, _ := l["client"].(string); c != tc.client {
			t.Errorf("%s: client %q, want %q", tc.path, c, tc.client)
		}
		if a, _ := l["auth"].(string); a != tc.auth {
			t.Errorf("%s: auth %q, want %q", tc.path, a, tc.auth)
		}
	}
}

// scrape reads a metric's samples from the admin handler's /metrics.
func scrape(t *testing.T, g *Gateway) string {
	t.Helper()
	rec := httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

func metricValue(metrics, sample string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	for range 3 {
		resp, body := e.gw.get(t, "/v1/payments", "X-API-Key", e.shopKey)
		wantStatus(t, resp, body, http.StatusOK)
	}
	resp, body := e.gw.get(t, "/v1/payments")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = e.gw.get(t, "/unknown/path/1234")
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = e.gw.get(t, "/slow/x/slow", "X-API-Key", e.shopKey)
	wantStatus(t, resp, body, http.StatusGatewayTimeout)

	want := map[string]float64{
		`rampart_gateway_requests_total{code="200",route="/v1/"}`:   3,
		`rampart_gateway_requests_total{code="401",route="/v1/"}`:   1,
		`rampart_gateway_requests_total{code="404",route="none"}`:   1,
		`rampart_gateway_requests_total{code="504",route="/slow/"}`: 1,
		`rampart_gateway_upstream_errors_total{kind="timeout"}`:     1,
		`rampart_gateway_request_seconds_count{route="/v1/"}`:       4,
	}
	var metrics string
	eventually(t, "the metrics", func() bool {
		metrics = scrape(t, e.gw.g)
		for s, v := range want {
			if got, ok := metricValue(metrics, s); !ok || got != v {
				return false
			}
		}
		return true
	})
	// Options.Registry nil: a registry with the Go and process collectors.
	if !strings.Contains(metrics, "\ngo_goroutines ") {
		t.Error("no Go runtime metrics")
	}
	// Paths are not labels: their number is not bounded.
	if strings.Contains(metrics, "/unknown/path") {
		t.Error("a request path became a label")
	}

	rec := httptest.NewRecorder()
	e.gw.g.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Errorf("admin /healthz: %d %s", rec.Code, rec.Body)
	}
}

// The Fetch standard's CORS protocol, as the gateway answers it (the
// browser's side is in browser_test.go).
func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed = "https://app.pay.example"
	e := newE2E(t, func(up string) Options {
		return Options{Routes: standardRoutes(up), CORS: &CORS{
			AllowedOrigins:   []string{allowed},
			AllowedMethods:   []string{"GET", "POST"},
			AllowedHeaders:   []string{"Authorization", "Content-Type", "X-API-Key"},
			ExposedHeaders:   []string{"RateLimit"},
			AllowCredentials: true,
			MaxAge:           10 * time.Minute,
		}}
	})
	// The service answers with a CORS policy of its own, more
	// permissive: the gateway's is the one that applies.
	e.up.mu.Lock()
	e.up.headers = http.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Allow-Credentials": {"true"}, "Access-Control-Expose-Headers": {"X-Internal"}}
	e.up.mu.Unlock()

	preflight := func(t *testing.T, origin string) *http.Response {
		resp, body := e.gw.do(t, http.MethodOptions, "/v1/payments", nil,
			"Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-api-key")
		if resp.StatusCode >= 300 {
			t.Fatalf("preflight: %d %s", resp.StatusCode, body)
		}
		return resp
	}
	wantVaryOrigin := func(t *testing.T, resp *http.Response) {
		t.Helper()
		if !slices.ContainsFunc(resp.Header.Values("Vary"), func(v string) bool { return strings.Contains(v, "Origin") }) {
			t.Errorf("Vary %q, want Origin: the answer depends on it", resp.Header.Values("Vary"))
		}
	}

	t.Run("preflight from the allowed origin", func(t *testing.T) {
		// Preflights carry no credentials: the gateway answers them
		// without authentication and without the upstream.
		resp := preflight(t, allowed)
		if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{allowed}) {
			t.Errorf("Access-Control-Allow-Origin %q, want %q", got, allowed)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Max-Age") != "600" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "x-api-key") {
			t.Errorf("preflight answer: %v", resp.Header)
		}
		wantVaryOrigin(t, resp)
		if n := e.up.count("/v1/payments"); n != 0 {
			t.Errorf("the preflight reached the upstream")
		}
	})
	t.Run("preflight from another origin", func(t *testing.T) {
		resp := preflight(t, "https://evil.example")
		if got := resp.Header.Values("Access-Control-Allow-Origin"); got != nil {
			t.Errorf("Access-Control-Allow-Origin %q", got)
		}
		wantVaryOrigin(t, resp)
	})
	t.Run("request from the allowed origin", func(t *testing.T) {
		resp, body := e.gw.get(t, "/v1/payments/cors", "Origin", allowed, "X-API-Key", e.shopKey)
		wantStatus(t, resp, body, http.StatusOK)
		if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{allowed}) {
			t.Errorf("Access-Control-Allow-Origin %q, want %q", got, allowed)
		}
		if got := resp.Header.Values("Access-Control-Expose-Headers"); !slices.Equal(got, []string{"Ratelimit"}) && !slices.Equal(got, []string{"RateLimit"}) {
			t.Errorf("Access-Control-Expose-Headers %q: the service's leaked", got)
		}
		wantVaryOrigin(t, resp)
	})
	t.Run("request from another origin", func(t *testing.T) {
		// The request is served (CORS is enforced by the browser), but
		// the browser is not allowed to show the answer to the page.
		resp, body := e.gw.get(t, "/v1/payments/cors", "Origin", "https://evil.example", "X-API-Key", e.shopKey)
		wantStatus(t, resp, body, http.StatusOK)
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"} {
			if got := resp.Header.Values(h); got != nil {
				t.Errorf("%s %q", h, got)
			}
		}
		wantVaryOrigin(t, resp)
	})
	t.Run("refusals keep the CORS headers", func(t *testing.T) {
		// A page on the allowed origin can read why it was refused.
		resp, body := e.gw.get(t, "/v1/payments", "Origin", allowed)
		wantStatus(t, resp, body, http.StatusUnauthorized)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("Access-Control-Allow-Origin %q", got)
		}
	})
	t.Run("only ever a listed origin", func(t *testing.T) {
		// With credentials allowed, "*" or a reflected foreign origin
		// would let any site read a signed-in user's answers.
		for _, origins := range [][]string{
			{allowed}, {"https://evil.example"}, {"null"}, {"*"}, {""},
			{allowed + ".evil.example"}, {"https://evil.example/" + allowed}, {allowed + ":443"}, {allowed + "/"},
			{"HTTPS://APP.PAY.EXAMPLE"}, {"http://app.pay.example"},
			{allowed, "https://evil.example"}, {"https://evil.example", allowed},
		} {
			for _, method := range []string{http.MethodGet, http.MethodOptions} {
				req, _ := http.NewRequest(method, e.gw.URL+"/v1/payments/cors", nil)
				for _, o := range origins {
					req.Header.Add("Origin", o)
				}
				req.Header.Set("X-API-Key", e.shopKey)
				if method == http.MethodOptions {
					req.Header.Set("Access-Control-Request-Method", "GET")
				}
				resp, err := e.gw.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				acao := resp.Header.Values("Access-Control-Allow-Origin")
				if len(acao) > 1 || len(acao) == 1 && (acao[0] != allowed || !slices.Equal(origins, []string{allowed})) {
					t.Errorf("%s with Origin %q: Access-Control-Allow-Origin %q", method, origins, acao)
				}
				if len(acao) == 0 && resp.Header.Get("Access-Control-Allow-Credentials") != "" {
					t.Errorf("%s with Origin %q: credentials allowed without an origin", method, origins)
				}
			}
		}
	})
}

// The gateway's and the upstream's certificates renew every second or so
// while clients hammer the gateway: no request fails, and the upstream
// sees the gateway's new certificates.
//
// X.509 validity has a resolution of one second: 2 s certificates are
// renewed after 0.6 to 1.5 s (two thirds of what is left of them, ±10 %).
func TestIdentityRenewalWhileServing(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	// Every other upstream answer closes its connection, so that the
	// gateway makes new handshakes, with whatever certificate it holds,
	// besides reusing connections across renewals.
	up := startUpstreamProtos(t, []string{"http/1.1"}, pki.renewing(t, paymentsID, 2*time.Second), pki.roots, gatewayID)
	up.closeEvery = 2
	keys := newKeyStore(t)
	key := keys.key(t, "shop")
	gw := startGateway(t, Options{
		Routes:   []Route{routeTo("/v1/", up.URL)},
		APIKeys:  keys.v,
		Identity: pki.renewing(t, gatewayID, 2*time.Second),
		Roots:    pki.roots,
	})

	var (
		requests, failed atomic.Int64
		mu               sync.Mutex
		firstErr         error
		wg               sync.WaitGroup
	)
	deadline := time.Now().Add(3 * time.Second)
	for i := range 8 {
		// Each client has its own connection to the gateway; half of
		// them a new one for every request.
		tr := gw.client.Transport.(*http.Transport).Clone()
		tr.DisableKeepAlives = i%2 == 0
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodGet, gw.URL+"/v1/payments", nil)
				req.Header.Set("X-API-Key", key)
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				requests.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests, %d gateway certificates seen by the upstream", requests.Load(), up.peerCount())
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), requests.Load(), firstErr)
	}
	if up.peerCount() < 2 {
		t.Fatalf("the upstream saw %d gateway certificates, want more than one", up.peerCount())
	}
}

// Close may be called twice.
func TestClose(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	g, err := New(Options{Routes: []Route{routeTo("/v1/", "https://127.0.0.1:1", anonymous)},
		Identity: pki.static(t, gatewayID), Roots: pki.roots, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// The errors the transport really returns are answered as RFC 9110 says:
// 504 for every timeout (§15.6.5), 502 otherwise (§15.6.3), 413 for a
// body cut by the limit (§15.5.14). Timeouts come in several types: when
// the route's deadline and the transport's ResponseHeaderTimeout (the
// same duration) have both fired, HTTP/2 may report its own timeout
// error, which is not a context.DeadlineExceeded.
func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	up := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
	gw := startGateway(t, Options{Routes: []Route{routeTo("/v1/", up.URL, anonymous)}, Identity: pki.static(t, gatewayID), Roots: pki.roots})
	g := gw.g

	transportErr := func(t *testing.T, h2 bool, path string) error {
		t.Helper()
		cfg := mtls.ClientConfig(pki.static(t, gatewayID), pki.roots, paymentsID)
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2, ResponseHeaderTimeout: 50 * time.Millisecond}
		if !h2 {
			cfg.NextProtos = []string{"http/1.1"}
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, up.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: no error", path)
		}
		return err
	}
	refused := func(t *testing.T) error {
		_, err := (&http.Transport{}).RoundTrip(httptest.NewRequest(http.MethodGet, "http://"+freeAddr(t)+"/", nil))
		return err
	}
	for _, tc := range []struct {
		name string
		err  func(t *testing.T) error
		want int
	}{
		{"HTTP/2 header timeout", func(t *testing.T) error { return transportErr(t, true, "/h2/slow") }, http.StatusGatewayTimeout},
		{"HTTP/1.1 header timeout", func(t *testing.T) error { return transportErr(t, false, "/h1/slow") }, http.StatusGatewayTimeout},
		{"deadline", func(*testing.T) error { return fmt.Errorf("proxy: %w", context.DeadlineExceeded) }, http.StatusGatewayTimeout},
		{"connection refused", refused, http.StatusBadGateway},
		{"body too large", func(*testing.T) error { return &http.MaxBytesError{Limit: 10} }, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			rec := httptest.NewRecorder()
			g.upstreamError(rec, httptest.NewRequest(http.MethodGet, "/v1/x", nil), err)
			if rec.Code != tc.want {
				t.Errorf("%v (%T): %d, want %d", err, err, rec.Code, tc.want)
			}
		})
	}
}

// A client that gives up is neither a success nor an upstream failure in
// the log and the metrics: 499, as nginx counts it.
func TestClientGoneAway(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	c := *e.gw.client
	c.Timeout = 200 * time.Millisecond
	req, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/open/x/slow", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the slow request was answered: %s", resp.Status)
	}
	eventually(t, "a 499 in the metrics", func() bool {
		v, _ := metricValue(scrape(t, e.gw.g), `rampart_gateway_requests_total{code="499",route="/open/"}`)
		return v == 1
	})
	if v, ok := metricValue(scrape(t, e.gw.g), `rampart_gateway_requests_total{code="200",route="/open/"}`); ok {
		t.Errorf("counted as %v successes", v)
	}
}

// The upstream learns the client's address from X-Forwarded-For: the
// client's own header is dropped, unless the gateway's peer is one of its
// trusted proxies, whose chain is kept, so that the service finds the
// client as the gateway does (ratelimit.ClientAddr).
func TestForwardedFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		want    []string
	}{
		{"untrusted peer", nil, []string{"127.0.0.1"}},
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.9, 198.51.100.7, 127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2E(t, func(up string) Options { return Options{Routes: standardRoutes(up), TrustedProxies: tc.trusted} })
			req, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/open/xff", nil)
			req.Header.Add("X-Forwarded-For", "203.0.113.9")
			req.Header.Add("X-Forwarded-For", "198.51.100.7")
			resp, err := e.gw.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantStatus(t, resp, body, http.StatusOK)
			if got := echoed(t, body).Header.Values("X-Forwarded-For"); !slices.Equal(got, tc.want) {
				t.Errorf("X-Forwarded-For %q, want %q", got, tc.want)
			}
		})
	}
}

// The route label is the route that took the request: a prefix without
// a trailing slash takes that path only (http.ServeMux), so /statusx is
// no route's, however it starts.
func TestRouteLabels(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: []Route{routeTo("/status", up, anonymous), routeTo("/v1/", up, anonymous)}}
	})
	for path, code := range map[string]int{"/status": 200, "/statusx": 404, "/status/sub": 404, "/v1/x": 200, "/v1x": 404} {
		resp, body := e.gw.get(t, path)
		wantStatus(t, resp, body, code)
	}
	want := map[string]float64{
		`rampart_gateway_requests_total{code="200",route="/status"}`: 1,
		`rampart_gateway_requests_total{code="200",route="/v1/"}`:    1,
		`rampart_gateway_requests_total{code="404",route="none"}`:    3,
	}
	eventually(t, "the metrics", func() bool {
		m := scrape(t, e.gw.g)
		for s, v := range want {
			if got, _ := metricValue(m, s); got != v {
				return false
			}
		}
		return !strings.Contains(m, `code="404",route="/`)
	})
}
