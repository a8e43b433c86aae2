package authserver_test

import (
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update

	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

const audience = "https://api.payments.test"

var ledgerID, _ = url.Parse("spiffe://pay.internal/ns/prod/sa/ledger")

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is an authorization server on a real SQLite file behind a real TLS
// server that asks for (and verifies) client certificates.
type env struct {
	t       *testing.T
	path    string
	st      store.Store
	as      *authserver.Server
	keys    *apikey.Manager
	ver     *apikey.Verifier
	srv     *httptest.Server
	clock   *clock
	pepper  []byte
	kek     []byte
	root    *testpki.CA
	ledger  tls.Certificate // a client certificate for ledgerID
	rogue   tls.Certificate // a certificate for another identity
	client  *http.Client    // no client certificate
	mclient *http.Client    // presents ledger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rampart.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st)
	e.path = path
	return e
}

// newEnvOn is newEnv on the store st, which it closes at the end.
func newEnvOn(t *testing.T, st store.Store) *env {
	t.Helper()
	e := &env{t: t, st: st, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	e.pepper, e.kek = make([]byte, 32), make([]byte, 32)
	rand.Read(e.pepper)
	rand.Read(e.kek)
	t.Cleanup(func() { e.st.Close() })
	e.root = testpki.NewRoot(t, "Payments Internal Root")
	issuing := e.root.NewIntermediate(t, "Payments Workload CA")
	serverLeaf := issuing.Issue(t, testpki.LeafOptions{})
	e.ledger = issuing.Issue(t, testpki.LeafOptions{URIs: []*url.URL{ledgerID}}).TLS()
	other, _ := url.Parse("spiffe://pay.internal/ns/prod/sa/reports")
	e.rogue = issuing.Issue(t, testpki.LeafOptions{URIs: []*url.URL{other}}).TLS()

	e.ver = &apikey.Verifier{Store: e.st.APIKeys(), Pepper: e.pepper, Now: e.clock.Now}
	t.Cleanup(func() { e.ver.Close() })
	e.keys = &apikey.Manager{Store: e.st.APIKeys(), Pepper: e.pepper, Now: e.clock.Now,
		Scopes: []string{"payment.read", "payment.write", "payment.withdraw", authserver.IntrospectScope}}
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverLeaf.TLS()},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    e.root.Pool(),
	}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.as = e.newServer(e.st, e.ver)
	e.srv.Config.Handler = e.as
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool()}}}
	e.mclient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool(), Certificates: []tls.Certificate{e.ledger}}}}
	return e
}

// onlyClient is the one method a Server asks of the client registry
// (authserver.Clients): every test of the Server runs with it, not with a
// whole apikey.Store.
type onlyClient struct{ s apikey.Store }

func (c onlyClient) Client(ctx context.Context, id string) (*apikey.Client, error) {
	return c.s.Client(ctx, id)
}

func (e *env) newServer(st store.Store, ver *apikey.Verifier) *authserver.Server {
	as := &authserver.Server{
		Issuer: e.srv.URL, Audience: audience, Keys: st.SigningKeys(), Revocations: st.RevokedTokens(),
		Clients: onlyClient{st.APIKeys()}, APIKeys: ver, KeyEncryptionKey: e.kek, Now: e.clock.Now,
		Scopes:    []string{"payment.read", "payment.write", "payment.withdraw"},
		MutualTLS: true, // the TLS server asks for client certificates
		Logger:    slog.New(slog.DiscardHandler),
	}
	if err := as.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return as
}

