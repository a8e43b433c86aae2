package authserver_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/token/authserver"
)

// RFC 6749 §3.3: the scope is a set ("the order does not matter", each
// scope-token once). A repeated scope-token is granted once, in the
// response and in the token.
func TestRFC6749_3_3_ScopeIsASet(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, nil)
	r := e.post(e.client, "/oauth2/token", grant("scope", "payment.read payment.write payment.read"), basic("shop", key))
	if r.status != 200 || r.body["scope"] != "payment.read payment.write" {
		t.Fatalf("repeated scope: %d %s, want scope %q", r.status, r.raw, "payment.read payment.write")
	}
	_, c := claims(t, r.body["access_token"].(string))
	if c["scope"] != "payment.read payment.write" {
		t.Errorf("token scope claim %q, want each scope once", c["scope"])
	}
}

// RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if
// they were omitted from the request."
func TestRFC6749_3_2_EmptyParametersAreOmitted(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, nil)
	for name, tc := range map[string]struct {
		form url.Values
		edit func(*http.Request)
	}{
		"basic with client_secret=":           {grant("client_secret", ""), basic("shop", key)},
		"basic with client_id=":               {grant("client_id", ""), basic("shop", key)},
		"post with scope=":                    {grant("client_id", "shop", "client_secret", key, "scope", ""), nil},
		"basic with client_id= and scope=":    {grant("client_id", "", "scope", ""), basic("shop", key)},
		"post with an empty token_type_hint=": {grant("client_id", "shop", "client_secret", key, "token_type_hint", ""), nil},
	} {
		r := e.post(e.client, "/oauth2/token", tc.form, tc.edit)
		if r.status != 200 || r.body["scope"] != "payment.read payment.write" {
			t.Errorf("%s: %d %s, want 200 with the key's scopes", name, r.status, r.raw)
		}
	}
	// The grant type sent empty is a grant type not sent.
	if r := e.post(e.client, "/oauth2/token", url.Values{"grant_type": {""}}, basic("shop", key)); r.status != 400 || r.body["error"] != "invalid_request" {
		t.Errorf("empty grant_type: %d %s, want 400 invalid_request (missing)", r.status, r.raw)
	}
	// An empty value given twice is still a parameter given twice.
	if r := e.post(e.client, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"", ""}}, basic("shop", key)); r.status != 400 {
		t.Errorf("scope given twice, empty: %d %s, want 400", r.status, r.raw)
	}
}

// RFC 7009 §2.1: "If the server is unable to locate the token using the
// given hint, it MUST extend its search across all of its supported token
// types." A wrong or unknown hint revokes the access token all the same;
// unsupported_token_type (§2.2.1) is for types the server cannot revoke.
func TestRFC7009_2_1_HintExtendsTheSearch(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	rs := e.clientWithKey("resource-server", []string{authserver.IntrospectScope}, nil)
	for _, hint := range []string{"refresh_token", "urn:example:unknown", "access_token"} {
		tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
		r := e.post(e.client, "/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {hint}}, basic("shop", key))
		if r.status != 200 {
			t.Errorf("hint %s: %d %s, want 200", hint, r.status, r.raw)
		}
		if a := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("resource-server", rs)).body["active"]; a != false {
			t.Errorf("hint %s: the token is still active", hint)
		}
	}
}

// descriptionOK reports whether s is an RFC 6749 §5.2 error_description:
// %x20-21 / %x23-5B / %x5D-7E.
func descriptionOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 0x20 && c != 0x21 && (c < 0x23 || c > 0x5B) && (c < 0x5D || c > 0x7E) {
			return false
		}
	}
	return true
}

// RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B /
// %x5D-7E, whatever the request held: no section sign, no quoted
// reflection of what the client sent.
func TestRFC6749_5_2_ErrorDescriptionCharacters(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	for name, tc := range map[string]struct {
		form url.Values
		edit func(*http.Request)
	}{
		"two methods":       {grant("client_secret", key), basic("shop", key)},
		"scope NBSP":        {grant("scope", "payment.read\u00a0payment.write"), basic("shop", key)},
		"scope quote":       {grant("scope", `payment."read`), basic("shop", key)},
		"scope backslash":   {grant("scope", `payment\read`), basic("shop", key)},
		"double space":      {grant("scope", "payment.read  payment.read"), basic("shop", key)},
		"scope not granted": {grant("scope", "payment.write"), basic("shop", key)},
		"unknown grant":     {url.Values{"grant_type": {"urn:é"}}, basic("shop", key)},
	} {
		r := e.post(e.client, "/oauth2/token", tc.form, tc.edit)
		d, _ := r.body["error_description"].(string)
		if r.status != 400 || d == "" || !descriptionOK(d) {
			t.Errorf("%s: %d error_description %q: want 400 with only %%x20-21 / %%x23-5B / %%x5D-7E", name, r.status, d)
		}
	}
}

