package authserver_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/token"
)

// RFC 6750 §2: "Clients MUST NOT use more than one method to transmit the
// token in each request", and §3.1: such a request is invalid_request. A
// request with two credentials (repeated Authorization or X-API-Key
// headers, or an X-API-Key next to any Authorization) is refused with
// 400 by every authenticating middleware, over HTTP/1.1 and HTTP/2 alike:
// a proxy or service reading the other credential would otherwise act on
// one nobody checked (CWE-287, CWE-444).
func TestRFC6750_2_OneCredentialPerRequest(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	other := e.clientWithKey("other", []string{"payment.read"}, nil)
	jwt := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	v := e.validator()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") })
	handlers := map[string]http.Handler{
		"token.Authenticate":   token.Authenticate(v, e.ver)(ok),
		"auth.Middleware":      auth.Middleware(e.ver, v)(ok),
		"Validator.Middleware": v.Middleware(ok),
		"apikey.Middleware":    e.ver.Middleware(ok),
	}
	type headers [][2]string
	cases := map[string]headers{
		"two X-API-Key":                     {{"X-API-Key", key}, {"X-API-Key", other}},
		"X-API-Key twice, the same":         {{"X-API-Key", key}, {"X-API-Key", key}},
		"two Authorization, key then token": {{"Authorization", "Bearer " + key}, {"Authorization", "Bearer " + jwt}},
		"two Authorization, token then key": {{"Authorization", "Bearer " + jwt}, {"Authorization", "Bearer " + key}},
		"X-API-Key and a bearer token":      {{"X-API-Key", key}, {"Authorization", "Bearer " + jwt}},
		"X-API-Key and Basic":               {{"X-API-Key", key}, {"Authorization", "Basic c2hvcDpzZWNyZXQ="}},
		"X-API-Key and the key as bearer":   {{"X-API-Key", key}, {"Authorization", "Bearer " + key}},
		"an empty X-API-Key and a token":    {{"X-API-Key", ""}, {"Authorization", "Bearer " + jwt}},
	}
	for proto, h2 := range map[string]bool{"HTTP/1.1": false, "HTTP/2": true} {
		for name, h := range handlers {
			srv := httptest.NewUnstartedServer(h)
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			c := srv.Client()
			if !h2 {
				c.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			for cname, hs := range cases {
				req, _ := http.NewRequest("GET", srv.URL+"/v1/payments", nil)
				for _, kv := range hs {
					req.Header.Add(kv[0], kv[1])
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var b struct {
					Error string `json:"error"`
				}
				json.Unmarshal(body, &b)
				if resp.StatusCode != 400 || b.Error != "invalid_request" || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] ||
					!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
					t.Errorf("%s %s, %s: %d %s %q, want 400 invalid_request", proto, name, cname, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
				}
			}
			// One credential still works.
			for cname, hs := range map[string]headers{"key": {{"X-API-Key", key}}, "token": {{"Authorization", "Bearer " + jwt}}} {
				if name == "apikey.Middleware" && cname == "token" || name == "Validator.Middleware" && cname == "key" {
					continue
				}
				req, _ := http.NewRequest("GET", srv.URL+"/v1/payments", nil)
				req.Header.Set(hs[0][0], hs[0][1])
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s %s, one %s: %d", proto, name, cname, resp.StatusCode)
				}
			}
			srv.Close()
		}
	}
	// apikey.Authenticate, for callers of their own, says so with a typed
	// error.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("X-API-Key", key)
	r.Header.Add("Authorization", "Bearer "+jwt)
	if _, err := e.ver.Authenticate(r); err == nil || !strings.Contains(err.Error(), "more than one credential") {
		t.Errorf("Verifier.Authenticate with two credentials: %v", err)
	} else if !errors.Is(err, apikey.ErrTwoCredentials) {
		t.Errorf("Verifier.Authenticate: %v, want ErrTwoCredentials", err)
	}
}

// RFC 6750 §3.1: a request without credentials gets 401 with no error
// code ("SHOULD NOT include an error code"), and its description says
// what the route accepts: an API key, a bearer token, or either.
func TestRFC6750_3_1_NoCredentialsSaysWhatIsAccepted(t *testing.T) {
	e := newEnv(t)
	v := e.validator()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for name, tc := range map[string]struct {
		h    http.Handler
		want []string
		not  []string
	}{
		"keys and tokens": {token.Authenticate(v, e.ver)(ok), []string{"X-API-Key", "API key", "bearer token"}, nil},
		"auth.Middleware": {auth.Middleware(e.ver, v)(ok), []string{"X-API-Key", "API key", "bearer token"}, nil},
		"keys only":       {token.Authenticate(nil, e.ver)(ok), []string{"X-API-Key", "API key"}, []string{"bearer token"}},
		"tokens only":     {token.Authenticate(v, nil)(ok), []string{"bearer token"}, []string{"X-API-Key"}},
		"Validator":       {v.Middleware(ok), []string{"bearer token"}, []string{"X-API-Key"}},
		"apikey":          {e.ver.Middleware(ok), []string{"X-API-Key", "API key"}, []string{"bearer token"}},
	} {
		for _, auth := range []string{"", "Basic c2hvcDpzZWNyZXQ="} {
			r := httptest.NewRequest("GET", "/v1/payments", nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			var body map[string]string
			json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="rampart"` {
				t.Errorf("%s, %q: %d %q, want 401 with no error code", name, auth, w.Code, w.Header().Get("WWW-Authenticate"))
			}
			if _, has := body["error"]; has {
				t.Errorf("%s, %q: body %v has an error member (§3.1)", name, auth, body)
			}
			for _, s := range tc.want {
				if !strings.Contains(body["error_description"], s) {
					t.Errorf("%s, %q: error_description %q does not mention %q", name, auth, body["error_description"], s)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(body["error_description"], s) {
					t.Errorf("%s, %q: error_description %q mentions %q, which this route does not accept", name, auth, body["error_description"], s)
				}
			}
		}
	}
}
