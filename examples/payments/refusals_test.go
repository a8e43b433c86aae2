package payments_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/examples/payments"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// The same refusal reads the same whichever layer answers it (issue 11
// §4): the API-key middleware, the middleware that takes keys and tokens,
// the gateway (in front of the payment service, as deployed), and the
// payment service itself. Each answers the same refused requests with the
// same status, the same WWW-Authenticate, Retry-After and Content-Type,
// and the same body. Where a layer is configured otherwise, only what it
// accepts differs: the API-key middleware takes no bearer token, so its
// answer to a token, and its description of what a request without
// credentials needs, are its own, in the same shape.
func TestRefusalsReadTheSameEverywhere(t *testing.T) {
	w := newRefusalWorld(t)
	k := w.creds
	for _, mode := range []struct {
		name  string
		store func() ratelimit.Store
		cases []refusalCase
	}{
		{"limits up", func() ratelimit.Store { return &ratelimit.Memory{} }, []refusalCase{
			{name: "no credential", status: 401, keysDiffer: true},
			{name: "malformed Authorization header", header: []string{"Authorization", "Bearer  " + k.good}, status: 400},
			{name: "malformed key", header: []string{"X-API-Key", "rk_live_short"}, status: 401},
			{name: "malformed key as bearer", header: []string{"Authorization", "Bearer rk_live_short"}, status: 401},
			{name: "unknown key", header: []string{"X-API-Key", k.unknown}, status: 401},
			{name: "revoked key", header: []string{"X-API-Key", k.revoked}, status: 401},
			{name: "two credentials", header: []string{"X-API-Key", k.good, "Authorization", "Bearer " + k.token}, status: 400},
			{name: "a token in the URI", query: "?access_token=" + k.token, status: 400},
			{name: "expired token", header: []string{"Authorization", "Bearer " + k.expired}, status: 401, token: true},
			{name: "malformed token", header: []string{"Authorization", "Bearer a.b.c"}, status: 401, token: true},
			{name: "wrong scope, key", header: []string{"X-API-Key", k.readKey}, status: 403},
			{name: "wrong scope, token", header: []string{"Authorization", "Bearer " + k.readToken}, status: 403, token: true},
			{name: "over limit", header: []string{"X-API-Key", k.good}, prime: true, status: 429},
		}},
		{"limit store down", func() ratelimit.Store { return failingStore{} }, []refusalCase{
			{name: "limit store down", header: []string{"X-API-Key", k.good}, status: 503},
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			subjects := w.subjects(t, mode.store)
			for _, tc := range mode.cases {
				t.Run(tc.name, func(t *testing.T) {
					answers := map[string]refusalAnswer{}
					for _, s := range subjects {
						if tc.token && s.name == keysOnly {
							// Not a credential it takes: refused as such,
							// whatever the token.
							a := s.send(t, tc)
							if a.status != 401 || !strings.Contains(string(a.body), `"error":"invalid_token","error_description":"bearer tokens are not accepted here"`) ||
								a.header.Get("WWW-Authenticate") != `Bearer realm="rampart", error="invalid_token", error_description="bearer tokens are not accepted here"` {
								t.Errorf("%s: %d %v %s", s.name, a.status, a.header, a.body)
							}
							continue
						}
						if tc.prime {
							if a := s.send(t, tc); a.status != http.StatusCreated {
								t.Fatalf("%s: the first swap: %d %s", s.name, a.status, a.body)
							}
						}
						a := s.send(t, tc)
						if a.status != tc.status {
							t.Fatalf("%s: %d %v %s, want %d", s.name, a.status, a.header, a.body, tc.status)
						}
						answers[s.name] = a
					}
					ref := answers["auth.Middleware"]
					checkRefusal(t, tc, ref)
					for name, a := range answers {
						exact := !(tc.keysDiffer && name == keysOnly)
						if got, want := a.normalized(exact), ref.normalized(exact); got != want {
							t.Errorf("%s answers otherwise than auth.Middleware:\n%s\nwant\n%s", name, got, want)
						}
					}
				})
			}
		})
	}
}

