package payments_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/examples/payments"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

const (
	paymentBody    = `{"amount_minor": 1250, "currency": "EUR", "payee": "ACME Ltd"}`
	withdrawalBody = `{"amount_minor": 5000, "currency": "EUR", "iban": "DE89370400440532013000"}`
	swapBody       = `{"from": "EUR", "to": "USD", "from_minor": 10000}`
)

// Only the gateway gets through the handshake: a certificate of another
// workload, of another CA, or an expired one is refused before any
// request is read, and so is a caller without a certificate.
func TestTransport(t *testing.T) {
	e := newEnv(t, nil)
	key := e.key(t, "shop-a", payments.ScopeRead)
	now := time.Now()
	otherCA, _, err := mtls.NewCA(td, now)
	if err != nil {
		t.Fatal(err)
	}
	gateway := e.issue(t, gatewayID, now, time.Hour)
	ledger := e.issue(t, ledgerID, now, time.Hour)
	forged := issueBy(t, otherCA, gatewayID, now, time.Hour)
	expired := e.issue(t, gatewayID, now.Add(-2*time.Hour), time.Hour)
	if !expired.Leaf.NotAfter.Before(now) {
		t.Fatalf("the expired certificate is valid until %v", expired.Leaf.NotAfter)
	}

	t.Run("gateway", func(t *testing.T) {
		e.call(t, e.client(t, &gateway), "GET", "/v1/payments", key, "").want(t, http.StatusOK)
	})
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		why  string // in the server's log
	}{
		{"no certificate", nil, "client didn't provide a certificate"},
		{"another workload", &ledger, "mtls: peer SPIFFE ID " + ledgerID.String() + " is not allowed (want " + gatewayID.String() + ")"},
		{"the gateway's ID from another CA", &forged, "certificate signed by unknown authority"},
		{"an expired gateway certificate", &expired, "certificate has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.srv.drain()
			r, err := e.try(e.client(t, tc.cert), e.srv.url, "GET", "/v1/payments", key, "", "")
			if err == nil {
				t.Fatalf("got through: %d %s", r.status, r.body)
			}
			if line := e.srv.refusal(t); !strings.Contains(line, "TLS handshake error") || !strings.Contains(line, tc.why) {
				t.Errorf("server: %q, want a handshake refused for %q", line, tc.why)
			}
		})
	}
}

