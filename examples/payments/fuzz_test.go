package payments_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/examples/payments"
	"github.com/rampartsec/rampart/ratelimit"
)

// gatewayConnState is the TLS state of a real mutual-TLS connection from
// the gateway, as the service sees it (r.TLS, with its verified chains):
// the fuzz target puts it on in-process requests, so that each input
// goes through the whole handler chain, Authorize included, without a
// handshake.
func gatewayConnState(t testing.TB, p *pki) *tls.ConnectionState {
	t.Helper()
	got := make(chan *tls.ConnectionState, 1)
	s := p.serveService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.TLS
	}), gatewayID)
	gw := p.issue(t, gatewayID, time.Now(), time.Hour)
	resp, err := p.client(t, &gw).Get(s.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := <-got
	if cs == nil || len(cs.PeerCertificates) == 0 {
		t.Fatal("no client certificate")
	}
	return cs
}

var (
	fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH"}
	fuzzPaths   = []string{"/v1/payments", "/v1/withdrawals", "/v1/swaps", "/v1/nothing"}
	fuzzTypes   = []string{"application/json", "application/json; charset=utf-8", "text/plain", ""}
)

// FuzzPayments sends arbitrary bodies, with a method, path and media type
// from small sets, through the whole service with a credential holding
// every scope. Whatever the input: no 5xx, a JSON body of the media type
// it claims, and a created record only for a request whose JSON (read by
// a second, independent parser) says exactly what the record says, and
// passes the documented checks.
func FuzzPayments(f *testing.F) {
	e := newEnv(f, func(c *payments.Config) {
		// The limit is tested elsewhere; here it would only stop swaps
		// from being parsed.
		c.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: payments.SwapRule, Limit: ratelimit.PerSecond(1_000_000, 1_000_000)}}}
	})
	cs := gatewayConnState(f, e.pki)
	// A token: cheaper to check than an API key, whose store these tests
	// ask on every request (RevocationCheck < 0).
	c := e.bearer(f, "shop-a", allScopes...)

	for _, seed := range []struct {
		method, path, ctype uint8
		body                string
	}{
		{1, 0, 0, paymentBody},
		{1, 1, 0, withdrawalBody},
		{1, 2, 1, swapBody},
		{0, 0, 0, ""},
		{1, 0, 0, `{"amount_minor": 1, "currency": "EUR", "payee": "a", "AMOUNT_MINOR": 99}`},
		{1, 0, 0, `{"amount_minor": 1, "currency": "EUR", "payee": "a", "amount_minor": 99}`},
		{1, 0, 0, `{"amount_minor": 1e3, "currency": "EUR", "payee": "a"}`},
		{1, 0, 0, paymentBody + "{}"},
		{1, 1, 0, `{"amount_minor": 5000, "currency": "EUR", "iban": "GB82WEST12345698765432"}`},
		{1, 2, 0, `{"from": "JPY", "to": "GBP", "from_minor": 1000000000000}`},
		{1, 2, 0, `{"from": "USD", "to": "JPY", "from_minor": 1}`},
		{1, 2, 0, `{"from": "JPY", "to": "USD", "from_minor": 149}`},
		{1, 0, 2, paymentBody},
		{2, 0, 0, paymentBody},
		{1, 3, 0, paymentBody},
		{1, 0, 0, `{"amount_minor": 1, "currency": "EUR", "payee": "\ud800"}`},
		{1, 0, 0, "{\"amount_minor\": 1, \"currency\": \"EUR\", \"payee\": \"\xff\"}"},
	} {
		f.Add(seed.method, seed.path, seed.ctype, []byte(seed.body))
	}

	f.Fuzz(func(t *testing.T, mi, pi, ci uint8, body []byte) {
		method := fuzzMethods[int(mi)%len(fuzzMethods)]
		path := fuzzPaths[int(pi)%len(fuzzPaths)]
		ctype := fuzzTypes[int(ci)%len(fuzzTypes)]
		req := httptest.NewRequest(method, "https://payments.pay.internal"+path, bytes.NewReader(body))
		req.TLS = cs
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		c(req.Header)
		rec := httptest.NewRecorder()
		e.svc.ServeHTTP(rec, req)

		status, out := rec.Code, rec.Body.Bytes()
		if status >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, status, out)
		}
		mt, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
		if err != nil || (mt != "application/json" && mt != "application/problem+json") || !json.Valid(out) {
			t.Fatalf("%s %s %q: %d %q, Content-Type %q", method, path, body, status, out, rec.Header().Get("Content-Type"))
		}
		if mt == "application/problem+json" {
			var p problem
			if json.Unmarshal(out, &p) != nil || p.Status != status || p.Detail == "" {
				t.Fatalf("%d: problem %s", status, out)
			}
		}
		if status == http.StatusCreated {
			if method != "POST" || ctype == "text/plain" || ctype == "" {
				t.Fatalf("%s %s with %q created %s", method, path, ctype, out)
			}
			checkCreated(t, path, body, out)
		}
	})
}

// checkCreated checks a created record against the request body, read
// by a parser other than the service's: a map, which matches keys
// exactly.
func checkCreated(t *testing.T, path string, in, out []byte) {
	t.Helper()
	var req map[string]any
	d := json.NewDecoder(bytes.NewReader(in))
	d.UseNumber()
	if err := d.Decode(&req); err != nil {
		t.Fatalf("created %s from %q, which is not a JSON object: %v", out, in, err)
	}
	str := func(k string) string { s, _ := req[k].(string); return s }
	num := func(k string) string { n, _ := req[k].(json.Number); return n.String() }
	switch path {
	case "/v1/payments":
		var p payments.Payment
		mustDecode(t, out, &p)
		if num("amount_minor") != itoa(p.AmountMinor) || str("currency") != p.Currency || str("payee") != p.Payee || str("reference") != p.Reference {
			t.Fatalf("created %s from %q", out, in)
		}
		checkAmount(t, p.AmountMinor, p.Currency)
		if p.Payee == "" || len(p.Payee) > 140 || len(p.Reference) > 140 || !strings.HasPrefix(p.ID, "pay_") {
			t.Fatalf("created %s", out)
		}
	case "/v1/withdrawals":
		var w payments.Withdrawal
		mustDecode(t, out, &w)
		if num("amount_minor") != itoa(w.AmountMinor) || str("currency") != w.Currency || str("iban") != w.IBAN {
			t.Fatalf("created %s from %q", out, in)
		}
		checkAmount(t, w.AmountMinor, w.Currency)
		if n := len(w.IBAN); n < 15 || n > 34 {
			t.Fatalf("created %s", out)
		}
	case "/v1/swaps":
		var s payments.Swap
		mustDecode(t, out, &s)
		if num("from_minor") != itoa(s.FromMinor) || str("from") != s.From || str("to") != s.To {
			t.Fatalf("created %s from %q", out, in)
		}
		checkAmount(t, s.FromMinor, s.From)
		if s.From == s.To || s.ToMinor <= 0 {
			t.Fatalf("created %s", out)
		}
	default:
		t.Fatalf("%s created %s", path, out)
	}
}

func checkAmount(t *testing.T, minor int64, currency string) {
	t.Helper()
	if minor < 1 || minor > payments.MaxAmount {
		t.Fatalf("amount %d accepted", minor)
	}
	if len(currency) != 3 || strings.Trim(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		t.Fatalf("currency %q accepted", currency)
	}
}

func mustDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
