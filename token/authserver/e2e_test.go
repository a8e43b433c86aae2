package authserver_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/token"
)

// paymentsAPI is the seed's payment API: every endpoint needs its scope.
func paymentsAPI(v *token.Validator) http.Handler {
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+token.FromContext(r.Context()).ClientID)
	})
	mux.Handle("GET /v1/payments", token.RequireScope("payment.read")(ok))
	mux.Handle("POST /v1/payments", token.RequireScope("payment.write")(ok))
	mux.Handle("POST /v1/withdrawals", token.RequireScope("payment.withdraw")(ok))
	return v.Middleware(mux)
}

// A real OAuth2 client, golang.org/x/oauth2/clientcredentials, gets a
// token and calls the payment API; and the seed's check: a payment.read
// token cannot create a payment, a payment.write token can,
// payment.withdraw is separate.
func TestClientCredentialsLibraryAndPaymentScopes(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write", "payment.withdraw"}, nil)
	api := httptest.NewServer(paymentsAPI(e.validator()))
	defer api.Close()

	call := func(scopes ...string) map[string]int {
		cfg := clientcredentials.Config{ClientID: "shop", ClientSecret: key, TokenURL: e.srv.URL + "/oauth2/token", Scopes: scopes}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.client)
		c := cfg.Client(ctx)
		out := map[string]int{}
		for _, ep := range []string{"GET /v1/payments", "POST /v1/payments", "POST /v1/withdrawals"} {
			method, path, _ := strings.Cut(ep, " ")
			req, _ := http.NewRequest(method, api.URL+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%v: %v", scopes, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out[ep] = resp.StatusCode
			if resp.StatusCode == 403 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("%v %s: 403 without insufficient_scope: %v %s", scopes, ep, resp.Header, body)
			}
			if resp.StatusCode == 200 && string(body) != "ok shop" {
				t.Errorf("%v %s: %s", scopes, ep, body)
			}
		}
		return out
	}
	for _, tc := range []struct {
		scopes []string
		want   map[string]int
	}{
		{[]string{"payment.read"}, map[string]int{"GET /v1/payments": 200, "POST /v1/payments": 403, "POST /v1/withdrawals": 403}},
		{[]string{"payment.write"}, map[string]int{"GET /v1/payments": 403, "POST /v1/payments": 200, "POST /v1/withdrawals": 403}},
		{[]string{"payment.withdraw"}, map[string]int{"GET /v1/payments": 403, "POST /v1/payments": 403, "POST /v1/withdrawals": 200}},
		{[]string{"payment.read", "payment.write"}, map[string]int{"GET /v1/payments": 200, "POST /v1/payments": 200, "POST /v1/withdrawals": 403}},
	} {
		got := call(tc.scopes...)
		for ep, want := range tc.want {
			if got[ep] != want {
				t.Errorf("token with %v: %s answered %d, want %d", tc.scopes, ep, got[ep], want)
			}
		}
	}
	// And without any token: 401.
	resp, _ := http.Post(api.URL+"/v1/payments", "application/json", nil)
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %v", resp.StatusCode, resp.Header)
	}
}

// A scope hierarchy exists only when the server declares one.
func TestScopeImplies(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, []string{"payment.write"})
	tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	if _, c := claims(t, tok); c["scope"] != "payment.write" {
		t.Errorf("without a hierarchy, scope %v", c["scope"])
	}
	e.as.ScopeImplies = map[string][]string{"payment.write": {"payment.read"}}
	tok = e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	if _, c := claims(t, tok); c["scope"] != "payment.write payment.read" {
		t.Errorf("with payment.write implying payment.read, scope %v", c["scope"])
	}
}

// A client's token lifetime applies, up to 24 hours.
func TestTokenLifetime(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "batch", Scopes: []string{"payment.read"}, TokenLifetime: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	k, _, _ := e.keys.Create(context.Background(), "batch", nil, time.Time{})
	if r := e.post(e.client, "/oauth2/token", grant(), basic("batch", k.String())); r.body["expires_in"] != float64(7200) {
		t.Errorf("expires_in %v, want 7200", r.body["expires_in"])
	}
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "too-long", Scopes: []string{"payment.read"}, TokenLifetime: 25 * time.Hour}); err == nil {
		t.Error("a 25 h token lifetime was accepted")
	}
}