// Authorize is the second line of defence: behind a TLS configuration
// that lets the whole trust domain in (a mistake, or a shared listener),
// another workload is still refused, before its credential is looked at.
func TestAuthorizeBehindTrustDomainTLS(t *testing.T) {
	e := newEnv(t, nil)
	key := e.key(t, "shop-a", payments.ScopeRead)
	wide := e.serveService(t, e.svc) // no allowed IDs: any ID of pay.internal
	now := time.Now()
	gateway := e.issue(t, gatewayID, now, time.Hour)
	ledger := e.issue(t, ledgerID, now, time.Hour)

	r, err := e.try(e.client(t, &ledger), wide.url, "GET", "/v1/payments", key, "", "")
	if err != nil {
		t.Fatalf("the handshake should succeed here: %v", err)
	}
	r.want(t, http.StatusForbidden)
	if p := r.problem(t); p.Error != "forbidden" || !strings.Contains(p.Description, ledgerID.String()) {
		t.Errorf("body %s", r.body)
	}
	// Without a credential too: the peer is refused first.
	r, err = e.try(e.client(t, &ledger), wide.url, "GET", "/v1/payments", nil, "", "")
	if err != nil || r.status != http.StatusForbidden {
		t.Fatalf("no credential: %v %v", r, err)
	}
	r, err = e.try(e.client(t, &gateway), wide.url, "GET", "/v1/payments", key, "", "")
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("gateway: %v %v", r, err)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	t.Run("no credential", func(t *testing.T) {
		r := e.do(t, "GET", "/v1/payments", nil, "").want(t, http.StatusUnauthorized)
		// RFC 6750 §3.1: no error code for a request without credentials.
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="rampart"` {
			t.Errorf("WWW-Authenticate %q", got)
		}
	})
	t.Run("api key", func(t *testing.T) {
		key := e.key(t, "shop-a", payments.ScopeRead)
		e.do(t, "GET", "/v1/payments", key, "").want(t, http.StatusOK)
		// The same key as a bearer token (RFC 6750 §2.1).
		h := http.Header{}
		key(h)
		e.do(t, "GET", "/v1/payments", bearerToken(h.Get("X-API-Key")), "").want(t, http.StatusOK)
	})
	t.Run("revoked api key", func(t *testing.T) {
		k, rec, err := e.keys.Create(ctx, "shop-a", []string{payments.ScopeRead}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		e.do(t, "GET", "/v1/payments", apiKey(k.String()), "").want(t, http.StatusOK)
		if err := e.keys.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		r := e.do(t, "GET", "/v1/payments", apiKey(k.String()), "").want(t, http.StatusUnauthorized)
		if p := r.problem(t); p.Error != "invalid_token" || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s %q", r.body, r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("unknown api key", func(t *testing.T) {
		k, err := apikey.Generate(apikey.Live)
		if err != nil {
			t.Fatal(err)
		}
		e.do(t, "GET", "/v1/payments", apiKey(k.String()), "").want(t, http.StatusUnauthorized)
	})
	t.Run("bearer token", func(t *testing.T) {
		e.do(t, "GET", "/v1/payments", e.bearer(t, "shop-a", payments.ScopeRead), "").want(t, http.StatusOK)
	})
	for name, change := range map[string]func(map[string]any){
		"token for another API": func(c map[string]any) { c["aud"] = "https://api.other.test" },
		"expired token": func(c map[string]any) {
			c["iat"] = time.Now().Add(-time.Hour).Unix()
			c["exp"] = time.Now().Add(-30 * time.Minute).Unix()
		},
	} {
		t.Run(name, func(t *testing.T) {
			tok := e.tokens.mint(t, "shop-a", []string{payments.ScopeRead}, change)
			r := e.do(t, "GET", "/v1/payments", bearerToken(tok), "").want(t, http.StatusUnauthorized)
			if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

// Scopes are exact: payment.write implies neither payment.read nor
// payment.withdraw, for API keys and tokens alike.
func TestScopes(t *testing.T) {
	e := newEnv(t, nil)
	type op struct{ method, path, body string }
	var (
		list     = op{"GET", "/v1/payments", ""}
		pay      = op{"POST", "/v1/payments", paymentBody}
		withdraw = op{"POST", "/v1/withdrawals", withdrawalBody}
		swap     = op{"POST", "/v1/swaps", swapBody}
	)
	for _, tc := range []struct {
		scope   string
		allowed []op
		refused map[op]string // the scope the refusal names
	}{
		{payments.ScopeRead, []op{list}, map[op]string{pay: payments.ScopeWrite, withdraw: payments.ScopeWithdraw, swap: payments.ScopeWrite}},
		{payments.ScopeWrite, []op{pay, swap}, map[op]string{list: payments.ScopeRead, withdraw: payments.ScopeWithdraw}},
		{payments.ScopeWithdraw, []op{withdraw}, map[op]string{list: payments.ScopeRead, pay: payments.ScopeWrite, swap: payments.ScopeWrite}},
	} {
		for kind, mk := range map[string]func(testing.TB, string, ...string) cred{"api key": e.key, "token": e.bearer} {
			t.Run(tc.scope+"/"+kind, func(t *testing.T) {
				c := mk(t, "shop-a", tc.scope)
				for _, o := range tc.allowed {
					want := http.StatusCreated
					if o.method == "GET" {
						want = http.StatusOK
					}
					if r := e.do(t, o.method, o.path, c, o.body); r.status != want {
						t.Errorf("%s %s: %d %s, want %d", o.method, o.path, r.status, r.body, want)
					}
				}
				for o, scope := range tc.refused {
					r := e.do(t, o.method, o.path, c, o.body)
					if r.status != http.StatusForbidden {
						t.Errorf("%s %s: %d %s, want 403", o.method, o.path, r.status, r.body)
						continue
					}
					// RFC 6750 §3.1.
					wa := r.header.Get("WWW-Authenticate")
					if !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="`+scope+`"`) {
						t.Errorf("%s %s: WWW-Authenticate %q, want insufficient_scope %s", o.method, o.path, wa, scope)
					}
					if p := r.problem(t); p.Error != "insufficient_scope" || p.Scope != scope {
						t.Errorf("%s %s: body %s", o.method, o.path, r.body)
					}
				}
			})
		}
	}
}

