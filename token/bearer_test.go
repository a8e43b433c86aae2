package token

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token, read here with
// exactly one space.
func TestRFC6750_2_1_AuthorizationHeader(t *testing.T) {
	for _, tc := range []struct {
		header string
		token  string
		status int // of the error; 0 when accepted
	}{
		{"Bearer abc", "abc", 0},
		{"bearer abc", "abc", 0},
		{"BEARER abc", "abc", 0},
		{"BeArEr abc", "abc", 0},
		{"Bearer a-b.c_d~e+f/g", "a-b.c_d~e+f/g", 0},
		{"Bearer abc==", "abc==", 0},
		{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", 0},

		{"", "", 401},                   // no credentials
		{"Basic dXNlcjpwYXNz", "", 401}, // another scheme: not a bearer token
		{"Bearerabc", "", 401},          // the scheme "Bearerabc"
		{"Bearer", "", 400},
		{"Bearer ", "", 400},
		{"Bearer  abc", "", 400}, // two spaces
		{"Bearer abc ", "", 400},
		{"Bearer abc def", "", 400},
		{"Bearer\tabc", "", 400},
		{" Bearer abc", "", 400},
		{"Bearer ===", "", 400},
		{"Bearer a=b", "", 400},
		{"Bearer abc\r\nX-Evil: 1", "", 400},
		{"Bearer \"abc\"", "", 400},
		{"Bearer abc,def", "", 400},
		{"Bearer äbc", "", 400},
		{"Bearer abc\x00", "", 400},
		{"Bear\x00er abc", "", 400},
	} {
		t.Run(tc.header, func(t *testing.T) {
			tok, err := ParseBearer(tc.header)
			if tc.status == 0 {
				if err != nil || tok != tc.token {
					t.Fatalf("ParseBearer = %q, %v; want %q", tok, err, tc.token)
				}
				return
			}
			e, ok := errors.AsType[*Error](err)
			if !ok || tok != "" {
				t.Fatalf("ParseBearer = %q, %v; want an *Error", tok, err)
			}
			if e.Status != tc.status {
				t.Fatalf("status %d, want %d (%v)", e.Status, tc.status, e)
			}
			wantCode := ErrorCode("")
			if tc.status == 400 {
				wantCode = InvalidRequest
			}
			if e.Code != wantCode {
				t.Fatalf("code %q, want %q", e.Code, wantCode)
			}
		})
	}
}

// RFC 6750 §3: the WWW-Authenticate challenge.
func TestRFC6750_3_WWWAuthenticate(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	expired := k.mint(t, with(clock.Now(), map[string]any{"exp": clock.Now().Add(-time.Hour).Unix(), "iat": clock.Now().Add(-2 * time.Hour).Unix()}), nil)

	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		want   string
	}{
		{"no credentials", func() *http.Request { return bearerRequest("") }, 401, `Bearer realm="rampart"`},
		{"another scheme", func() *http.Request {
			r := bearerRequest("")
			r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
			return r
		}, 401, `Bearer realm="rampart"`},
		{"bad token", func() *http.Request { return bearerRequest(expired) }, 401,
			`Bearer realm="rampart", error="invalid_token", error_description="token expired"`},
		{"malformed header", func() *http.Request {
			r := bearerRequest("")
			r.Header.Set("Authorization", "Bearer  x")
			return r
		}, 400, `Bearer realm="rampart", error="invalid_request", error_description="the bearer token is not an RFC 6750 b64token after exactly one space"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(v, tc.req())
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") != tc.want {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Header().Get("WWW-Authenticate"), tc.status, tc.want)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Fatalf("Cache-Control %q", got)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Fatalf("Content-Type %q", got)
			}
		})
	}

	t.Run("realm", func(t *testing.T) {
		v := staticValidator(clock, k)
		v.Realm = "payments"
		if got := serve(v, bearerRequest("")).Header().Get("WWW-Authenticate"); got != `Bearer realm="payments"` {
			t.Fatal(got)
		}
	})
	t.Run("nothing can break out of a quoted string", func(t *testing.T) {
		e := &Error{Code: InvalidToken, Description: "a\"b\\c\r\nSet-Cookie: x=1\x00é", Scope: "s\"", Status: 401}
		got := httpx.Challenge("r\"ealm\r\n", string(e.Code), e.Description, e.Scope)
		want := `Bearer realm="r?ealm??", error="invalid_token", error_description="a?b?c??Set-Cookie: x=1???", scope="s?"`
		if got != want {
			t.Fatalf("\ngot  %s\nwant %s", got, want)
		}
		w := httptest.NewRecorder()
		auth.WriteError(w, "r\"\n", e)
		for _, vs := range w.Header() {
			for _, s := range vs {
				if strings.ContainsAny(s, "\r\n\x00") {
					t.Fatalf("header value %q", s)
				}
			}
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error_description"] != e.Description {
			t.Fatalf("body %s: %v", w.Body, err)
		}
	})
}

// RFC 6750 §3.1: invalid_request 400, invalid_token 401,
// insufficient_scope 403, each with a JSON body.
func TestRFC6750_3_1_ErrorCodes(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	read := k.mint(t, with(clock.Now(), map[string]any{"scope": "payment.read"}), nil)
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"invalid_request: two headers", func() *http.Request {
			r := bearerRequest(read)
			r.Header.Add("Authorization", "Bearer "+read)
			return r
		}, 400, "invalid_request"},
		{"invalid_request: token in the query", func() *http.Request {
			return httptest.NewRequest("GET", "/payments?access_token="+read, nil)
		}, 400, "invalid_request"},
		{"invalid_request: token in the query as well", func() *http.Request {
			r := httptest.NewRequest("GET", "/payments?a=1&access_token="+read, nil)
			r.Header.Set("Authorization", "Bearer "+read)
			return r
		}, 400, "invalid_request"},
		{"invalid_token", func() *http.Request { return bearerRequest(read + "x") }, 401, "invalid_token"},
		{"insufficient_scope", func() *http.Request { return bearerRequest(read) }, 403, "insufficient_scope"},
		{"no credentials: no code", func() *http.Request { return bearerRequest("") }, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(v, tc.req(), RequireScope("payment.write"))
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body.Error != tc.code || body.Description == "" {
				t.Fatalf("body %+v, want error %q with a description", body, tc.code)
			}
			chal := w.Header().Get("WWW-Authenticate")
			if tc.code != "" && !strings.Contains(chal, `error="`+tc.code+`"`) {
				t.Fatalf("WWW-Authenticate %q", chal)
			}
			if tc.code == "" && strings.Contains(chal, "error=") {
				t.Fatalf("WWW-Authenticate %q has an error code for a request without credentials", chal)
			}
		})
	}
	t.Run("a form body is not read", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/payments", strings.NewReader("access_token="+read))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := serve(v, r)
		if w.Code != 401 || strings.Contains(w.Header().Get("WWW-Authenticate"), "error=") {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("query parameters that merely mention access_token", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/payments?q=access_token", nil)
		r.Header.Set("Authorization", "Bearer "+read)
		if w := serve(v, r); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
}

var b64TokenSyntax = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// FuzzParseBearer checks that whatever ParseBearer accepts is a b64token
// that it reads back the same way, and that it never fails in a way the
// middleware would answer with a 5xx.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{
		"", "Bearer", "Bearer ", "Bearer abc", "bearer abc==", "Bearer  abc", "Basic x",
		"Bearer a.b.c", "Bearer \r\n", "BEARER ~+/=", "Bearer ä", "Bearer a=b=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := ParseBearer(header)
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok || (e.Status != 400 && e.Status != 401) || tok != "" {
				t.Fatalf("ParseBearer(%q) = %q, %v", header, tok, err)
			}
			return
		}
		if tok == "" || !b64TokenSyntax.MatchString(tok) {
			t.Fatalf("ParseBearer(%q) accepted %q, not a b64token", header, tok)
		}
		if !strings.EqualFold(header[:7], "Bearer ") || header[7:] != tok {
			t.Fatalf("ParseBearer(%q) = %q: not the whole rest after one space", header, tok)
		}
		again, err := ParseBearer("Bearer " + tok)
		if err != nil || again != tok {
			t.Fatalf("re-parse of %q = %q, %v", tok, again, err)
		}
	})
}

// Error() is for the server's logs: it carries the cause, which the
// client never sees.
func TestErrorString(t *testing.T) {
	cause := errors.New("go-jose/go-jose: error in cryptographic primitive")
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{invalid("bad signature", cause), "auth: invalid_token: bad signature: go-jose/go-jose: error in cryptographic primitive"},
		{&Error{Code: InvalidRequest, Description: "more than one Authorization header", Status: 400}, "auth: invalid_request: more than one Authorization header"},
		{noCredentials(), "auth: a bearer token is required: Authorization: Bearer <access token>"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if !errors.Is(invalid("x", cause), cause) {
		t.Error("cause not unwrapped")
	}
	w := httptest.NewRecorder()
	auth.WriteError(w, "", invalid("bad signature", cause))
	if strings.Contains(w.Body.String()+w.Header().Get("WWW-Authenticate"), "go-jose") {
		t.Fatalf("cause sent to the client: %v %s", w.Header(), w.Body)
	}
}