// client registers a client and makes it a key with scopes.
func (e *env) clientWithKey(id string, clientScopes, keyScopes []string) string {
	e.t.Helper()
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: id, Scopes: clientScopes}); err != nil {
		e.t.Fatal(err)
	}
	k, _, err := e.keys.Create(context.Background(), id, keyScopes, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	return k.String()
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) post(c *http.Client, path string, form url.Values, edit func(*http.Request)) response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if edit != nil {
		edit(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

func grant(kv ...string) url.Values {
	v := url.Values{"grant_type": {"client_credentials"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// claims returns the header and claims of a token, unverified: the tests
// that check signatures use a Validator.
func claims(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	var h, c map[string]any
	for i, dst := range []*map[string]any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	return h, c
}

func (e *env) validator() *token.Validator {
	return &token.Validator{Issuer: e.srv.URL, Audience: audience, JWKSURL: e.srv.URL + "/oauth2/jwks", Client: e.client, Now: e.clock.Now}
}

// RFC 6749 §2.3.1: client_secret_basic, with the credentials
// form-urlencoded before base64 (so "payments.app" may arrive as
// "payments%2Eapp"), and invalid_client with WWW-Authenticate otherwise.
func TestRFC6749_2_3_1_ClientSecretBasic(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("payments.app", []string{"payment.read"}, nil)
	r := e.post(e.client, "/oauth2/token", grant(), basic("payments.app", key))
	if r.status != 200 || r.body["access_token"] == nil {
		t.Fatalf("basic: %d %s", r.status, r.raw)
	}
	r = e.post(e.client, "/oauth2/token", grant(), func(q *http.Request) { q.SetBasicAuth("payments%2Eapp", key) })
	if r.status != 200 {
		t.Errorf("basic with a percent-encoded id: %d %s", r.status, r.raw)
	}
	for name, edit := range map[string]func(*http.Request){
		"wrong secret":   basic("payments.app", otherChar(key, 20)),
		"other client":   basic("other", key),
		"undecodable id": func(q *http.Request) { q.SetBasicAuth("%zz", key) },
		"not base64":     func(q *http.Request) { q.Header.Set("Authorization", "Basic !!!") },
		"no credentials": nil,
		"valid-looking": func(q *http.Request) {
			k, _ := apikey.Generate(apikey.Live)
			q.SetBasicAuth("payments.app", k.String())
		},
		"empty secret id": basic("payments.app", ""),
	} {
		r := e.post(e.client, "/oauth2/token", grant(), edit)
		if r.status != 401 || r.body["error"] != "invalid_client" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: %d %v %s, want 401 invalid_client with WWW-Authenticate: Basic", name, r.status, r.header, r.raw)
		}
	}
}

// RFC 6749 §2.3.1: client_secret_post; and §2.3: one method at a time.
func TestRFC6749_2_3_1_ClientSecretPost(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	if r := e.post(e.client, "/oauth2/token", grant("client_id", "shop", "client_secret", key), nil); r.status != 200 {
		t.Fatalf("post: %d %s", r.status, r.raw)
	}
	r := e.post(e.client, "/oauth2/token", grant("client_id", "shop", "client_secret", key), basic("shop", key))
	if r.status != 400 || r.body["error"] != "invalid_request" || !strings.Contains(r.raw2(), "one client authentication method") {
		t.Errorf("two methods: %d %s", r.status, r.raw)
	}
}

func (r response) raw2() string { return string(r.raw) }

// RFC 6749 §4.4: the client-credentials grant, scopes a subset of the
// key's, the key's scopes by default.
func TestRFC6749_4_4_ClientCredentialsGrant(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write", "payment.withdraw"}, []string{"payment.read", "payment.write"})
	auth := basic("shop", key)
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		err    string
		scope  string
	}{
		{"default scope is the key's", grant(), 200, "", "payment.read payment.write"},
		{"a subset", grant("scope", "payment.write"), 200, "", "payment.write"},
		{"beyond the key (the client has it)", grant("scope", "payment.read payment.withdraw"), 400, "invalid_scope", ""},
		{"unknown scope", grant("scope", "admin"), 400, "invalid_scope", ""},
		{"empty scope token", grant("scope", "payment.read  payment.write"), 400, "invalid_scope", ""},
		{"no grant type", url.Values{}, 400, "invalid_request", ""},
		{"authorization code", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "unsupported_grant_type", ""},
		{"password", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type", ""},
	} {
		r := e.post(e.client, "/oauth2/token", tc.form, auth)
		if r.status != tc.status || tc.err != "" && r.body["error"] != tc.err || tc.scope != "" && r.body["scope"] != tc.scope {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
}

// RFC 6749 §5.1: the successful response and its caching headers.
func TestRFC6749_5_1_SuccessfulResponse(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	r := e.post(e.client, "/oauth2/token", grant(), basic("shop", key))
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v", r.status, r.header)
	}
	if r.body["token_type"] != "Bearer" || r.body["expires_in"] != float64(900) || r.body["scope"] != "payment.read" {
		t.Errorf("body %s", r.raw)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Error("a refresh token was issued: RFC 6749 §4.4.3 says it should not")
	}
}

// RFC 6749 §5.2: error responses are JSON with error and
// error_description, 400 but for invalid_client (401).
func TestRFC6749_5_2_ErrorResponse(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	for _, tc := range []struct {
		name   string
		form   url.Values
		edit   func(*http.Request)
		status int
		err    string
	}{
		{"invalid_client", grant(), basic("shop", "rk_live_nope"), 401, "invalid_client"},
		{"invalid_scope", grant("scope", "payment.write"), basic("shop", key), 400, "invalid_scope"},
		{"unsupported_grant_type", url.Values{"grant_type": {"implicit"}}, basic("shop", key), 400, "unsupported_grant_type"},
		{"invalid_request: parameter twice (§3.2)", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, basic("shop", key), 400, "invalid_request"},
		{"invalid_request: parameters in the URL", grant(), func(q *http.Request) { basic("shop", key)(q); q.URL.RawQuery = "scope=payment.read" }, 400, "invalid_request"},
		{"invalid_request: not a form", grant(), func(q *http.Request) { basic("shop", key)(q); q.Header.Set("Content-Type", "application/json") }, 400, "invalid_request"},
	} {
		r := e.post(e.client, "/oauth2/token", tc.form, tc.edit)
		if r.status != tc.status || r.body["error"] != tc.err || r.body["error_description"] == "" ||
			r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %v %s", tc.name, r.status, r.header, r.raw)
		}
	}
	// Oversized bodies are refused, not read.
	big := grant("scope", strings.Repeat("a", 20<<10))
	if r := e.post(e.client, "/oauth2/token", big, basic("shop", key)); r.status != 400 {
		t.Errorf("20 KiB form: %d", r.status)
	}
}

// RFC 9068 §2.1 and §2.2: the token's header and claims.
func TestRFC9068_2_IssuedToken(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read", "payment.write"}, nil)
	r := e.post(e.client, "/oauth2/token", grant("scope", "payment.read"), basic("shop", key))
	tok, _ := r.body["access_token"].(string)
	h, c := claims(t, tok)
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] == "" {
		t.Errorf("header %v (§2.1: typ at+jwt)", h)
	}
	now := float64(e.clock.Now().Unix())
	if c["iss"] != e.srv.URL || c["sub"] != "shop" || c["client_id"] != "shop" || c["aud"] != audience ||
		c["iat"] != now || c["exp"] != now+900 || c["scope"] != "payment.read" || c["jti"] == "" || c["cnf"] != nil {
		t.Errorf("claims %v (§2.2)", c)
	}
	_, c2 := claims(t, e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string))
	if c2["jti"] == c["jti"] {
		t.Error("two tokens share a jti")
	}
	p, err := e.validator().Validate(context.Background(), tok, nil)
	if err != nil || p.ClientID != "shop" || !p.HasScope("payment.read") || p.HasScope("payment.write") {
		t.Errorf("Validate: %+v %v", p, err)
	}
}

// RFC 8705 §2.1: tls_client_auth with the client's registered URI SAN.
func TestRFC8705_2_1_TLSClientAuth(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "ledger", Scopes: []string{"payment.read", "payment.write"}, CertURI: ledgerID.String()}); err != nil {
		t.Fatal(err)
	}
	r := e.post(e.mclient, "/oauth2/token", grant("client_id", "ledger"), nil)
	if r.status != 200 || r.body["scope"] != "payment.read payment.write" {
		t.Fatalf("tls_client_auth: %d %s", r.status, r.raw)
	}
	rogue := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool(), Certificates: []tls.Certificate{e.rogue}}}}
	for name, c := range map[string]*http.Client{"another workload's certificate": rogue, "no certificate": e.client} {
		if r := e.post(c, "/oauth2/token", grant("client_id", "ledger"), nil); r.status != 401 || r.body["error"] != "invalid_client" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	// A certificate from a CA the server does not trust is not even
	// verified by TLS, so it cannot authenticate anyone.
	stranger := testpki.NewRoot(t, "Stranger").Issue(t, testpki.LeafOptions{URIs: []*url.URL{ledgerID}}).TLS()
	sc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool(),
		// Sent whatever CAs the server asks for.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }}}}
	if resp, err := sc.PostForm(e.srv.URL+"/oauth2/token", grant("client_id", "ledger")); err == nil {
		resp.Body.Close()
		t.Errorf("an untrusted client certificate got through the handshake: %d", resp.StatusCode)
	}
}