// A client lists its own payments, never another's.
func TestListingIsPerClient(t *testing.T) {
	e := newEnv(t, nil)
	ids := map[string][]string{}
	for client, n := range map[string]int{"shop-a": 2, "shop-b": 1} {
		w := e.key(t, client, payments.ScopeWrite)
		for i := range n {
			r := e.do(t, "POST", "/v1/payments", w, fmt.Sprintf(`{"amount_minor": %d, "currency": "EUR", "payee": "%s payee"}`, 100+i, client)).want(t, http.StatusCreated)
			var p payments.Payment
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatal(err)
			}
			ids[client] = append(ids[client], p.ID)
		}
	}
	for _, client := range []string{"shop-a", "shop-b"} {
		// A token of the client sees what its API key made.
		r := e.do(t, "GET", "/v1/payments", e.bearer(t, client, payments.ScopeRead), "").want(t, http.StatusOK)
		var list struct{ Payments []payments.Payment }
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range list.Payments {
			got = append(got, p.ID)
			if !strings.HasPrefix(p.Payee, client) {
				t.Errorf("%s sees a payment to %q", client, p.Payee)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(ids[client]) {
			t.Errorf("%s lists %v, want %v", client, got, ids[client])
		}
	}
	// A client that never paid gets an empty list, not null.
	r := e.do(t, "GET", "/v1/payments", e.bearer(t, "shop-c", payments.ScopeRead), "").want(t, http.StatusOK)
	if strings.TrimSpace(string(r.body)) != `{"payments":[]}` {
		t.Errorf("empty list: %s", r.body)
	}
}

// The default limit: 100 swaps a minute per client, the clock given in
// Config.Now.
func TestSwapLimit(t *testing.T) {
	e := newEnv(t, nil)
	a := e.key(t, "shop-a", payments.ScopeWrite)
	for i := 1; i <= 100; i++ {
		r := e.do(t, "POST", "/v1/swaps", a, swapBody)
		if r.status != http.StatusCreated {
			t.Fatalf("swap %d: %d %s", i, r.status, r.body)
		}
		if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"swap";r=%d;`, 100-i); !strings.HasPrefix(got, want) {
			t.Fatalf("swap %d: RateLimit %q, want %s...", i, got, want)
		}
	}
	r := e.do(t, "POST", "/v1/swaps", a, swapBody).want(t, http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != "1" { // one swap every 600 ms
		t.Errorf("Retry-After %q", got)
	}
	if got := r.header.Get("RateLimit-Policy"); got != `"swap";q=100;w=60` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if got := r.header.Get("RateLimit"); got != `"swap";r=0;t=60` {
		t.Errorf("RateLimit %q", got)
	}
	if p := r.problem(t); p.Status != 429 || p.Rule != payments.SwapRule || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("body %s", r.body)
	}
	// The limit is the client's, whichever credential it uses...
	e.do(t, "POST", "/v1/swaps", e.bearer(t, "shop-a", payments.ScopeWrite), swapBody).want(t, http.StatusTooManyRequests)
	// ...and another client's budget is its own.
	e.do(t, "POST", "/v1/swaps", e.key(t, "shop-b", payments.ScopeWrite), swapBody).want(t, http.StatusCreated)
	// Payments are not limited by it.
	e.do(t, "POST", "/v1/payments", a, paymentBody).want(t, http.StatusCreated)

	// One swap comes back every 600 ms; the whole budget in a minute.
	e.clock.Add(600 * time.Millisecond)
	e.do(t, "POST", "/v1/swaps", a, swapBody).want(t, http.StatusCreated)
	e.do(t, "POST", "/v1/swaps", a, swapBody).want(t, http.StatusTooManyRequests)
	e.clock.Add(time.Minute)
	for i := 1; i <= 100; i++ {
		if r := e.do(t, "POST", "/v1/swaps", a, swapBody); r.status != http.StatusCreated {
			t.Fatalf("after a minute, swap %d: %d %s", i, r.status, r.body)
		}
	}
	e.do(t, "POST", "/v1/swaps", a, swapBody).want(t, http.StatusTooManyRequests)
}

// A caller without payment.write costs the swap budget nothing: the scope
// is checked before the limit.
func TestSwapLimitAfterScope(t *testing.T) {
	lim := &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: payments.SwapRule, Kind: ratelimit.Business, Limit: ratelimit.PerMinute(3, 3)}}}
	e := newEnv(t, func(c *payments.Config) {
		lim.Now = c.Now
		c.Limits = lim
	})
	read := e.key(t, "shop-a", payments.ScopeRead)
	for range 5 {
		e.do(t, "POST", "/v1/swaps", read, swapBody).want(t, http.StatusForbidden)
	}
	write := e.key(t, "shop-a", payments.ScopeWrite)
	for range 3 {
		e.do(t, "POST", "/v1/swaps", write, swapBody).want(t, http.StatusCreated)
	}
	e.do(t, "POST", "/v1/swaps", write, swapBody).want(t, http.StatusTooManyRequests)
}

// A business rule fails closed: with the shared store down, swaps are
// refused with 503 (not 500, not allowed), and the rest of the API works.
func TestSwapLimitStoreDown(t *testing.T) {
	lim := &ratelimit.Limiter{
		Store:  failingStore{},
		Rules:  []ratelimit.Rule{{Name: payments.SwapRule, Kind: ratelimit.Business, Limit: payments.SwapLimit, Failure: ratelimit.FailClosed}},
		Logger: discard,
	}
	e := newEnv(t, func(c *payments.Config) { c.Limits = lim })
	w := e.key(t, "shop-a", payments.ScopeWrite)
	r := e.do(t, "POST", "/v1/swaps", w, swapBody).want(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("headers %v", r.header)
	}
	if p := r.problem(t); p.Status != 503 || strings.Contains(string(r.body), "redis") {
		t.Errorf("body %s", r.body)
	}
	e.do(t, "POST", "/v1/payments", w, paymentBody).want(t, http.StatusCreated)
}

func TestNew(t *testing.T) {
	e := newEnv(t, nil)
	base := payments.Config{Gateways: []spiffeid.ID{gatewayID}, Roots: e.roots, Tokens: e.tokens.v}
	for _, tc := range []struct {
		name string
		edit func(*payments.Config)
		want string
	}{
		{"no gateway", func(c *payments.Config) { c.Gateways = nil }, "Gateways"},
		{"no roots", func(c *payments.Config) { c.Roots = nil }, "Config.Roots"},
		{"no credentials", func(c *payments.Config) { c.Tokens = nil }, "APIKeys or Tokens"},
		{"bad limiter", func(c *payments.Config) {
			c.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: "Swap!", Limit: payments.SwapLimit}}}
		}, "payments: ratelimit"},
		// Without the rule, every swap would be a 503 at run time.
		{"no swap rule", func(c *payments.Config) {
			c.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: "withdrawal", Kind: ratelimit.Business, Limit: payments.SwapLimit}}}
		}, `rule "swap"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			if _, err := payments.New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
	if _, err := payments.New(base); err != nil {
		t.Errorf("New: %v", err)
	}
}

// Every refusal of input is a 4xx with problem details, and each says
// what was wrong; nothing a client sends is a 500.
func TestInput(t *testing.T) {
	e := newEnv(t, func(c *payments.Config) {
		c.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: payments.SwapRule, Limit: ratelimit.PerMinute(1000, 1000)}}}
	})
	c := e.key(t, "shop-a", allScopes...)
	big := strings.Repeat("x", payments.MaxBody)
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		detail                  string // in the problem's detail
	}{
		{"payment", "/v1/payments", "application/json", paymentBody, 201, ""},
		{"charset", "/v1/payments", "application/json; charset=utf-8", paymentBody, 201, ""},
		{"text/plain", "/v1/payments", "text/plain", paymentBody, 415, "Content-Type"},
		{"no content type", "/v1/payments", "", paymentBody, 415, "Content-Type"},
		{"form", "/v1/payments", "application/x-www-form-urlencoded", "amount_minor=1", 415, "Content-Type"},
		{"json suffix", "/v1/payments", "application/jsonx", paymentBody, 415, "Content-Type"},
		{"too large", "/v1/payments", "application/json", `{"amount_minor": 1, "currency": "EUR", "payee": "` + big + `"}`, 413, "16384 bytes"},
		{"too large by its trailing space", "/v1/payments", "application/json", paymentBody + strings.Repeat(" ", payments.MaxBody), 413, "16384 bytes"},
		{"empty", "/v1/payments", "application/json", " ", 400, "malformed"},
		{"truncated", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR"`, 400, "malformed"},
		{"not an object", "/v1/payments", "application/json", `[1250, "EUR", "ACME"]`, 400, "malformed"},
		{"null", "/v1/payments", "application/json", `null`, 400, "malformed"},
		{"unknown field", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR", "payee": "ACME", "fee": 0}`, 400, "fee"},
		{"field in another case", "/v1/payments", "application/json", `{"AMOUNT_MINOR": 1250, "currency": "EUR", "payee": "ACME"}`, 400, "AMOUNT_MINOR"},
		{"field twice", "/v1/payments", "application/json", `{"amount_minor": 1, "currency": "EUR", "payee": "ACME", "amount_minor": 99999}`, 400, "amount_minor"},
		// SECURITY-FINDINGS E20: a name encoding/json decodes, and a WAF or
		// an audit log matching the raw bytes does not.
		{"escaped field name", "/v1/payments", "application/json", `{"amount\u005fminor": 1250, "currency": "EUR", "payee": "ACME"}`, 400, "escape"},
		{"escaped field name, twice", "/v1/payments", "application/json", `{"amount_minor": 1, "currency": "EUR", "payee": "ACME", "amount\u005fminor": 99999}`, 400, "escape"},
		{"escape in a value", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR", "payee": "ACME \u0026 Co"}`, 201, ""},
		{"field twice in two cases", "/v1/payments", "application/json", `{"amount_minor": 1, "currency": "EUR", "payee": "ACME", "Amount_Minor": 99999}`, 400, "Amount_Minor"},
		{"trailing object", "/v1/payments", "application/json", paymentBody + paymentBody, 400, "after the JSON value"},
		{"trailing garbage", "/v1/payments", "application/json", paymentBody + " x", 400, "malformed"},
		{"trailing space", "/v1/payments", "application/json", paymentBody + " \n", 201, ""},
		{"amount as string", "/v1/payments", "application/json", `{"amount_minor": "1250", "currency": "EUR", "payee": "ACME"}`, 400, "amount_minor"},
		{"fractional amount", "/v1/payments", "application/json", `{"amount_minor": 12.5, "currency": "EUR", "payee": "ACME"}`, 400, "amount_minor"},
		{"amount beyond int64", "/v1/payments", "application/json", `{"amount_minor": 99999999999999999999, "currency": "EUR", "payee": "ACME"}`, 400, "amount_minor"},
		{"amount 0", "/v1/payments", "application/json", `{"amount_minor": 0, "currency": "EUR", "payee": "ACME"}`, 422, "amount_minor"},
		{"amount missing", "/v1/payments", "application/json", `{"currency": "EUR", "payee": "ACME"}`, 422, "amount_minor"},
		{"amount negative", "/v1/payments", "application/json", `{"amount_minor": -1250, "currency": "EUR", "payee": "ACME"}`, 422, "amount_minor"},
		{"amount MaxAmount", "/v1/payments", "application/json", fmt.Sprintf(`{"amount_minor": %d, "currency": "EUR", "payee": "ACME"}`, int64(payments.MaxAmount)), 201, ""},
		{"amount over MaxAmount", "/v1/payments", "application/json", fmt.Sprintf(`{"amount_minor": %d, "currency": "EUR", "payee": "ACME"}`, int64(payments.MaxAmount)+1), 422, "amount_minor"},
		{"currency lowercase", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "eur", "payee": "ACME"}`, 422, "currency"},
		{"currency long", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EURO", "payee": "ACME"}`, 422, "currency"},
		{"currency missing", "/v1/payments", "application/json", `{"amount_minor": 1250, "payee": "ACME"}`, 422, "currency"},
		{"payee missing", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR"}`, 422, "payee"},
		{"payee too long", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR", "payee": "` + strings.Repeat("p", 141) + `"}`, 422, "payee"},
		{"reference too long", "/v1/payments", "application/json", `{"amount_minor": 1250, "currency": "EUR", "payee": "ACME", "reference": "` + strings.Repeat("r", 141) + `"}`, 422, "reference"},

		{"withdrawal", "/v1/withdrawals", "application/json", withdrawalBody, 201, ""},
		{"shortest iban", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "NOK", "iban": "NO9386011117947"}`, 201, ""},
		{"iban too short", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "DE8937040044"}`, 422, "iban"},
		{"iban too long", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "DE89370400440532013000` + strings.Repeat("0", 13) + `"}`, 422, "iban"},
		{"iban check digits", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "DE89370400440532013001"}`, 422, "iban"},
		{"iban with spaces", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "DE89 3704 0044 0532 0130 00"}`, 422, "iban"},
		{"iban lowercase", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "de89370400440532013000"}`, 422, "iban"},
		{"withdrawal amount 0", "/v1/withdrawals", "application/json", `{"amount_minor": 0, "currency": "EUR", "iban": "DE89370400440532013000"}`, 422, "amount_minor"},
		{"withdrawal unknown field", "/v1/withdrawals", "application/json", `{"amount_minor": 5000, "currency": "EUR", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}`, 400, "bic"},

		{"swap", "/v1/swaps", "application/json", swapBody, 201, ""},
		{"swap same currency", "/v1/swaps", "application/json", `{"from": "EUR", "to": "EUR", "from_minor": 10000}`, 422, "two different currencies"},
		{"swap unknown currency", "/v1/swaps", "application/json", `{"from": "EUR", "to": "XAU", "from_minor": 10000}`, 422, "two different currencies"},
		{"swap no to", "/v1/swaps", "application/json", `{"from": "EUR", "from_minor": 10000}`, 422, "two different currencies"},
		{"swap amount 0", "/v1/swaps", "application/json", `{"from": "EUR", "to": "USD", "from_minor": 0}`, 422, "amount_minor"},
		{"swap amount negative", "/v1/swaps", "application/json", `{"from": "EUR", "to": "USD", "from_minor": -10000}`, 422, "amount_minor"},
		{"swap too small", "/v1/swaps", "application/json", `{"from": "JPY", "to": "USD", "from_minor": 1}`, 422, "too small"},
		{"swap bad from", "/v1/swaps", "application/json", `{"from": "eur", "to": "USD", "from_minor": 10000}`, 422, "currency"},
		{"swap unknown field", "/v1/swaps", "application/json", `{"from": "EUR", "to": "USD", "from_minor": 10000, "rate": 2}`, 400, "rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := e.try(e.gateway, e.srv.url, "POST", tc.path, c, tc.ctype, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status < 400 {
				return
			}
			p := r.problem(t)
			if r.header.Get("Content-Type") != "application/problem+json" || p.Status != tc.status || p.Title != http.StatusText(tc.status) {
				t.Errorf("problem %s, Content-Type %q", r.body, r.header.Get("Content-Type"))
			}
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q, want it to mention %q", p.Detail, tc.detail)
			}
		})
	}
}