// checkRefusal checks the answer itself: the writer and RFC 6750 §3.1.
func checkRefusal(t *testing.T, tc refusalCase, a refusalAnswer) {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	ct, chal := a.header.Get("Content-Type"), a.header.Get("WWW-Authenticate")
	switch tc.status {
	case 429, 503:
		if ct != "application/problem+json" || body["rule"] != payments.SwapRule || a.header.Get("Retry-After") == "" || chal != "" {
			t.Errorf("%d: %v %s, want problem details naming the rule, with Retry-After", tc.status, a.header, a.body)
		}
	default:
		code, _ := body["error"].(string)
		if ct != "application/json" || !strings.HasPrefix(chal, `Bearer realm="rampart"`) || a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%d: %v %s, want an RFC 6750 error", tc.status, a.header, a.body)
		}
		if (code == "") != (tc.name == "no credential") || code != "" && !strings.Contains(chal, `error="`+code+`"`) {
			t.Errorf("%d: error %q, challenge %q: a code for every refusal but the one without credentials (RFC 6750 §3.1)", tc.status, code, chal)
		}
	}
}

// keysOnly is the layer that takes API keys only.
const keysOnly = "apikey.Verifier.Middleware"

type refusalCase struct {
	name   string
	header []string // name, value pairs
	query  string
	// prime sends the request once first, and wants it through.
	prime bool
	// token: the API-key middleware takes no bearer token, and refuses it
	// as such. keysDiffer: its answer is compared in shape only (it says
	// what it accepts).
	token, keysDiffer bool
	status            int
}

type refusalAnswer struct {
	status int
	header http.Header
	body   []byte
}

// normalized is what must be the same from every layer: the status, the
// headers that matter and the body. What depends on the moment (the
// seconds until a limit refills) is left out; with exact false, so are
// the descriptions (what a route accepts is the route's own).
func (a refusalAnswer) normalized(exact bool) string {
	var body map[string]any
	json.Unmarshal(a.body, &body)
	retry := a.header.Get("Retry-After")
	if a.status == http.StatusTooManyRequests {
		delete(body, "detail")
		body["retry_after"] = "…"
		retry = "…"
	}
	chal := a.header.Get("WWW-Authenticate")
	if !exact {
		delete(body, "error_description")
		if i := strings.Index(chal, `, error_description="`); i >= 0 {
			chal = chal[:i]
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d\nContent-Type: %s\nCache-Control: %s\nWWW-Authenticate: %s\nRetry-After: %s\n",
		a.status, a.header.Get("Content-Type"), a.header.Get("Cache-Control"), chal, retry)
	for _, k := range slices.Sorted(maps.Keys(body)) {
		fmt.Fprintf(&b, "  %s: %v\n", k, body[k])
	}
	return b.String()
}

// refusalWorld is one key store, one token issuer and the credentials the
// cases send.
type refusalWorld struct {
	*pki
	keys   *apikey.Verifier
	tokens *tokenIssuer
	creds  struct{ good, readKey, revoked, unknown, token, readToken, expired string }
}

func newRefusalWorld(t *testing.T) *refusalWorld {
	w := &refusalWorld{pki: newPKI(t)}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	m := &apikey.Manager{Store: st.APIKeys(), Pepper: pepper, Scopes: allScopes}
	w.keys = &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper, RevocationCheck: -1, Logger: discard}
	t.Cleanup(func() { w.keys.Close() })
	ctx := context.Background()
	mk := func(client string, scopes ...string) string {
		k, _, err := m.Create(ctx, client, scopes, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return k.String()
	}
	// "reader" can only read: its refused writes count against no limit
	// of "shop", which the gateway applies before the service's scopes.
	for _, c := range []apikey.Client{{ID: "shop", Scopes: allScopes}, {ID: "reader", Scopes: []string{payments.ScopeRead}}} {
		if _, err := m.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	w.creds.good, w.creds.readKey, w.creds.revoked = mk("shop"), mk("reader"), mk("shop")
	ver, err := w.keys.Verify(ctx, w.creds.revoked)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Revoke(ctx, ver.Record.ID); err != nil {
		t.Fatal(err)
	}
	unknown, _ := apikey.Generate(apikey.Live)
	w.creds.unknown = unknown.String()
	w.tokens = newTokenIssuer(t, time.Now)
	w.creds.token = w.tokens.mint(t, "shop", allScopes, nil)
	// Another client again: the gateway counted "reader"'s refused write.
	w.creds.readToken = w.tokens.mint(t, "viewer", []string{payments.ScopeRead}, nil)
	w.creds.expired = w.tokens.mint(t, "shop", allScopes, func(c map[string]any) {
		c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-30*time.Minute).Unix()
	})
	return w
}

// subject is one layer that answers requests: POST /v1/swaps.
type subject struct {
	name string
	url  string
	c    *http.Client
}

func (s subject) send(t *testing.T, tc refusalCase) refusalAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", s.url+"/v1/swaps"+tc.query, strings.NewReader(swapBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(tc.header); i += 2 {
		req.Header.Add(tc.header[i], tc.header[i+1])
	}
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return refusalAnswer{resp.StatusCode, resp.Header, b}
}

