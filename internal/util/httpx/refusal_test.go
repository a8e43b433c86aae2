package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

func TestWriteProblem(t *testing.T) {
	for _, tc := range []struct {
		p     httpx.Problem
		body  string
		retry string
	}{
		{httpx.Problem{Status: 404, Detail: "no route for this path"},
			`{"type":"about:blank","title":"Not Found","status":404,"detail":"no route for this path"}`, ""},
		{httpx.Problem{Status: 429, Title: "Too Many Requests", Detail: "slow down", Rule: "per-key", RetryAfter: 1500 * time.Millisecond},
			`{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"slow down","rule":"per-key","retry_after":2}`, "2"},
		{httpx.Problem{Status: 503, Detail: "<&>", RetryAfter: time.Nanosecond},
			`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"\u003c\u0026\u003e","retry_after":1}`, "1"},
	} {
		w := httptest.NewRecorder()
		httpx.WriteProblem(w, tc.p)
		h := w.Header()
		if w.Code != tc.p.Status || w.Body.String() != tc.body+"\n" || h.Get("Retry-After") != tc.retry ||
			h.Get("Content-Type") != "application/problem+json" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%+v: %d %v %s", tc.p, w.Code, h, w.Body)
		}
	}
}

func TestWriteOAuthError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		e         httpx.OAuthError
		body      string
		challenge string
		retry     string
	}{
		{"no credentials", httpx.OAuthError{Status: 401, Description: "a token is required", Realm: "rampart"},
			`{"error_description":"a token is required"}`, `Bearer realm="rampart"`, ""},
		{"insufficient scope", httpx.OAuthError{Status: 403, Code: "insufficient_scope", Description: "lacks b", Scope: "a b", Realm: "r"},
			`{"error":"insufficient_scope","error_description":"lacks b","scope":"a b"}`,
			`Bearer realm="r", error="insufficient_scope", error_description="lacks b", scope="a b"`, ""},
		{"no realm, no challenge", httpx.OAuthError{Status: 403, Code: "forbidden", Description: `SPIFFE ID "x"`},
			`{"error":"forbidden","error_description":"SPIFFE ID \"x\""}`, "", ""},
		{"unavailable", httpx.OAuthError{Status: 503, Code: "temporarily_unavailable", Realm: "rampart", RetryAfter: time.Millisecond},
			`{"error":"temporarily_unavailable"}`, "", "1"},
		{"unavailable, no time", httpx.OAuthError{Status: 503, Code: "temporarily_unavailable", Realm: "rampart"},
			`{"error":"temporarily_unavailable"}`, "", ""},
		{"too many", httpx.OAuthError{Status: 429, Description: "later", RetryAfter: 90 * time.Second},
			`{"error_description":"later"}`, "", "90"},
		{"a header of the caller's", httpx.OAuthError{Status: 401, Code: "invalid_client", Header: http.Header{"Www-Authenticate": {`Basic realm="rampart"`}, "Pragma": {"no-cache"}}},
			`{"error":"invalid_client"}`, `Basic realm="rampart"`, ""},
		{"nothing breaks out of the challenge", httpx.OAuthError{Status: 401, Code: "invalid_token", Description: "a\"b\\c\r\nSet-Cookie: x=1\x00é", Realm: "r\"\n"},
			`{"error":"invalid_token","error_description":"a\"b\\c\r\nSet-Cookie: x=1\u0000é"}`,
			`Bearer realm="r??", error="invalid_token", error_description="a?b?c??Set-Cookie: x=1???"`, ""},
	} {
		w := httptest.NewRecorder()
		httpx.WriteOAuthError(w, tc.e)
		h := w.Header()
		if w.Code != tc.e.Status || w.Body.String() != tc.body+"\n" || h.Get("WWW-Authenticate") != tc.challenge || h.Get("Retry-After") != tc.retry ||
			h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v %s", tc.name, w.Code, h, w.Body)
		}
	}
}

func TestSetDeprecation(t *testing.T) {
	h := http.Header{}
	httpx.SetDeprecation(h, time.Time{}, time.Time{})
	if len(h) != 0 {
		t.Fatalf("%v", h)
	}
	httpx.SetDeprecation(h, time.Unix(100, 0), time.Unix(200, 0))
	if h.Get("Deprecation") != "@100" || h.Get("Sunset") != "Thu, 01 Jan 1970 00:03:20 GMT" {
		t.Fatalf("%v", h)
	}
}

func TestScopeToken(t *testing.T) {
	for s, want := range map[string]bool{"payment.read": true, "!#[]~": true, "": false, "a b": false, `a"b`: false, `a\b`: false, "é": false, "a\tb": false} {
		if httpx.IsScopeToken(s) != want {
			t.Errorf("IsScopeToken(%q) = %v", s, !want)
		}
	}
}