// RFC 8705 §2.1 with ClientCAs: a TLS server that verifies client
// certificates against a wider pool (rampart serve's also holds its
// internal mTLS CA) lets tls_client_auth accept only ClientCAs' chains. A
// certificate of the other root, for the registered URI, verified by TLS,
// does not authenticate the client.
func TestRFC8705_2_1_ClientCAs(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "ledger", Scopes: []string{"payment.read"}, CertURI: ledgerID.String()}); err != nil {
		t.Fatal(err)
	}
	internal := testpki.NewRoot(t, "Internal mTLS Root")
	e.srv.TLS.ClientCAs.AddCert(internal.Cert) // before any handshake
	e.as.ClientCAs = e.root.Pool()
	workload := internal.Issue(t, testpki.LeafOptions{URIs: []*url.URL{ledgerID}}).TLS()
	wc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool(), Certificates: []tls.Certificate{workload}}}}
	r := e.post(wc, "/oauth2/token", grant("client_id", "ledger"), nil)
	if r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("a certificate of the other root: %d %s", r.status, r.raw)
	}
	if r := e.post(e.mclient, "/oauth2/token", grant("client_id", "ledger"), nil); r.status != 200 {
		t.Errorf("the client's own certificate: %d %s", r.status, r.raw)
	}
	// Without ClientCAs, what TLS verified is enough (the default).
	e.as.ClientCAs = nil
	if r := e.post(wc, "/oauth2/token", grant("client_id", "ledger"), nil); r.status != 200 {
		t.Errorf("no ClientCAs: %d %s", r.status, r.raw)
	}
}

