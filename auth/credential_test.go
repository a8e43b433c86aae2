package auth_test

import (
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/auth"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const (
	key = "rk_live_7Gq0c1o0mZ5tq9d1Y2f3pXcQ3y0vR8s9K4j2L6h5N1b0a8fG2uVbN"
	jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzaG9wIn0.c2ln"
)

// One reader of the credential headers, and strict: RFC 6750 §2 (one
// method per request), §2.1 (the Authorization syntax), §2.3 (no token in
// the URI).
func TestParseCredential(t *testing.T) {
	type headers [][2]string
	for _, tc := range []struct {
		name    string
		url     string
		h       headers
		want    auth.Credential
		refused string // a substring of the description; "" for none
	}{
		{"nothing", "/", nil, auth.Credential{}, ""},
		{"X-API-Key", "/", headers{{"X-API-Key", key}}, auth.Credential{Method: auth.APIKey, Value: key, Header: auth.HeaderAPIKey}, ""},
		{"an empty X-API-Key is one", "/", headers{{"X-API-Key", ""}}, auth.Credential{Method: auth.APIKey, Header: auth.HeaderAPIKey}, ""},
		{"a key as bearer", "/", headers{{"Authorization", "Bearer " + key}}, auth.Credential{Method: auth.APIKey, Value: key, Header: auth.HeaderAuthorization}, ""},
		{"a token", "/", headers{{"Authorization", "Bearer " + jwt}}, auth.Credential{Method: auth.Bearer, Value: jwt, Header: auth.HeaderAuthorization}, ""},
		{"any case of the scheme", "/", headers{{"Authorization", "bEARER " + jwt}}, auth.Credential{Method: auth.Bearer, Value: jwt, Header: auth.HeaderAuthorization}, ""},
		{"Basic is none of ours", "/", headers{{"Authorization", "Basic c2hvcDpzZWNyZXQ="}}, auth.Credential{}, ""},
		{"an empty Authorization", "/", headers{{"Authorization", ""}}, auth.Credential{}, ""},
		{"a query that mentions access_token", "/?q=access_token", headers{{"Authorization", "Bearer " + jwt}}, auth.Credential{Method: auth.Bearer, Value: jwt, Header: auth.HeaderAuthorization}, ""},

		{"two X-API-Key", "/", headers{{"X-API-Key", key}, {"X-API-Key", key}}, auth.Credential{}, "more than one credential"},
		{"two Authorization", "/", headers{{"Authorization", "Bearer " + jwt}, {"Authorization", "Bearer " + jwt}}, auth.Credential{}, "more than one credential"},
		{"X-API-Key and Basic", "/", headers{{"X-API-Key", key}, {"Authorization", "Basic eA=="}}, auth.Credential{}, "more than one credential"},
		{"an empty X-API-Key and a token", "/", headers{{"X-API-Key", ""}, {"Authorization", "Bearer " + jwt}}, auth.Credential{}, "more than one credential"},
		{"a token in the query", "/?access_token=" + jwt, nil, auth.Credential{}, "in the URI"},
		{"a key and a token in the query", "/?a=1&access_token=x", headers{{"X-API-Key", key}}, auth.Credential{}, "in the URI"},
		{"two spaces", "/", headers{{"Authorization", "Bearer  " + jwt}}, auth.Credential{}, "b64token"},
		{"no token", "/", headers{{"Authorization", "Bearer"}}, auth.Credential{}, "no bearer token"},
		{"no token after the space", "/", headers{{"Authorization", "Bearer "}}, auth.Credential{}, "no bearer token"},
		{"a space in the key", "/", headers{{"Authorization", "Bearer rk_live_a b"}}, auth.Credential{}, "b64token"},
		{"a scheme that is no token", "/", headers{{"Authorization", "Bea(rer x"}}, auth.Credential{}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			for _, kv := range tc.h {
				r.Header.Add(kv[0], kv[1])
			}
			c, err := auth.ParseCredential(r)
			if tc.refused == "" {
				if err != nil || c != tc.want {
					t.Fatalf("ParseCredential = %+v, %v; want %+v", c, err, tc.want)
				}
				return
			}
			e, ok := errors.AsType[*auth.Error](err)
			if !ok || e.Status != 400 || e.Code != auth.InvalidRequest || !strings.Contains(e.Description, tc.refused) || c != (auth.Credential{}) {
				t.Fatalf("ParseCredential = %+v, %v; want 400 invalid_request %q", c, err, tc.refused)
			}
			if strings.Contains(tc.refused, "more than one") != errors.Is(err, auth.ErrTwoCredentials) {
				t.Fatalf("errors.Is(%v, ErrTwoCredentials) = %v", err, !strings.Contains(tc.refused, "more than one"))
			}
		})
	}
}

var b64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// Whatever ParseAuthorization accepts is a b64token after exactly one
// space, that it reads back the same way; whatever it refuses is 400.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"", "Bearer", "Bearer ", "Bearer abc", "bearer abc==", "Bearer  abc", "Basic x",
		"Bearer a.b.c", "Bearer \r\n", "BEARER ~+/=", "Bearer ä", "Bearer a=b=", "Bearer rk_live_x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		c, err := auth.ParseAuthorization(header)
		if err != nil {
			if e, ok := errors.AsType[*auth.Error](err); !ok || e.Status != 400 || c != (auth.Credential{}) {
				t.Fatalf("ParseAuthorization(%q) = %+v, %v", header, c, err)
			}
			return
		}
		if c == (auth.Credential{}) {
			return
		}
		if !b64token.MatchString(c.Value) || !strings.EqualFold(header[:7], "Bearer ") || header[7:] != c.Value {
			t.Fatalf("ParseAuthorization(%q) accepted %q", header, c.Value)
		}
		if (c.Method == auth.APIKey) != strings.HasPrefix(c.Value, auth.APIKeyPrefix) || c.Header != auth.HeaderAuthorization {
			t.Fatalf("ParseAuthorization(%q) = %+v", header, c)
		}
		if again, err := auth.ParseAuthorization("Bearer " + c.Value); err != nil || again != c {
			t.Fatalf("re-parse of %q = %+v, %v", c.Value, again, err)
		}
	})
}