// swapLimit is the business rule of every layer: one swap a minute per
// client, failing closed, in store().
func swapLimit(store func() ratelimit.Store) *ratelimit.Limiter {
	return &ratelimit.Limiter{Store: store(), Logger: discard, Rules: []ratelimit.Rule{{
		Name: payments.SwapRule, Kind: ratelimit.Business, Limit: ratelimit.PerMinute(1, 1), Failure: ratelimit.FailClosed,
	}}}
}

// swaps is a service's swap endpoint behind its authentication: the
// scope, then the limit, as examples/payments checks them.
func swaps(l *ratelimit.Limiter) http.Handler {
	return auth.RequireScope(payments.ScopeWrite)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := l.Allow(r.Context(), payments.SwapRule, auth.FromContext(r.Context()).ClientID)
		if err != nil {
			ratelimit.Unavailable(w, err)
			return
		}
		if !d.Allowed {
			ratelimit.Deny(w, d)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
}

func (w *refusalWorld) subjects(t *testing.T, store func() ratelimit.Store) []subject {
	t.Helper()
	plain := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	service := func() *server {
		svc, err := payments.New(payments.Config{Gateways: []spiffeid.ID{gatewayID}, Roots: w.roots,
			APIKeys: w.keys, Tokens: w.tokens.v, Limits: swapLimit(store)})
		if err != nil {
			t.Fatal(err)
		}
		return w.serveService(t, svc, gatewayID)
	}
	gwCert := w.issue(t, gatewayID, time.Now(), time.Hour)

	// The gateway, in front of a service of its own, limits swaps per
	// client at the edge, as the service does.
	upstream := service()
	up, err := url.Parse(upstream.url)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{
		Routes: []gateway.Route{{Prefix: "/v1/", Upstream: up, UpstreamID: serviceID}},
		Limits: []ratelimit.Rule{{Name: payments.SwapRule, Limit: ratelimit.PerMinute(1, 1), By: []ratelimit.By{ratelimit.ByClient},
			Routes: []string{"POST /v1/swaps"}, Failure: ratelimit.FailClosed}},
		APIKeys: w.keys, Tokens: w.tokens.v, RateLimitStore: store(),
		Identity: mtls.NewStatic(gwCert), Roots: w.roots, Logger: discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	gwSrv := httptest.NewUnstartedServer(g.Handler())
	gwSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	gwSrv.Start()
	t.Cleanup(gwSrv.Close)

	return []subject{
		{keysOnly, plain(w.keys.Middleware(swaps(swapLimit(store)))), http.DefaultClient},
		{"auth.Middleware", plain(auth.Middleware(w.keys, w.tokens.v)(swaps(swapLimit(store)))), http.DefaultClient},
		{"gateway", gwSrv.URL, gwSrv.Client()},
		{"examples/payments", service().url, w.client(t, &gwCert)},
	}
}