// RFC 8705 §3: a token issued over a connection with a client certificate
// is bound to it; a resource server refuses it without that certificate.
func TestRFC8705_3_CertificateBoundToken(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "ledger", Scopes: []string{"payment.read"}, CertURI: ledgerID.String()}); err != nil {
		t.Fatal(err)
	}
	tok := e.post(e.mclient, "/oauth2/token", grant("client_id", "ledger"), nil).body["access_token"].(string)
	_, c := claims(t, tok)
	sum := sha256.Sum256(e.ledger.Certificate[0])
	cnf, _ := c["cnf"].(map[string]any)
	if cnf["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("cnf = %v, want the x5t#S256 of the client certificate", c["cnf"])
	}
	v := e.validator()
	if _, err := v.Validate(context.Background(), tok, e.ledger.Leaf); err != nil {
		t.Errorf("with its certificate: %v", err)
	}
	if _, err := v.Validate(context.Background(), tok, nil); err == nil {
		t.Error("a bound token was accepted without its certificate")
	}
	if _, err := v.Validate(context.Background(), tok, e.rogue.Leaf); err == nil {
		t.Error("a bound token was accepted with another certificate")
	}
}

// RFC 7662 §2.2: introspection answers active with the token's claims, or
// only active false; callers must authenticate.
func TestRFC7662_2_2_Introspection(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	rs := e.clientWithKey("resource-server", []string{authserver.IntrospectScope}, nil)
	other := e.clientWithKey("other", []string{"payment.read"}, nil)
	tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	// §4: only protected resources (the scope says so) see other clients'
	// tokens; a client sees its own.
	if r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("other", other)); r.body["active"] != false || len(r.body) != 1 {
		t.Errorf("another client introspecting: %s, want only active false", r.raw)
	}
	if r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("shop", key)); r.body["active"] != true {
		t.Errorf("the token's own client introspecting: %s", r.raw)
	}
	r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("resource-server", rs))
	if r.status != 200 || r.body["active"] != true || r.body["client_id"] != "shop" || r.body["scope"] != "payment.read" ||
		r.body["token_type"] != "Bearer" || r.body["exp"] == nil || r.body["iss"] != e.srv.URL || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("active token: %d %s", r.status, r.raw)
	}
	for name, raw := range map[string]string{"garbage": "x.y.z", "tampered": tok[:len(tok)-4] + "AAAA"} {
		if r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {raw}}, basic("resource-server", rs)); r.status != 200 || len(r.body) != 1 || r.body["active"] != false {
			t.Errorf("%s: %d %s, want only {\"active\": false}", name, r.status, r.raw)
		}
	}
	e.clock.Add(16 * time.Minute)
	if r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("resource-server", rs)); r.body["active"] != false {
		t.Errorf("expired token: %s", r.raw)
	}
	if r := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, nil); r.status != 401 {
		t.Errorf("unauthenticated introspection: %d", r.status)
	}
}