// Swaps convert between minor units: a cent is a hundredth of a dollar, a
// yen is a yen.
func TestSwapAmounts(t *testing.T) {
	e := newEnv(t, nil)
	c := e.key(t, "shop-a", payments.ScopeWrite)
	for _, tc := range []struct {
		from            string
		to              string
		fromMinor, want int64
	}{
		{"EUR", "USD", 10000, 10800},                          // €100.00 = $108.00
		{"USD", "EUR", 10800, 10000},                          // and back
		{"USD", "JPY", 100, 149},                              // $1.00 = ¥149 (149.25, rounded down)
		{"JPY", "USD", 10000, 6700},                           // ¥10,000 = $67.00
		{"JPY", "GBP", 1000, 527},                             // ¥1,000 = £5.27 (5.2755...)
		{"GBP", "JPY", payments.MaxAmount, 1_895_522_388_059}, // no overflow
		{"JPY", "EUR", 2, 1},                                  // ¥2 = 1.24 cents
	} {
		t.Run(fmt.Sprintf("%s %d %s", tc.from, tc.fromMinor, tc.to), func(t *testing.T) {
			r := e.do(t, "POST", "/v1/swaps", c, fmt.Sprintf(`{"from": %q, "to": %q, "from_minor": %d}`, tc.from, tc.to, tc.fromMinor)).want(t, http.StatusCreated)
			var s payments.Swap
			if err := json.Unmarshal(r.body, &s); err != nil {
				t.Fatal(err)
			}
			if s.From != tc.from || s.To != tc.to || s.FromMinor != tc.fromMinor || s.ToMinor != tc.want {
				t.Errorf("%+v, want %d %s", s, tc.want, tc.to)
			}
		})
	}
}

// Paths and methods the API does not have are refused as everything else
// is: problem details, and Allow on a 405.
func TestRoutes(t *testing.T) {
	e := newEnv(t, nil)
	c := e.key(t, "shop-a", allScopes...)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/nothing", 404, ""},
		{"GET", "/", 404, ""},
		{"DELETE", "/v1/payments", 405, "GET, HEAD, POST"},
		{"GET", "/v1/swaps", 405, "POST"},
		{"PUT", "/v1/withdrawals", 405, "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, c, "").want(t, tc.status)
			if p := r.problem(t); p.Status != tc.status || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("body %s, Content-Type %q", r.body, r.header.Get("Content-Type"))
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	// Without a credential, the client learns nothing of the routes.
	e.do(t, "GET", "/v1/nothing", nil, "").want(t, http.StatusUnauthorized)
}
