package auth_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/auth"
)

// fake checks one kind of credential: value "good" authenticates, "down"
// cannot be checked, anything else is refused.
type fake struct{ m auth.Method }

func (f fake) Authenticate(r *http.Request) (*auth.Principal, error) {
	c, err := auth.ParseCredential(r)
	if err != nil {
		return nil, err
	}
	if c.Method != f.m {
		return nil, &auth.NoCredentialError{Accepts: []auth.Method{f.m}, Found: c.Method}
	}
	switch c.Value {
	case "good", auth.APIKeyPrefix + "good":
		return &auth.Principal{ClientID: "shop", Method: f.m, Scopes: []string{"payment.read"}}, nil
	case "down", auth.APIKeyPrefix + "down":
		return nil, &auth.Error{Code: auth.TemporarilyUnavailable, Status: 503, Description: "not now", RetryAfter: 2500 * time.Millisecond}
	}
	return nil, &auth.Error{Code: auth.InvalidToken, Status: 401, Description: "no such credential", Err: errors.New("secret detail")}
}

type broken struct{}

func (broken) Authenticate(*http.Request) (*auth.Principal, error) {
	return nil, errors.New("misconfigured: secret detail")
}

type silent struct{}

func (silent) Authenticate(*http.Request) (*auth.Principal, error) { return nil, nil }

type answer struct {
	status int
	h      http.Header
	body   map[string]string
}

func serve(t *testing.T, h http.Handler, header ...string) answer {
	t.Helper()
	r := httptest.NewRequest("GET", "/v1/payments", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	a := answer{status: w.Code, h: w.Header()}
	if w.Code != 200 {
		if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
			t.Fatalf("%d body %q: %v", w.Code, w.Body, err)
		}
		if strings.Contains(w.Body.String(), "secret") || strings.Contains(w.Header().Get("WWW-Authenticate"), "secret") {
			t.Fatalf("a cause reached the client: %v %s", w.Header(), w.Body)
		}
	}
	return a
}

var reached = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	w.Header().Set("X-Client", p.ClientID+" "+string(p.Method))
})

func TestMiddleware(t *testing.T) {
	keys, tokens := fake{auth.APIKey}, fake{auth.Bearer}
	both := auth.Middleware(keys, tokens)(reached)
	for _, tc := range []struct {
		name   string
		h      http.Handler
		header []string
		status int
		code   string
		desc   string // a substring of error_description
	}{
		{"a key", both, []string{"X-API-Key", "rk_good"}, 200, "", ""},
		{"a key as bearer", both, []string{"Authorization", "Bearer rk_good"}, 200, "", ""},
		{"a token", both, []string{"Authorization", "Bearer good"}, 200, "", ""},
		{"no credential, both accepted", both, nil, 401, "", "an API key (X-API-Key: rk_... or Authorization: Bearer rk_...) or an OAuth2 bearer token"},
		{"no credential, keys only", auth.Middleware(keys)(reached), nil, 401, "", "an API key is required"},
		{"no credential, tokens only", auth.Middleware(tokens)(reached), nil, 401, "", "a bearer token is required"},
		{"Basic is no credential", both, []string{"Authorization", "Basic eA=="}, 401, "", "or an OAuth2 bearer token"},
		{"a token where only keys are", auth.Middleware(keys)(reached), []string{"Authorization", "Bearer good"}, 401, "invalid_token", "bearer tokens are not accepted here"},
		{"a key where only tokens are", auth.Middleware(tokens)(reached), []string{"X-API-Key", "rk_good"}, 401, "invalid_token", "API keys are not accepted here"},
		{"a refused key", both, []string{"X-API-Key", "rk_bad"}, 401, "invalid_token", "no such credential"},
		{"two credentials", both, []string{"X-API-Key", "rk_good", "Authorization", "Bearer good"}, 400, "invalid_request", "more than one credential"},
		{"a store down", both, []string{"Authorization", "Bearer down"}, 503, "temporarily_unavailable", "not now"},
		{"a misconfigured authenticator", auth.Middleware(broken{})(reached), []string{"Authorization", "Bearer good"}, 500, "server_error", ""},
		{"neither a caller nor an error", auth.Middleware(silent{})(reached), []string{"Authorization", "Bearer good"}, 500, "server_error", ""},
		{"nothing to authenticate with", auth.Middleware()(reached), []string{"Authorization", "Bearer good"}, 401, "invalid_token", "bearer tokens are not accepted here"},
		{"nothing to authenticate with, two credentials", auth.Middleware()(reached), []string{"Authorization", "Bearer good", "Authorization", "Bearer good"}, 400, "invalid_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := serve(t, tc.h, tc.header...)
			if a.status != tc.status {
				t.Fatalf("%d %v, want %d", a.status, a.body, tc.status)
			}
			if tc.status == 200 {
				return
			}
			if a.body["error"] != tc.code || !strings.Contains(a.body["error_description"], tc.desc) {
				t.Fatalf("body %v, want %q %q", a.body, tc.code, tc.desc)
			}
			chal := a.h.Get("WWW-Authenticate")
			switch {
			case tc.status == 503 || tc.status == 500:
				if chal != "" {
					t.Fatalf("WWW-Authenticate %q on a %d", chal, tc.status)
				}
			case tc.code == "":
				if chal != `Bearer realm="rampart"` {
					t.Fatalf("WWW-Authenticate %q, want the realm alone (RFC 6750 §3.1)", chal)
				}
			case !strings.HasPrefix(chal, `Bearer realm="rampart", error="`+tc.code+`"`):
				t.Fatalf("WWW-Authenticate %q", chal)
			}
			if tc.status == 503 && a.h.Get("Retry-After") != "3" {
				t.Fatalf("Retry-After %q, want 3", a.h.Get("Retry-After"))
			}
			if a.h.Get("Content-Type") != "application/json" || a.h.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", a.h)
			}
		})
	}
	if a := serve(t, auth.MiddlewareRealm("payments", tokens)(reached)); a.h.Get("WWW-Authenticate") != `Bearer realm="payments"` {
		t.Errorf("MiddlewareRealm: %q", a.h.Get("WWW-Authenticate"))
	}
}