// RFC 7009: a client revokes its own token; introspection then says
// inactive. Another client's token is answered 200 and left alone.
func TestRFC7009_Revocation(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	other := e.clientWithKey("other", []string{"payment.read"}, nil)
	rs := e.clientWithKey("resource-server", []string{authserver.IntrospectScope}, nil)
	tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	active := func() any {
		return e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("resource-server", rs)).body["active"]
	}
	if r := e.post(e.client, "/oauth2/revoke", url.Values{"token": {tok}}, basic("other", other)); r.status != 200 || active() != true {
		t.Errorf("revocation by another client: %d, active %v", r.status, active())
	}
	if r := e.post(e.client, "/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, basic("shop", key)); r.status != 200 {
		t.Errorf("revocation: %d %s", r.status, r.raw)
	}
	if active() != false {
		t.Error("a revoked token is still active")
	}
	if r := e.post(e.client, "/oauth2/revoke", url.Values{"token": {"garbage"}}, basic("shop", key)); r.status != 200 {
		t.Errorf("invalid token: %d (RFC 7009 §2.2: 200)", r.status)
	}
	// §2.1: a wrong hint extends the search (TestRFC7009_2_1_HintExtendsTheSearch).
	if r := e.post(e.client, "/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {"refresh_token"}}, basic("shop", key)); r.status != 200 {
		t.Errorf("refresh token hint: %d %s, want 200", r.status, r.raw)
	}
	v := e.validator()
	v.Revoked = e.st.RevokedTokens().TokenRevoked
	if _, err := v.Validate(context.Background(), tok, nil); err == nil {
		t.Error("a Validator checking revocations accepted the revoked token")
	}
}

