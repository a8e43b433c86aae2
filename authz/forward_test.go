package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/gateway"
)

func forwardService(t testing.TB) http.Handler {
	t.Helper()
	svc, err := New(Options{Logger: discard, Gateway: gateway.Options{Routes: []gateway.Route{
		{Prefix: "/open/", AllowAnonymous: true, Methods: []string{"GET"}, MaxBody: 10},
		{Prefix: "/v1/", Scopes: []string{"payment.read"}},
	}, Tokens: nil, APIKeys: nil}})
	if err == nil {
		t.Fatal("a route that authenticates without verifiers: built")
	}
	svc, err = New(Options{Logger: discard, Gateway: gateway.Options{Routes: []gateway.Route{
		{Prefix: "/open/", AllowAnonymous: true, Methods: []string{"GET", "POST"}, MaxBody: 10},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return svc.ForwardAuth(ForwardOptions{EnvoyPathPrefix: "/ext"})
}

func forward(h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = "127.0.0.1:5000"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestForwardAuthEngines: each engine's fields say what the original
// request was; the others', which a client may have written, are not
// read.
func TestForwardAuthEngines(t *testing.T) {
	t.Parallel()
	h := forwardService(t)
	for _, c := range []struct {
		name string
		path string
		hdr  []string
		want int
	}{
		{"nginx", "/nginx", []string{"X-Original-Method", "GET", "X-Original-Uri", "/open/x", "X-Real-Ip", "192.0.2.1"}, 200},
		{"nginx: a method the route does not take", "/nginx", []string{"X-Original-Method", "DELETE", "X-Original-Uri", "/open/x", "X-Real-Ip", "192.0.2.1"}, 403},
		{"nginx, with a client's X-Forwarded-Uri", "/nginx", []string{"X-Original-Method", "GET", "X-Original-Uri", "/admin", "X-Forwarded-Uri", "/open/x", "X-Real-Ip", "192.0.2.1"}, 403},
		{"caddy", "/caddy", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/open/x", "X-Forwarded-For", "192.0.2.1"}, 200},
		{"caddy, with a client's X-Original-Uri", "/caddy", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/admin", "X-Original-Uri", "/open/x"}, 404},
		{"traefik", "/traefik", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/open/x"}, 200},
		{"envoy", "/envoy/ext/open/x", nil, 200},
		{"envoy: no route", "/envoy/ext/admin", nil, 404},
		{"a declared body over the limit", "/nginx", []string{"X-Original-Method", "POST", "X-Original-Uri", "/open/x", "X-Original-Content-Length", "11"}, 403},
		{"an unknown path", "/haproxy", nil, 404},
	} {
		w := forward(h, c.path, c.hdr...)
		if w.Code != c.want {
			t.Errorf("%s: %d %v %s, want %d", c.name, w.Code, w.Header(), w.Body, c.want)
		}
	}
	// nginx's refusals carry the real answer.
	w := forward(h, "/nginx", "X-Original-Method", "POST", "X-Original-Uri", "/open/x", "X-Original-Content-Length", "11")
	if w.Header().Get(HeaderStatus) != "413" || w.Header().Get(HeaderBodyType) != "problem" || !strings.Contains(w.Header().Get(HeaderRefusal), `"status":413`) {
		t.Errorf("nginx refusal: %v, want 413 in X-Rampart-Status and the problem in X-Rampart-Refusal", w.Header())
	}
}

// TestForwardAuthMissing: a request that does not say what to decide is a
// precise 400, never an allowed request.
func TestForwardAuthMissing(t *testing.T) {
	t.Parallel()
	h := forwardService(t)
	for _, c := range []struct {
		name, path string
		hdr        []string
		want       string
	}{
		{"nginx without X-Original-*", "/nginx", nil, "nginx sent no X-Original-Method or X-Original-URI"},
		{"caddy without X-Forwarded-*", "/caddy", nil, "caddy sent no X-Forwarded-Method or X-Forwarded-Uri"},
		{"a bad client address", "/caddy", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/open/x", "X-Forwarded-For", "not-an-ip"}, "the client's address"},
		{"an absolute URI", "/nginx", []string{"X-Original-Method", "GET", "X-Original-Uri", "http://evil/open/x"}, "want a path"},
		{"a bad length", "/nginx", []string{"X-Original-Method", "GET", "X-Original-Uri", "/open/x", "X-Original-Content-Length", "x"}, "Content-Length"},
	} {
		w := forward(h, c.path, c.hdr...)
		status := w.Code
		if c.path == "/nginx" {
			if w.Code != 403 {
				t.Errorf("%s: %d, nginx's refusals are 403", c.name, w.Code)
			}
			status = atoi(w.Header().Get(HeaderStatus))
		}
		body := w.Body.String() + w.Header().Get(HeaderRefusal)
		if status != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, status, body, c.want)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// FuzzForwardAuth: any forwarded request is answered, allowed only on the
// anonymous route's path.
func FuzzForwardAuth(f *testing.F) {
	f.Add("GET", "/open/x", "192.0.2.1", "")
	f.Add("POST", "/open/../x", "::1", "12")
	h := forwardService(f)
	f.Fuzz(func(t *testing.T, method, uri, ip, cl string) {
		for _, p := range []string{"/nginx", "/caddy"} {
			r := httptest.NewRequest("GET", p, nil).WithContext(context.Background())
			set := func(k, v string) {
				if validFieldValue(v) {
					r.Header.Set(k, v)
				}
			}
			set("X-Original-Method", method)
			set("X-Original-Uri", uri)
			set("X-Real-Ip", ip)
			set("X-Original-Content-Length", cl)
			set("X-Forwarded-Method", method)
			set("X-Forwarded-Uri", uri)
			set("X-Forwarded-For", ip)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code == 200 && !strings.HasPrefix(uri, "/open/") {
				t.Fatalf("%s: allowed %s %q", p, method, uri)
			}
			// 501 is the gateway's answer to a method it does not
			// know (RFC 9110 §15.6.2); nothing else is the server's.
			if w.Code >= 500 && w.Code != http.StatusNotImplemented {
				t.Fatalf("%s: %d", p, w.Code)
			}
		}
	})
}

// TestNoQueryInErrors: a refusal's reason, which is logged, never holds
// the target's query (it may carry a credential).
func TestNoQueryInErrors(t *testing.T) {
	t.Parallel()
	_, err := (&Request{Method: "GET", Target: "http://x/open/?api_key=rk_live_secret"}).httpRequest(context.Background())
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(Reason(err), "want a path") {
		t.Errorf("%v", err)
	}
}