// A credential in its grace period works, and the answer says until when
// (RFC 9745, RFC 8594).
func TestMiddlewareDeprecation(t *testing.T) {
	rotated, sunset := time.Unix(1764000000, 0), time.Unix(1764086400, 0)
	for _, tc := range []struct {
		p                 auth.Principal
		deprecation, sset string
	}{
		{auth.Principal{ClientID: "a"}, "", ""},
		{auth.Principal{ClientID: "a", Sunset: sunset, Deprecation: rotated}, "@1764000000", "Tue, 25 Nov 2025 16:00:00 GMT"},
		{auth.Principal{ClientID: "a", Sunset: sunset}, "@1764086400", "Tue, 25 Nov 2025 16:00:00 GMT"},
	} {
		a := auth.AuthenticatorFunc(func(*http.Request) (*auth.Principal, error) { p := tc.p; return &p, nil })
		got := serve(t, auth.Middleware(a)(reached))
		if got.h.Get("Deprecation") != tc.deprecation || got.h.Get("Sunset") != tc.sset || got.h.Get("X-Client") != "a " {
			t.Errorf("%+v: %v", tc.p, got.h)
		}
	}
}

func TestRequireScope(t *testing.T) {
	h := auth.Middleware(fake{auth.Bearer})(auth.RequireScope("payment.read")(reached))
	if a := serve(t, h, "Authorization", "Bearer good"); a.status != 200 {
		t.Fatalf("%d %v", a.status, a.body)
	}
	a := serve(t, auth.Middleware(fake{auth.Bearer})(auth.RequireScope("payment.read", "payment.write")(reached)), "Authorization", "Bearer good")
	if a.status != 403 || a.body["error"] != "insufficient_scope" || a.body["scope"] != "payment.read payment.write" ||
		a.h.Get("WWW-Authenticate") != `Bearer realm="rampart", error="insufficient_scope", error_description="the token lacks scope payment.write", scope="payment.read payment.write"` {
		t.Fatalf("%d %v %q", a.status, a.body, a.h.Get("WWW-Authenticate"))
	}
	// No caller: the authenticating middleware is missing.
	if a := serve(t, auth.RequireScope("payment.read")(reached)); a.status != 401 || a.body["error"] != "" || a.h.Get("WWW-Authenticate") != `Bearer realm="rampart"` {
		t.Fatalf("%d %v %q", a.status, a.body, a.h.Get("WWW-Authenticate"))
	}
}

func TestErrorIs(t *testing.T) {
	if !errors.Is(&auth.NoCredentialError{}, auth.ErrNoCredential) {
		t.Error("a NoCredentialError is not ErrNoCredential")
	}
	cause := errors.New("cause")
	e := &auth.Error{Code: auth.InvalidToken, Description: "bad", Err: cause}
	if !errors.Is(e, cause) || e.Error() != "auth: invalid_token: bad: cause" {
		t.Errorf("%v", e)
	}
}
