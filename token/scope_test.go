package token

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/auth"
)

// The seed's check: "a token with payment.read cannot create a
// transaction". Scopes are exact strings with no hierarchy.
func TestRequireScope(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	tok := func(scope string) string {
		return k.mint(t, with(clock.Now(), map[string]any{"scope": scope, "jti": "j-" + scope}), nil)
	}
	for _, tc := range []struct {
		name     string
		scope    string   // of the token
		required []string // by the route
		status   int
	}{
		{"read cannot write", "payment.read", []string{"payment.write"}, 403},
		{"write can write", "payment.write", []string{"payment.write"}, 200},
		{"write cannot withdraw", "payment.write", []string{"payment.withdraw"}, 403},
		{"write cannot read", "payment.write", []string{"payment.read"}, 403},
		{"withdraw cannot write", "payment.withdraw", []string{"payment.write"}, 403},
		{"withdraw can withdraw", "payment.withdraw", []string{"payment.withdraw"}, 200},
		{"no prefix matching", "payment", []string{"payment.read"}, 403},
		{"no case folding", "Payment.Write", []string{"payment.write"}, 403},
		{"all of several", "payment.read payment.write", []string{"payment.read", "payment.write"}, 200},
		{"one of several is not enough", "payment.read", []string{"payment.read", "payment.write"}, 403},
		{"no scope", "", []string{"payment.read"}, 403},
		{"nothing required", "", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(v, bearerRequest(tok(tc.scope)), RequireScope(tc.required...))
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 403 {
				want := `Bearer realm="rampart", error="insufficient_scope", error_description="the token lacks scope `
				got := w.Header().Get("WWW-Authenticate")
				if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, `scope="`+strings.Join(tc.required, " ")+`"`) {
					t.Fatalf("WWW-Authenticate %q", got)
				}
				if !strings.Contains(w.Body.String(), `"error":"insufficient_scope"`) || w.Header().Get("Cache-Control") != "no-store" {
					t.Fatalf("%v %s", w.Header(), w.Body)
				}
			}
		})
	}
}

// API keys put their caller in the context with auth.NewContext; the same
// RequireScope serves them.
func TestRequireScopeAPIKeyPrincipal(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := RequireScope("payment.write")(ok)
	for _, tc := range []struct {
		p      *Principal
		status int
	}{
		{&Principal{Subject: "c", Method: auth.APIKey, Scopes: []string{"payment.write"}}, 200},
		{&Principal{Subject: "c", Method: auth.APIKey, Scopes: []string{"payment.read"}}, 403},
		{nil, 401},
	} {
		r := httptest.NewRequest("POST", "/payments", nil)
		if tc.p != nil {
			r = r.WithContext(auth.NewContext(r.Context(), tc.p))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Fatalf("%+v: %d, want %d", tc.p, w.Code, tc.status)
		}
		if tc.status == 401 {
			// No caller: as if no credentials were sent (RFC 6750 §3.1).
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="rampart"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
		}
	}
}

func TestRequireScopePanicsOnImpossibleScope(t *testing.T) {
	for _, s := range []string{"", "payment write", `pay"ment`, "payment\n", "paymént"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireScope(%q) did not panic", s)
				}
			}()
			RequireScope("payment.read", s)
		}()
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"a", []string{"a"}, true},
		{"a b c", []string{"a", "b", "c"}, true},
		{"a a", []string{"a", "a"}, true},
		{"!#[]~", []string{"!#[]~"}, true},
		{" ", nil, false},
		{"a  b", nil, false},
		{" a", nil, false},
		{"a ", nil, false},
		{"a\tb", nil, false},
		{`a"b`, nil, false},
		{`a\b`, nil, false},
		{"é", nil, false},
	} {
		got, ok := parseScope(tc.in)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseScope(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// A payment API: every route authenticates the bearer token, and each
// route states the scope it needs.
func ExampleRequireScope() {
	v := &Validator{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		JWKSURL:  "https://auth.example.com/oauth2/jwks",
	}
	payments := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "payment created for "+FromContext(r.Context()).ClientID)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /payments", RequireScope("payment.read")(payments))
	mux.Handle("POST /payments", RequireScope("payment.write")(payments))
	mux.Handle("POST /withdrawals", RequireScope("payment.withdraw")(payments))
	_ = http.ListenAndServeTLS(":8443", "cert.pem", "key.pem", v.Middleware(mux))
}