// RFC 6749 §5.2 defines the token endpoint's error codes;
// temporarily_unavailable is the authorization endpoint's (§4.1.2.1). A
// throttled address gets 429 with Retry-After and no code of another
// endpoint, at the token, introspection and revocation endpoints alike.
func TestRFC6749_5_2_NoAuthorizationEndpointCodes(t *testing.T) {
	e := newEnv(t)
	e.clientWithKey("shop", []string{"payment.read"}, nil)
	for range 10 {
		e.post(e.client, "/oauth2/token", grant(), basic("shop", "rk_live_guess"))
	}
	for _, path := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
		form := grant()
		if path != "/oauth2/token" {
			form = url.Values{"token": {"x.y.z"}}
		}
		r := e.post(e.client, path, form, basic("shop", "rk_live_guess"))
		if r.status != 429 || r.header.Get("Retry-After") == "" {
			t.Errorf("%s throttled: %d %v, want 429 with Retry-After", path, r.status, r.header)
		}
		if code, ok := r.body["error"]; ok && code == "temporarily_unavailable" {
			t.Errorf("%s throttled: error %q is not a token endpoint code (RFC 6749 §5.2)", path, code)
		}
		if d, _ := r.body["error_description"].(string); d == "" || !descriptionOK(d) {
			t.Errorf("%s throttled: error_description %q", path, d)
		}
	}
	// A store that cannot be reached is a 503, not an OAuth error code of
	// another endpoint.
	e.as.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	e.st.Close()
	k, _ := apikey.Generate(apikey.Live)
	e.ver.Forget()
	r := e.post(e.client, "/oauth2/token", grant("client_id", "other", "client_secret", k.String()), func(q *http.Request) {
		q.Header.Set("X-Forwarded-For", "198.51.100.1")
	})
	if r.status != 503 || r.body["error"] == "temporarily_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("store down: %d %v %s, want 503 with Retry-After and no temporarily_unavailable", r.status, r.header, r.raw)
	}
}

// metadata fetches the RFC 8414 metadata at path.
func (e *env) metadata(path string) (int, map[string]any) {
	e.t.Helper()
	resp, err := e.client.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// RFC 8414 §2 / RFC 8705 §3.3: a server whose TLS layer asks for no
// client certificates advertises neither tls_client_auth nor
// certificate-bound tokens, and refuses tls_client_auth; one that does
// advertises both.
func TestRFC8414_2_MutualTLSAdvertisedOnlyWhenOffered(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "ledger", Scopes: []string{"payment.read"}, CertURI: ledgerID.String()}); err != nil {
		t.Fatal(err)
	}
	e.as.MutualTLS = false
	_, m := e.metadata("/.well-known/oauth-authorization-server")
	for _, field := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if slices.Contains(toStrings(m[field]), "tls_client_auth") {
			t.Errorf("without mutual TLS, %s = %v advertises tls_client_auth", field, m[field])
		}
	}
	if m["tls_client_certificate_bound_access_tokens"] == true {
		t.Error("without mutual TLS, the metadata advertises certificate-bound tokens")
	}
	if r := e.post(e.mclient, "/oauth2/token", grant("client_id", "ledger"), nil); r.status != 401 {
		t.Errorf("tls_client_auth without mutual TLS: %d %s, want 401", r.status, r.raw)
	}
	e.as.MutualTLS = true
	_, m = e.metadata("/.well-known/oauth-authorization-server")
	if !slices.Contains(toStrings(m["token_endpoint_auth_methods_supported"]), "tls_client_auth") || m["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("with mutual TLS: %v", m)
	}
	// RFC 8414 §2: response_types_supported is REQUIRED; this server has
	// no authorization endpoint, so it supports none: an empty list.
	if rt, ok := m["response_types_supported"].([]any); !ok || len(rt) != 0 {
		t.Errorf("response_types_supported = %v, want []", m["response_types_supported"])
	}
}

// RFC 8414 §3.1: for an issuer with a path component, the well-known
// suffix goes between the host and the path:
// https://host/.well-known/oauth-authorization-server/tenant. Its issuer
// is the issuer exactly (§3.3).
func TestRFC8414_3_1_IssuerWithPath(t *testing.T) {
	e := newEnv(t)
	as := &authserver.Server{
		Issuer: e.srv.URL + "/tenant", Audience: audience, Keys: e.st.SigningKeys(), Revocations: e.st.RevokedTokens(),
		Clients: e.st.APIKeys(), APIKeys: e.ver, KeyEncryptionKey: e.kek, Now: e.clock.Now,
	}
	if err := as.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = as
	status, m := e.metadata("/.well-known/oauth-authorization-server/tenant")
	if status != 200 || m["issuer"] != e.srv.URL+"/tenant" || m["token_endpoint"] != e.srv.URL+"/tenant/oauth2/token" {
		t.Errorf("path-inserted metadata: %d %v", status, m)
	}
	if status, _ := e.metadata("/.well-known/oauth-authorization-server/other"); status != 404 {
		t.Errorf("another issuer's path: %d, want 404", status)
	}
}