// API-key rotation end to end: the old key works during the grace period
// (and says it is deprecated), the new one too; after the grace only the
// new one does.
func TestAPIKeyRotationEndToEnd(t *testing.T) {
	e := newEnv(t)
	old := e.clientWithKey("shop", []string{"payment.read"}, nil)
	rec, err := e.ver.Verify(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	newKey, _, err := e.keys.Rotate(context.Background(), rec.Record.ID, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.ver.Forget()
	for name, k := range map[string]string{"old": old, "new": newKey.String()} {
		if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", k)); r.status != 200 {
			t.Errorf("%s key during the grace period: %d %s", name, r.status, r.raw)
		}
	}
	// An API endpoint authenticated by key says the old one is deprecated.
	api := httptest.NewServer(e.ver.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer api.Close()
	req, _ := http.NewRequest("GET", api.URL, nil)
	req.Header.Set("X-API-Key", old)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sunset, _ := http.ParseTime(resp.Header.Get("Sunset"))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Deprecation"), "@") || !sunset.Equal(e.clock.Now().Add(72*time.Hour)) {
		t.Errorf("old key in grace: %d Deprecation %q Sunset %q", resp.StatusCode, resp.Header.Get("Deprecation"), resp.Header.Get("Sunset"))
	}
	e.clock.Add(72*time.Hour + time.Second)
	e.ver.Forget()
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", old)); r.status != 401 {
		t.Errorf("old key after the grace period: %d", r.status)
	}
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", newKey.String())); r.status != 200 {
		t.Errorf("new key after the grace period: %d", r.status)
	}
}

// A client rotates its own key with the current one, without an operator.
func TestSelfRotation(t *testing.T) {
	e := newEnv(t)
	old := e.clientWithKey("shop", []string{"payment.read"}, nil)
	h := httptest.NewServer(e.keys.RotateHandler(e.ver, 72*time.Hour))
	defer h.Close()
	rotate := func(key, body string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", h.URL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, _ := rotate(old, `{"grace": "1000h"}`); code != 400 || !strings.Contains(body, "grace") {
		t.Errorf("a grace longer than allowed: %d %s, want 400", code, body)
	}
	code, body, hdr := rotate(old, `{"grace": "1h"}`)
	if code != 201 || !strings.Contains(body, `"key":"rk_live_`) || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("self-rotation: %d %s", code, body)
	}
	if code, _, _ := rotate(old, ""); code != 409 {
		t.Errorf("rotating an already rotated key: %d, want 409", code)
	}
	if code, _, _ := rotate("rk_live_wrong", ""); code != 401 {
		t.Errorf("rotating without a valid key: %d", code)
	}
	e.clock.Add(time.Hour + time.Second)
	e.ver.Forget()
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", old)); r.status != 401 {
		t.Errorf("old key after the 1 h grace it asked for: %d", r.status)
	}
}

// A key revoked through one instance fails at once on a second instance
// sharing the store: the second notices within its RevocationCheck (here
// every request; by default every 100 ms).
func TestRevocationAcrossInstances(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	st2, err := sqlite.Open(context.Background(), e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	ver2 := &apikey.Verifier{Store: st2.APIKeys(), Pepper: e.pepper, Now: e.clock.Now}
	defer ver2.Close()
	as2 := e.newServer(st2, ver2)
	srv2 := httptest.NewServer(as2)
	defer srv2.Close()
	get := func() int {
		resp, err := http.PostForm(srv2.URL+"/oauth2/token", grant("client_id", "shop", "client_secret", key))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get(); c != 200 {
		t.Fatalf("before revocation: %d", c)
	}
	v, _ := e.ver.Verify(context.Background(), key)
	if err := e.keys.Revoke(context.Background(), v.Record.ID); err != nil {
		t.Fatal(err)
	}
	// The second instance's cache still holds the key; its next check of
	// the revocation generation drops it.
	e.clock.Add(100 * time.Millisecond)
	if c := get(); c != 401 {
		t.Errorf("on the second instance, 100 ms after revocation: %d, want 401", c)
	}
	if _, err := ver2.Verify(context.Background(), key); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("second verifier: %v, want ErrRevoked", err)
	}
}

// The store holds no plaintext key: search the SQLite files for it.
func TestNoPlaintextKeyInSQLite(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	e.post(e.client, "/oauth2/token", grant(), basic("shop", key)) // used, touched
	e.ver.Close()
	k, _ := apikey.Parse(key)
	found := false
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(e.path + suffix)
		if err != nil {
			continue
		}
		if bytes.Contains(data, []byte(key)) || bytes.Contains(data, []byte(key[12:40])) {
			t.Errorf("%s%s holds the key", e.path, suffix)
		}
		found = found || bytes.Contains(data, []byte(strings.TrimSuffix(k.Hint(), "…")))
	}
	if !found {
		t.Error("the hint is not in the database either: did the search read the right files?")
	}
}