// RFC 8414 §3: the metadata names this issuer and its endpoints.
func TestRFC8414_3_Metadata(t *testing.T) {
	e := newEnv(t)
	resp, err := e.client.Get(e.srv.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	// §3.3: the issuer must be identical to the one the metadata was
	// asked of.
	if m["issuer"] != e.srv.URL || m["token_endpoint"] != e.srv.URL+"/oauth2/token" || m["jwks_uri"] != e.srv.URL+"/oauth2/jwks" ||
		m["introspection_endpoint"] != e.srv.URL+"/oauth2/introspect" || m["revocation_endpoint"] != e.srv.URL+"/oauth2/revoke" ||
		m["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("metadata %v", m)
	}
	for _, field := range []string{"response_types_supported", "grant_types_supported", "token_endpoint_auth_methods_supported", "scopes_supported"} {
		if _, ok := m[field].([]any); !ok {
			t.Errorf("%s missing", field)
		}
	}
	if !strings.Contains(strings.Join(toStrings(m["token_endpoint_auth_methods_supported"]), " "), "tls_client_auth") {
		t.Error("tls_client_auth not advertised")
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// Failed client authentications are limited per address: past the
// limit, even the right secret waits, so guessing from there gains
// nothing. Per client, failures are throttled (429) but the right key
// still works: knowing a client's ID must not let anyone lock it out.
func TestBruteForceLimits(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	for i := range 10 {
		if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", "rk_live_guess")); r.status != 401 {
			t.Fatalf("failure %d: %d", i, r.status)
		}
	}
	r := e.post(e.client, "/oauth2/token", grant(), basic("shop", key))
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("right secret from the guessing address after 10 failures: %d %s, want 429", r.status, r.raw)
	}
	// From another address (a trusted proxy says so), the client's right
	// key works, and its wrong ones are throttled.
	e.as.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	from := func(addr string) func(*http.Request) {
		return func(q *http.Request) { q.Header.Set("X-Forwarded-For", addr) }
	}
	both := func(a, b func(*http.Request)) func(*http.Request) {
		return func(q *http.Request) { a(q); b(q) }
	}
	if r := e.post(e.client, "/oauth2/token", grant(), both(basic("shop", key), from("198.51.100.7"))); r.status != 200 {
		t.Errorf("the client's right key from elsewhere: %d %s, want 200", r.status, r.raw)
	}
	if r := e.post(e.client, "/oauth2/token", grant(), both(basic("shop", "rk_live_guess"), from("198.51.100.8"))); r.status != 429 {
		t.Errorf("a wrong key for the throttled client from elsewhere: %d, want 429", r.status)
	}
	e.clock.Add(time.Minute)
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)); r.status != 200 {
		t.Errorf("after a minute: %d", r.status)
	}
}

// A client that hangs up is no failed authentication: disconnections
// must not lock anyone out.
func TestCanceledRequestsAreNoFailures(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	unknown, _ := apikey.Generate(apikey.Live) // well formed: it gets to the store
	e.clock.Add(time.Second)                   // so that the generation is read again
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/oauth2/token", strings.NewReader(grant().Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = "127.0.0.1:40000" // the address the real requests come from
		basic("shop", unknown.String())(req)
		rec := httptest.NewRecorder()
		e.as.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("canceled request: %d %s, want 503", rec.Code, rec.Body)
		}
	}
	// With the right key, cached: the client lookup is what the
	// cancellation interrupts.
	e.post(e.client, "/oauth2/token", grant(), basic("shop", key))
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/oauth2/token", strings.NewReader(grant().Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = "127.0.0.1:40000"
		basic("shop", key)(req)
		e.as.ServeHTTP(httptest.NewRecorder(), req)
	}
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)); r.status != 200 {
		t.Errorf("after 40 canceled requests: %d %s", r.status, r.raw)
	}
}

