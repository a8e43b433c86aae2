package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

// runCLIIn is runCLI with stdin.
func runCLIIn(t *testing.T, in string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(in), Out: &out, Err: &errOut}); code != 0 {
		t.Fatalf("rampart %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// E13 and the operator's revocations, as rampart serve and the CLI run
// them: a token revoked by jti, a token revoked as itself (from stdin),
// a client disabled (its 1-day tokens end, and stay revoked once it is
// enabled again). Each is refused at once by a token.Validator that
// checks revocations (as rampart gateway with auth.api_keys builds it),
// and introspection agrees with it (RFC 7662 §2.2, RFC 7009 §2).
func TestTokenRevokeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	runCLI(t, "client", "create", "shop", "--data", dir, "--scopes", "payment.read", "--token-lifetime", "1d", "--init")
	runCLI(t, "client", "create", "rs", "--data", dir, "--scopes", authserver.IntrospectScope)
	key := strings.TrimSpace(runCLI(t, "apikey", "create", "--client", "shop", "--data", dir))
	rsKey := strings.TrimSpace(runCLI(t, "apikey", "create", "--client", "rs", "--data", dir))
	_, base := startServe(t, dir)

	post := func(path, id, secret string, form url.Values) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return body
	}
	newToken := func() string {
		t.Helper()
		body := post("/oauth2/token", "shop", key, url.Values{"grant_type": {"client_credentials"}})
		tok, _ := body["access_token"].(string)
		if tok == "" || body["expires_in"] != float64(86400) {
			t.Fatalf("token: %v", body)
		}
		return tok
	}
	st, err := backend.Open(context.Background(), filepath.Join(dir, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := &token.Validator{Issuer: base, Audience: "rampart", JWKSURL: base + "/oauth2/jwks", Revoked: st.RevokedTokens().TokenRevoked}
	check := func(name, tok string, valid bool) {
		t.Helper()
		_, err := v.Validate(context.Background(), tok, nil)
		active := post("/oauth2/introspect", "rs", rsKey, url.Values{"token": {tok}})["active"]
		if (err == nil) != valid || active != valid {
			t.Errorf("%s: Validate %v, introspection active %v; want valid %t in both", name, err, active, valid)
		}
	}
	jtiOf := func(tok string) string {
		var c struct {
			JTI string `json:"jti"`
		}
		b, _ := jsonSegment(tok)
		json.Unmarshal(b, &c)
		return c.JTI
	}

	a, b, c := newToken(), newToken(), newToken()
	for name, tok := range map[string]string{"a": a, "b": b, "c": c} {
		check(name+" before", tok, true)
	}
	out := runCLI(t, "token", "revoke", jtiOf(a), "--data", dir)
	if !strings.Contains(out, "token "+jtiOf(a)+" revoked") {
		t.Errorf("token revoke JTI: %q", out)
	}
	check("a revoked by jti", a, false)
	check("b", b, true)
	out = runCLIIn(t, b+"\n", "token", "revoke", "-", "--data", dir)
	if !strings.Contains(out, "token "+jtiOf(b)+" of client shop revoked") {
		t.Errorf("token revoke -: %q", out)
	}
	check("b revoked as itself", b, false)
	check("c", c, true)

	out = runCLI(t, "client", "disable", "shop", "--data", dir)
	if !strings.Contains(out, "access tokens issued until") {
		t.Errorf("client disable: %q", out)
	}
	check("c, its client disabled", c, false)
	runCLI(t, "client", "enable", "shop", "--data", dir)
	check("c, its client enabled again", c, false)
	// A token's iat is whole seconds: one issued in the second of the
	// revocation is revoked too. The next second's is not.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	d := newToken()
	check("d, issued after the client was enabled", d, true)
	runCLI(t, "token", "revoke", "--client", "shop", "--all", "--data", dir)
	check("d after token revoke --client shop --all", d, false)
}

// jsonSegment decodes the claims of a compact JWS, unverified.
func jsonSegment(tok string) ([]byte, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

// rampart serve wires the token server's hardening: without --client-ca
// the metadata offers neither tls_client_auth nor bound tokens (RFC 8414
// §2, RFC 8705 §3.3); an issuer with a path has its metadata at the
// path-inserted well-known URI (RFC 8414 §3.1); and API-key self-rotation
// is under the token endpoint's failure limit (10 a minute per address).
func TestServeOAuthHardening(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	_, base := startServe(t, dir, "--issuer", "https://cp.pay.test/tenant")
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, m := get("/.well-known/oauth-authorization-server/tenant")
	if code != 200 || m["issuer"] != "https://cp.pay.test/tenant" {
		t.Errorf("path-inserted metadata: %d %v", code, m)
	}
	if methods, _ := json.Marshal(m["token_endpoint_auth_methods_supported"]); strings.Contains(string(methods), "tls_client_auth") || m["tls_client_certificate_bound_access_tokens"] != false {
		t.Errorf("without --client-ca, the metadata offers mutual TLS: %v", m)
	}
	var codes []int
	for range 12 {
		req, _ := http.NewRequest("POST", base+"/v1/apikeys/rotate", nil)
		req.Header.Set("X-API-Key", "rk_live_"+strings.Repeat("0", 43)+"zzzzzz")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if got := fmt.Sprint(codes); got != "[401 401 401 401 401 401 401 401 401 401 429 429]" {
		t.Errorf("12 self-rotations with a wrong key: %s, want 10 401 then 429", got)
	}
}

// A token issued after client disable revoked the client's tokens, but
// before every token server saw the client disabled (their key check
// polls every 100 ms), is refused while the client is disabled, and stays
// refused once it is enabled again: enable revokes again up to its own
// time (an independent review of E13's fix).
func TestTokenOfTheDisableWindowStaysRevoked(t *testing.T) {
	dir := t.TempDir()
	runCLI(t, "client", "create", "shop", "--data", dir, "--scopes", "payment.read", "--init")
	runCLI(t, "client", "disable", "shop", "--data", dir)
	// Issued in a later second than the disable's revocation, as a
	// lagging token server would.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	ref := token.TokenRef{JTI: "window", ClientID: "shop", IssuedAt: time.Now().Truncate(time.Second), Expires: time.Now().Add(time.Hour)}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))

	st, err := backend.Open(context.Background(), filepath.Join(dir, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	revoked := func() bool {
		t.Helper()
		r, err := st.RevokedTokens().TokenRevoked(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if !revoked() {
		t.Fatal("the token of a disabled client is not revoked")
	}
	runCLI(t, "client", "enable", "shop", "--data", dir)
	if !revoked() {
		t.Error("the token issued while the client was being disabled works again once it is enabled")
	}
	// Enabling a client that is not disabled revokes nothing.
	later := ref
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	later.JTI, later.IssuedAt = "later", time.Now().Truncate(time.Second)
	runCLI(t, "client", "enable", "shop", "--data", dir)
	if r, err := st.RevokedTokens().TokenRevoked(context.Background(), later); err != nil || r {
		t.Errorf("a token issued after the client was enabled: revoked %v, %v", r, err)
	}
}