// RFC 8705 §3 with §2: a client that authenticates with its secret gets
// an unbound token even when its TLS stack sends a certificate; binding
// is for tls_client_auth, whose certificate is the credential. (An
// unrequested binding made tokens unusable through the gateway, which
// asks for no client certificates.)
func TestRFC8705_3_BindingOnlyForTLSClientAuth(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	r := e.post(e.mclient, "/oauth2/token", grant(), basic("shop", key))
	if r.status != 200 {
		t.Fatalf("secret over a connection with a certificate: %d %s", r.status, r.raw)
	}
	if _, c := claims(t, r.body["access_token"].(string)); c["cnf"] != nil {
		t.Errorf("client_secret_basic token bound to the connection's certificate: cnf %v", c["cnf"])
	}
	if _, err := e.validator().Validate(context.Background(), r.body["access_token"].(string), nil); err != nil {
		t.Errorf("the secret client's token without a certificate: %v", err)
	}
}

// invalid_scope (RFC 6749 §5.2) says whose grant lacks the scope: the API
// key's (naming it and its scopes), or the client's.
func TestRFC6749_5_2_InvalidScopeNamesTheKey(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, []string{"payment.read"})
	v, err := e.ver.Verify(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(e.client, "/oauth2/token", grant("scope", "payment.write"), basic("shop", key))
	d, _ := r.body["error_description"].(string)
	if r.status != 400 || r.body["error"] != "invalid_scope" || !strings.Contains(d, "API key "+v.Record.ID) || !strings.Contains(d, "payment.read") || strings.Contains(d, "to this client") {
		t.Errorf("scope the client has, the key not: %d %q, want the key %s and its scopes named", r.status, d, v.Record.ID)
	}
	r = e.post(e.client, "/oauth2/token", grant("scope", "payment.withdraw"), basic("shop", key))
	if d, _ := r.body["error_description"].(string); r.status != 400 || !strings.Contains(d, "client shop") {
		t.Errorf("scope the client lacks: %d %q, want the client named", r.status, d)
	}
}

// The token endpoint writes one audit line per token issued or refused,
// with the client, the key, the scopes, the grant, the status and the
// address, and never a secret: neither the API key nor the token.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	e.as.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, nil)
	v, err := e.ver.Verify(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	ok := e.post(e.client, "/oauth2/token", grant("scope", "payment.read"), basic("shop", key))
	e.post(e.client, "/oauth2/token", grant(), basic("shop", otherChar(key, 20)))
	e.post(e.client, "/oauth2/token", grant("scope", "payment.withdraw"), basic("shop", key))
	tok := ok.body["access_token"].(string)
	e.post(e.client, "/oauth2/revoke", url.Values{"token": {tok}}, basic("shop", key))

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	find := func(msg string, status float64) map[string]any {
		for _, m := range lines {
			if m["msg"] == msg && m["status"] == status {
				return m
			}
		}
		t.Errorf("no %q line with status %v in\n%s", msg, status, buf.String())
		return map[string]any{}
	}
	_, c := claims(t, tok)
	issued := find("token: issued", 200)
	if issued["client_id"] != "shop" || issued["key_id"] != v.Record.ID || issued["scope"] != "payment.read" ||
		issued["grant_type"] != "client_credentials" || issued["auth_method"] != "client_secret_basic" ||
		issued["remote_addr"] != "127.0.0.1" || issued["jti"] != c["jti"] {
		t.Errorf("issued line %v", issued)
	}
	if refused := find("token: refused", 401); refused["client_id"] != "shop" || refused["error"] != "invalid_client" {
		t.Errorf("refused line %v", refused)
	}
	if refused := find("token: refused", 400); refused["error"] != "invalid_scope" || refused["key_id"] != v.Record.ID {
		t.Errorf("invalid_scope line %v", refused)
	}
	if rev := find("token: revoked", 200); rev["jti"] != c["jti"] || rev["client_id"] != "shop" {
		t.Errorf("revocation line %v", rev)
	}
	for _, secret := range []string{key, otherChar(key, 20), tok, strings.Split(tok, ".")[2]} {
		if strings.Contains(buf.String(), secret) {
			t.Fatalf("the audit log holds a secret:\n%s", buf.String())
		}
	}
}

// E9: the tokens the Server issues are the canonical spelling of
// themselves: strict base64url, and ES256 signatures with low S, so that
// the high-S twin is never the token a client was given.
func TestIssuedTokensAreCanonical(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	for range 32 {
		tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
		for _, seg := range strings.Split(tok, ".") {
			b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != seg {
				t.Fatalf("segment %q is not canonical base64url: %v", seg, err)
			}
		}
		sig, _ := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
		if new(big.Int).SetBytes(sig[32:]).Cmp(half) > 0 {
			t.Fatalf("issued with high S: %s", tok)
		}
	}
}