// Signing-key rotation: the next key is in the JWKS before it signs; after
// rotation it signs, and the old one stays published for the longest token
// lifetime plus skew, then goes.
func TestSigningKeyRotation(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	jwks := func() map[string]bool {
		resp, err := e.client.Get(e.srv.URL + "/oauth2/jwks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		json.NewDecoder(resp.Body).Decode(&set)
		out := map[string]bool{}
		for _, k := range set.Keys {
			out[k.KeyID] = true
		}
		return out
	}
	kidOf := func() (string, string) {
		tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
		h, _ := claims(t, tok)
		return h["kid"].(string), tok
	}
	before := jwks()
	oldKid, oldTok := kidOf()
	if len(before) != 2 || !before[oldKid] {
		t.Fatalf("JWKS %v: want the current key %s and a next one", before, oldKid)
	}
	var next string
	for k := range before {
		if k != oldKid {
			next = k
		}
	}
	if err := authserver.RotateKeys(context.Background(), e.st.SigningKeys(), e.kek, "ES256", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(11 * time.Second) // instances reload keys every 10 s
	newKid, _ := kidOf()
	after := jwks()
	if newKid != next || !after[oldKid] || !after[newKid] || len(after) != 3 {
		t.Errorf("after rotation: signing with %s (want the former next %s), JWKS %v (want old, current, new next)", newKid, next, after)
	}
	v := e.validator()
	if _, err := v.Validate(context.Background(), oldTok, nil); err != nil {
		t.Errorf("a token signed before the rotation: %v", err)
	}
	e.clock.Add(authserver.RetiredKeyLife)
	if jwks()[oldKid] {
		t.Errorf("the retired key is still published after %v", authserver.RetiredKeyLife)
	}
}

// Signing keys are stored sealed: the server cannot use them with another
// master key.
func TestSigningKeysSealed(t *testing.T) {
	e := newEnv(t)
	wrong := make([]byte, 32)
	as := &authserver.Server{Issuer: e.srv.URL, Audience: audience, Keys: e.st.SigningKeys(), Revocations: e.st.RevokedTokens(),
		Clients: e.st.APIKeys(), APIKeys: e.ver, KeyEncryptionKey: wrong}
	if err := as.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Errorf("Start with the wrong key encryption key: %v", err)
	}
}

// RFC 8705 §2.1.2: a registered subject DN matches only a certificate
// whose subject is that DN, attribute for attribute and in order.
func TestRFC8705_2_1_2_SubjectDN(t *testing.T) {
	e := newEnv(t)
	rdn := func(pairs ...string) []byte {
		var seq pkix.RDNSequence
		for i := 0; i < len(pairs); i += 2 {
			oid := map[string]asn1.ObjectIdentifier{"CN": {2, 5, 4, 3}, "O": {2, 5, 4, 10}}[pairs[i]]
			seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: pairs[i+1]}})
		}
		der, err := asn1.Marshal(seq)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	// RFC 4514 writes the DN most specific first: O=Acme then CN=alice
	// in the certificate reads "CN=alice,O=Acme".
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "alice", Scopes: []string{"payment.withdraw"}, CertSubject: "CN=alice,O=Acme"}); err != nil {
		t.Fatal(err)
	}
	issuing := e.root.NewIntermediate(t, "Subjects CA")
	for _, tc := range []struct {
		name    string
		subject []byte
		want    int
	}{
		{"the DN", rdn("O", "Acme", "CN", "alice"), 200},
		{"same attributes, other order", rdn("CN", "alice", "O", "Acme"), 401},
		{"an extra CN before", rdn("O", "Acme", "CN", "mallory", "CN", "alice"), 401},
		{"another name", rdn("O", "Acme", "CN", "alicia"), 401},
	} {
		cert := issuing.Issue(t, testpki.LeafOptions{Subject: tc.subject, DNSNames: []string{"alice.test"}}).TLS()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.root.Pool(), Certificates: []tls.Certificate{cert}}}}
		if r := e.post(c, "/oauth2/token", grant("client_id", "alice"), nil); r.status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.raw, tc.want)
		}
	}
}

// No token outlives the key it was issued for.
func TestTokenNeverOutlivesItsKey(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "shop", Scopes: []string{"payment.read"}, TokenLifetime: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	k, _, err := e.keys.Create(context.Background(), "shop", nil, e.clock.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := e.post(e.client, "/oauth2/token", grant(), basic("shop", k.String()))
	if r.body["expires_in"] != float64(600) {
		t.Errorf("expires_in %v, want 600 (the key expires in 10 minutes)", r.body["expires_in"])
	}
}

// otherChar returns s with the character at i changed (to another one).
func otherChar(s string, i int) string {
	c := byte('x')
	if s[i] == c {
		c = 'y'
	}
	return s[:i] + string(c) + s[i+1:]
}
