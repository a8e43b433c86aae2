package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/auth"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/testing/testpki"
)

const (
	testIssuer   = "https://auth.example.com"
	testAudience = "https://api.example.com"
)

// t0 is the tests' "now", far from the real clock on purpose.
var t0 = time.Unix(1764072000, 0)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is an issuer signing key.
type testKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
	pub  jose.JSONWebKey // as published in the JWKS
}

func newKey(t testing.TB, alg jose.SignatureAlgorithm) *testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return &testKey{priv: priv, alg: alg, kid: pub.KeyID, pub: pub}
}

// claimsAt are the claims the Server would issue at now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "client-1",
		"aud":       testAudience,
		"client_id": "client-1",
		"iat":       now.Unix(),
		"exp":       now.Add(15 * time.Minute).Unix(),
		"jti":       "jti-1",
		"scope":     "payment.read payment.write",
	}
}

// mint signs claims (nil values removed) with header hdr on top of
// {"typ": "at+jwt", "kid": kid} (nil values removed).
func (k *testKey) mint(t testing.TB, claims map[string]any, hdr map[string]any) string {
	t.Helper()
	return sign(t, jose.SigningKey{Algorithm: k.alg, Key: k.priv}, k.kid, claims, hdr)
}

func sign(t testing.TB, sk jose.SigningKey, kid string, claims map[string]any, hdr map[string]any) string {
	t.Helper()
	h := map[string]any{"typ": "at+jwt", "kid": kid}
	for n, v := range hdr {
		h[n] = v
	}
	opts := &jose.SignerOptions{}
	for n, v := range h {
		if v != nil {
			opts.WithHeader(jose.HeaderKey(n), v)
		}
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{}
	for n, v := range claims {
		if v != nil {
			c[n] = v
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// with returns the default claims at now with changes (nil removes).
func with(now time.Time, changes map[string]any) map[string]any {
	c := claimsAt(now)
	for n, v := range changes {
		c[n] = v
	}
	return c
}

func staticValidator(clock *fakeClock, keys ...*testKey) *Validator {
	set := &jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.pub)
	}
	return &Validator{Issuer: testIssuer, Audience: testAudience, Keys: set, Now: clock.Now}
}

// jwksServer is an issuer's JWKS endpoint that counts its hits.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int32
	mu     sync.Mutex
	keys   []jose.JSONWebKey
	status int
	body   []byte
	gate   chan struct{}
}

func newJWKS(t testing.TB, keys ...*testKey) *jwksServer {
	s := &jwksServer{}
	s.set(keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		gate, status, body := s.gate, s.status, s.body
		if body == nil {
			body, _ = json.Marshal(jose.JSONWebKeySet{Keys: s.keys})
		}
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if status != 0 {
			http.Error(w, "down", status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...*testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = []jose.JSONWebKey{}
	for _, k := range keys {
		s.keys = append(s.keys, k.pub)
	}
}

func (s *jwksServer) setBody(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func (s *jwksServer) setGate(c chan struct{}) {
	s.mu.Lock()
	s.gate = c
	s.mu.Unlock()
}

func (s *jwksServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func (s *jwksServer) validator(clock *fakeClock) *Validator {
	return &Validator{Issuer: testIssuer, Audience: testAudience, JWKSURL: s.URL + "/jwks", Now: clock.Now}
}

// codeOf returns the RFC 6750 code of err, or fails.
func codeOf(t testing.TB, err error) (ErrorCode, string) {
	t.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Code, e.Description
}

func wantInvalid(t testing.TB, p *Principal, err error, desc string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted (%+v), want invalid_token %q", p, desc)
	}
	code, d := codeOf(t, err)
	if code != InvalidToken || (desc != "" && !strings.Contains(d, desc)) {
		t.Fatalf("got %s %q (%v), want invalid_token %q", code, d, err, desc)
	}
}

// serve runs r through v.Middleware in front of a handler that
// answers 200 with the caller's subject.
func serve(v *Validator, r *http.Request, wraps ...func(http.Handler) http.Handler) *httptest.ResponseRecorder {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := FromContext(r.Context())
		io.WriteString(w, "hello "+p.Subject)
	})
	for _, wrap := range slices.Backward(wraps) {
		h = wrap(h)
	}
	w := httptest.NewRecorder()
	v.Middleware(h).ServeHTTP(w, r)
	return w
}

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest("GET", "https://api.example.com/payments", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestValidateAccepts(t *testing.T) {
	clock := newClock()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			v := staticValidator(clock, k)
			p, err := v.Validate(context.Background(), k.mint(t, claimsAt(clock.Now()), nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := Principal{
				Subject: "client-1", ClientID: "client-1", Method: auth.Bearer, TokenID: "jti-1",
				Scopes: []string{"payment.read", "payment.write"}, Expires: t0.Add(15 * time.Minute),
			}
			if p.Subject != want.Subject || p.ClientID != want.ClientID || p.Method != want.Method ||
				p.TokenID != want.TokenID || !slices.Equal(p.Scopes, want.Scopes) || !p.Expires.Equal(want.Expires) {
				t.Fatalf("principal %+v, want %+v", p, want)
			}
		})
	}
}

// RFC 9068 §2.1: the header of a JWT access token.
func TestRFC9068_2_1_Header(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	claims := claimsAt(clock.Now())
	for _, tc := range []struct {
		name string
		hdr  map[string]any
		ok   bool
		desc string
	}{
		{"typ at+jwt", nil, true, ""},
		{"typ application/at+jwt", map[string]any{"typ": "application/at+jwt"}, true, ""},
		{"typ is case-insensitive", map[string]any{"typ": "AT+JWT"}, true, ""},
		{"media type is case-insensitive", map[string]any{"typ": "Application/At+Jwt"}, true, ""},
		{"typ JWT", map[string]any{"typ": "JWT"}, false, "typ"},
		{"typ missing", map[string]any{"typ": nil}, false, "typ"},
		{"typ with space", map[string]any{"typ": "at+jwt "}, false, "typ"},
		{"typ not a string", map[string]any{"typ": 1}, false, "typ"},
		{"typ of an ID token", map[string]any{"typ": "id_token+jwt"}, false, "typ"},
		{"kid missing", map[string]any{"kid": nil}, false, "kid"},
		{"kid unknown", map[string]any{"kid": "nope"}, false, "unknown signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), k.mint(t, claims, tc.hdr), nil)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, p, err, tc.desc)
		})
	}
	t.Run("alg outside the allow-list", func(t *testing.T) {
		ed := newKey(t, jose.EdDSA)
		v := staticValidator(clock, k, ed)
		v.Algorithms = []Algorithm{ES256}
		if _, err := v.Validate(context.Background(), ed.mint(t, claims, nil), nil); err == nil {
			t.Fatal("EdDSA token accepted with Algorithms [ES256]")
		}
	})
	t.Run("key published for another alg", func(t *testing.T) {
		// A kid names an ES256 key; the token claims EdDSA with that kid.
		ed := newKey(t, jose.EdDSA)
		tok := ed.mint(t, claims, map[string]any{"kid": k.kid})
		p, err := v.Validate(context.Background(), tok, nil)
		wantInvalid(t, p, err, "unknown signing key")
	})
}

// RFC 9068 §2.2: the claims of a JWT access token.
func TestRFC9068_2_2_Claims(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	now := clock.Now()
	for _, tc := range []struct {
		name    string
		changes map[string]any
		desc    string // "" means accepted
		scopes  []string
	}{
		{"all present", nil, "", []string{"payment.read", "payment.write"}},
		{"iss missing", map[string]any{"iss": nil}, "issuer", nil},
		{"exp missing", map[string]any{"exp": nil}, "exp", nil},
		{"aud missing", map[string]any{"aud": nil}, "audience", nil},
		{"sub missing", map[string]any{"sub": nil}, "sub", nil},
		{"sub empty", map[string]any{"sub": ""}, "sub", nil},
		{"client_id missing", map[string]any{"client_id": nil}, "client_id", nil},
		{"iat missing", map[string]any{"iat": nil}, "iat", nil},
		{"jti missing", map[string]any{"jti": nil}, "jti", nil},
		{"aud array", map[string]any{"aud": []string{"https://other.example.com", testAudience}}, "", []string{"payment.read", "payment.write"}},
		{"aud not a string", map[string]any{"aud": 7}, "malformed claims", nil},
		{"exp not a number", map[string]any{"exp": "tomorrow"}, "malformed claims", nil},
		{"scope empty", map[string]any{"scope": ""}, "", nil},
		{"scope missing", map[string]any{"scope": nil}, "", nil},
		{"scope single", map[string]any{"scope": "payment.withdraw"}, "", []string{"payment.withdraw"}},
		{"scope array", map[string]any{"scope": []string{"payment.read"}}, "malformed claims", nil},
		{"scope double space", map[string]any{"scope": "payment.read  payment.write"}, "malformed scope", nil},
		{"scope leading space", map[string]any{"scope": " payment.read"}, "malformed scope", nil},
		{"scope trailing space", map[string]any{"scope": "payment.read "}, "malformed scope", nil},
		{"scope with quote", map[string]any{"scope": `payment."read`}, "malformed scope", nil},
		{"scope with tab", map[string]any{"scope": "payment.read\tpayment.write"}, "malformed scope", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), k.mint(t, with(now, tc.changes), nil), nil)
			if tc.desc != "" {
				wantInvalid(t, p, err, tc.desc)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Scopes, tc.scopes) {
				t.Fatalf("scopes %q, want %q", p.Scopes, tc.scopes)
			}
		})
	}
}

// RFC 9068 §4: each step of validating a JWT access token.
func TestRFC9068_4_Validation(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	now := clock.Now()
	ctx := context.Background()
	check := func(t *testing.T, tok string, desc string) {
		t.Helper()
		p, err := v.Validate(ctx, tok, nil)
		if desc == "" {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		wantInvalid(t, p, err, desc)
	}

	t.Run("1 typ is at+jwt", func(t *testing.T) {
		check(t, k.mint(t, claimsAt(now), map[string]any{"typ": "JWT"}), "typ")
	})
	t.Run("2 encrypted tokens are not supported", func(t *testing.T) {
		// A JWE compact serialization has five parts.
		check(t, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "compact")
	})
	t.Run("3 iss matches exactly", func(t *testing.T) {
		check(t, k.mint(t, with(now, map[string]any{"iss": testIssuer + "/"}), nil), "wrong issuer")
		check(t, k.mint(t, with(now, map[string]any{"iss": "https://AUTH.example.com"}), nil), "wrong issuer")
		check(t, k.mint(t, with(now, map[string]any{"iss": "https://evil.example.com"}), nil), "wrong issuer")
	})
	t.Run("4 aud contains this resource", func(t *testing.T) {
		check(t, k.mint(t, with(now, map[string]any{"aud": "https://other.example.com"}), nil), "wrong audience")
		check(t, k.mint(t, with(now, map[string]any{"aud": []string{}}), nil), "wrong audience")
		check(t, k.mint(t, with(now, map[string]any{"aud": []string{"https://a.example.com", testAudience}}), nil), "")
	})
	t.Run("5 signature with an allowed alg and the issuer's key", func(t *testing.T) {
		other := newKey(t, jose.ES256)
		// Another key claiming the issuer's kid.
		check(t, other.mint(t, claimsAt(now), map[string]any{"kid": k.kid}), "bad signature")
		check(t, unsigned(t, k.kid, claimsAt(now)), "not allowed")
	})
	t.Run("6 now before exp, with leeway", func(t *testing.T) {
		exp := now.Add(-20 * time.Second).Unix() // within the 30 s leeway
		check(t, k.mint(t, with(now, map[string]any{"exp": exp, "iat": now.Add(-time.Hour).Unix()}), nil), "")
		exp = now.Add(-31 * time.Second).Unix()
		check(t, k.mint(t, with(now, map[string]any{"exp": exp, "iat": now.Add(-time.Hour).Unix()}), nil), "expired")
		check(t, k.mint(t, with(now, map[string]any{"nbf": now.Add(20 * time.Second).Unix()}), nil), "")
		check(t, k.mint(t, with(now, map[string]any{"nbf": now.Add(time.Minute).Unix()}), nil), "not yet valid")
		check(t, k.mint(t, with(now, map[string]any{"iat": now.Add(time.Minute).Unix()}), nil), "future")
	})
	t.Run("7 errors as RFC 6750 §3.1", func(t *testing.T) {
		tok := k.mint(t, with(now, map[string]any{"aud": "https://other.example.com"}), nil)
		w := serve(v, bearerRequest(tok))
		if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("leeway is configurable", func(t *testing.T) {
		v := staticValidator(clock, k)
		v.Leeway = time.Second
		tok := k.mint(t, with(now, map[string]any{"exp": now.Add(-2 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}), nil)
		p, err := v.Validate(ctx, tok, nil)
		wantInvalid(t, p, err, "expired")
	})
}

// unsigned is an unsigned token (alg none), which go-jose will not make.
func unsigned(t testing.TB, kid string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

func thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// RFC 8705 §3: a token bound to a client certificate works only over a
// connection authenticated with that certificate.
func TestRFC8705_3_CertificateBoundToken(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	ca := testpki.NewRoot(t, "clients")
	mine, theirs := ca.Issue(t, testpki.LeafOptions{}), ca.Issue(t, testpki.LeafOptions{})
	bound := k.mint(t, with(clock.Now(), map[string]any{"cnf": map[string]any{"x5t#S256": thumbprint(mine.Cert)}}), nil)
	ctx := context.Background()

	t.Run("Validate", func(t *testing.T) {
		v := staticValidator(clock, k)
		for round := range 2 { // uncached, then cached
			if _, err := v.Validate(ctx, bound, mine.Cert); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			p, err := v.Validate(ctx, bound, nil)
			wantInvalid(t, p, err, "none was presented")
			p, err = v.Validate(ctx, bound, theirs.Cert)
			wantInvalid(t, p, err, "another client certificate")
		}
	})
	t.Run("unbound token works with or without a certificate", func(t *testing.T) {
		v := staticValidator(clock, k)
		tok := k.mint(t, claimsAt(clock.Now()), nil)
		for _, c := range []*x509.Certificate{nil, mine.Cert} {
			if _, err := v.Validate(ctx, tok, c); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("other confirmation methods are refused", func(t *testing.T) {
		v := staticValidator(clock, k)
		for _, cnf := range []any{
			map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
			map[string]any{},
			map[string]any{"x5t#S256": "not base64!"},
			map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString([]byte("short"))},
			map[string]any{"x5t#S256": 42},
			"x5t",
		} {
			tok := k.mint(t, with(clock.Now(), map[string]any{"cnf": cnf}), nil)
			p, err := v.Validate(ctx, tok, mine.Cert)
			wantInvalid(t, p, err, "")
		}
	})
	t.Run("over mutual TLS", func(t *testing.T) {
		v := staticValidator(clock, k)
		srv := httptest.NewUnstartedServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		})))
		srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		srv.StartTLS()
		defer srv.Close()
		for _, tc := range []struct {
			name string
			cert *testpki.Leaf
			want int
		}{
			{"its certificate", mine, 200},
			{"another certificate", theirs, 401},
			{"no certificate", nil, 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := srv.Client()
				tr := c.Transport.(*http.Transport).Clone()
				if tc.cert != nil {
					tr.TLSClientConfig.Certificates = []tls.Certificate{tc.cert.TLS()}
				}
				c = &http.Client{Transport: tr}
				req, _ := http.NewRequest("GET", srv.URL, nil)
				req.Header.Set("Authorization", "Bearer "+bound)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
				}
				if tc.want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
			})
		}
	})
}

func TestValidatorConfig(t *testing.T) {
	k := newKey(t, jose.ES256)
	clock := newClock()
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.pub}}
	for _, tc := range []struct {
		name string
		v    *Validator
		msg  string
	}{
		{"no issuer", &Validator{Audience: testAudience, Keys: keys}, "Issuer"},
		{"no audience", &Validator{Issuer: testIssuer, Keys: keys}, "Audience"},
		{"no keys", &Validator{Issuer: testIssuer, Audience: testAudience}, "JWKSURL or Keys"},
		{"both key sources", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, JWKSURL: "https://auth.example.com/jwks"}, "not both"},
		{"none", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"ES256", "none"}}, "never accepted"},
		{"NONE", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"NONE"}}, "never accepted"},
		{"HS256", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"HS256"}}, "never accepted"},
		{"hs512", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"hs512"}}, "never accepted"},
		{"unknown alg", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"ES257"}}, "unsupported"},
		{"http JWKS", &Validator{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://auth.example.com/jwks"}, "https"},
		{"ftp JWKS", &Validator{Issuer: testIssuer, Audience: testAudience, JWKSURL: "ftp://127.0.0.1/jwks"}, "https"},
		{"negative leeway", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Leeway: -time.Second}, "negative"},
		{"only private keys", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.priv, KeyID: "x", Algorithm: "ES256"}}}}, "no public"},
		{"keys for another alg", &Validator{Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []Algorithm{"EdDSA"}}, "no public"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			v.Now = clock.Now
			if err := v.Check(); err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "token: ") {
				t.Fatalf("Check: %v, want an error about %q", err, tc.msg)
			}
			for range 2 { // the first use and every one after
				_, err := v.Validate(context.Background(), k.mint(t, claimsAt(clock.Now()), nil), nil)
				if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "token: ") {
					t.Fatalf("error %v, want one about %q", err, tc.msg)
				}
				if _, ok := errors.AsType[*Error](err); ok {
					t.Fatalf("configuration error %v is an *Error, as if the client were at fault", err)
				}
			}
			w := serve(v, bearerRequest(k.mint(t, claimsAt(clock.Now()), nil)))
			if w.Code != 500 {
				t.Fatalf("misconfigured Validator answered %d, want 500", w.Code)
			}
			if strings.Contains(w.Body.String(), tc.msg) {
				t.Fatalf("configuration detail sent to the client: %s", w.Body)
			}
		})
	}
	t.Run("loopback http JWKS is allowed", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:1/jwks", "http://[::1]:1/jwks", "http://localhost:1/jwks", "https://auth.example.com/jwks"} {
			if err := checkJWKSURL(u); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	})
}

// Check fetches nothing and logs nothing: a caller can check a
// configuration before it starts, without touching the issuer.
func TestValidatorCheckHasNoSideEffects(t *testing.T) {
	k := newKey(t, jose.ES256)
	clock := newClock()
	jwks := newJWKS(t, k)
	var logs strings.Builder
	v := jwks.validator(clock)
	v.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for range 2 {
		if err := v.Check(); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	if n := jwks.hits.Load(); n != 0 {
		t.Errorf("Check fetched the JWKS %d times", n)
	}
	if _, err := v.Validate(context.Background(), k.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatalf("Validate after Check: %v", err)
	}
	bad := &Validator{Issuer: testIssuer, Audience: testAudience, Logger: v.Logger}
	if err := bad.Check(); err == nil {
		t.Fatal("Check without a key source: no error")
	}
	if logs.Len() != 0 {
		t.Errorf("Check logged: %s", logs.String())
	}
	if _, err := bad.Validate(context.Background(), "x", nil); err == nil || !strings.Contains(logs.String(), "misconfigured") {
		t.Errorf("Validate: %v, log %q; want the misconfiguration logged once it is used", err, logs.String())
	}
}

func TestJWKSKeyRotation(t *testing.T) {
	clock := newClock()
	old, next := newKey(t, jose.ES256), newKey(t, jose.EdDSA)
	jwks := newJWKS(t, old)
	v := jwks.validator(clock)
	ctx := context.Background()
	if _, err := v.Validate(ctx, old.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatal(err)
	}
	// The issuer publishes a new key and signs with it at once.
	jwks.set(old, next)
	clock.Add(30 * time.Second)
	if _, err := v.Validate(ctx, next.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if got := jwks.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (first use, one refetch)", got)
	}
	// Both keys work now, without more fetches.
	for _, k := range []*testKey{old, next} {
		tok := k.mint(t, with(clock.Now(), map[string]any{"jti": "another"}), nil)
		if _, err := v.Validate(ctx, tok, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := jwks.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
}

func TestJWKSKeyRemoved(t *testing.T) {
	clock := newClock()
	old, next := newKey(t, jose.ES256), newKey(t, jose.ES256)
	jwks := newJWKS(t, old, next)
	v := jwks.validator(clock)
	ctx := context.Background()
	tok := old.mint(t, with(clock.Now(), map[string]any{"exp": clock.Now().Add(time.Hour).Unix()}), nil)
	if _, err := v.Validate(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	// The issuer withdraws the old key (compromised, say).
	jwks.set(next)
	clock.Add(10 * time.Minute) // JWKSRefresh
	if _, err := v.Validate(ctx, next.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatal(err)
	}
	if got := jwks.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
	// The old key's token was cached; it must fail all the same.
	p, err := v.Validate(ctx, tok, nil)
	wantInvalid(t, p, err, "unknown signing key")

	t.Run("every key withdrawn", func(t *testing.T) {
		jwks.set()
		clock.Add(10 * time.Minute)
		p, err := v.Validate(ctx, next.mint(t, claimsAt(clock.Now()), nil), nil)
		wantInvalid(t, p, err, "unknown signing key")
	})
}

func TestJWKSFetchFailure(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	jwks.fail(http.StatusBadGateway)
	v := jwks.validator(clock)
	tok := k.mint(t, with(clock.Now(), map[string]any{"exp": clock.Now().Add(time.Hour).Unix()}), nil)

	w := serve(v, bearerRequest(tok))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("JWKS down: %d %v", w.Code, w.Header())
	}
	if !strings.Contains(w.Body.String(), "temporarily_unavailable") {
		t.Fatalf("body %s", w.Body)
	}
	// Within RefetchInterval, no new fetch: the issuer is not hammered.
	for range 10 {
		if w := serve(v, bearerRequest(tok)); w.Code != 503 {
			t.Fatalf("%d", w.Code)
		}
	}
	if got := jwks.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times while down, want 1", got)
	}
	jwks.fail(0)
	clock.Add(30 * time.Second)
	if w := serve(v, bearerRequest(tok)); w.Code != 200 {
		t.Fatalf("after recovery: %d %s", w.Code, w.Body)
	}

	t.Run("stale keys are used for one more JWKSRefresh", func(t *testing.T) {
		jwks.fail(http.StatusInternalServerError)
		clock.Add(11 * time.Minute) // refresh due, fails
		tok := k.mint(t, with(clock.Now(), map[string]any{"jti": "stale-1"}), nil)
		if w := serve(v, bearerRequest(tok)); w.Code != 200 {
			t.Fatalf("stale keys refused: %d %s", w.Code, w.Body)
		}
		clock.Add(10 * time.Minute) // 21 min after the last good fetch
		tok = k.mint(t, with(clock.Now(), map[string]any{"jti": "stale-2"}), nil)
		if w := serve(v, bearerRequest(tok)); w.Code != 503 {
			t.Fatalf("keys older than 2×JWKSRefresh used: %d %s", w.Code, w.Body)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		v := &Validator{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://127.0.0.1:1/jwks", Now: clock.Now}
		w := serve(v, bearerRequest(tok))
		if w.Code != 503 {
			t.Fatalf("%d", w.Code)
		}
	})
}

func TestJWKSContent(t *testing.T) {
	clock := newClock()
	good := newKey(t, jose.ES256)
	ctx := context.Background()
	goodJSON, _ := json.Marshal(good.pub)
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"alone", `{"keys":[` + string(goodJSON) + `]}`, true},
		{"next to an unknown key type", `{"keys":[{"kty":"PQC","kid":"x"},` + string(goodJSON) + `]}`, true},
		{"next to a symmetric key", `{"keys":[{"kty":"oct","kid":"` + good.kid + `","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},` + string(goodJSON) + `]}`, true},
		{"as an encryption key", strings.Replace(`{"keys":[`+string(goodJSON)+`]}`, `"use":"sig"`, `"use":"enc"`, 1), false},
		{"published for RS256", strings.Replace(`{"keys":[`+string(goodJSON)+`]}`, `"alg":"ES256"`, `"alg":"RS256"`, 1), false},
		{"not JSON", `<html>`, false},
		{"no keys member", `{}`, false},
		{"too large", `{"keys":[` + string(goodJSON) + `],"pad":"` + strings.Repeat("x", 1<<20) + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwks := newJWKS(t)
			jwks.setBody([]byte(tc.body))
			v := jwks.validator(clock)
			p, err := v.Validate(ctx, good.mint(t, claimsAt(clock.Now()), nil), nil)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v", p)
			}
			if e, ok := errors.AsType[*Error](err); !ok || (e.Status != 401 && e.Status != 503) {
				t.Fatalf("error %v", err)
			}
		})
	}
	t.Run("private key in the JWKS is not used", func(t *testing.T) {
		priv := jose.JSONWebKey{Key: good.priv, KeyID: good.kid, Algorithm: "ES256", Use: "sig"}
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv}})
		jwks := newJWKS(t)
		jwks.setBody(b)
		p, err := jwks.validator(clock).Validate(ctx, good.mint(t, claimsAt(clock.Now()), nil), nil)
		wantInvalid(t, p, err, "unknown signing key")
	})
}

// Concurrent first requests share one fetch.
func TestJWKSSharedFetch(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	gate := make(chan struct{})
	jwks.setGate(gate)
	v := jwks.validator(clock)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		tok := k.mint(t, with(clock.Now(), map[string]any{"jti": "c" + string(rune('a'+i))}), nil)
		wg.Go(func() {
			_, err := v.Validate(context.Background(), tok, nil)
			errs <- err
		})
	}
	for jwks.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others queue behind it
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := jwks.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

// A request that gives up while the JWKS is slow gets its answer at once,
// and the fetch still completes for the others.
func TestJWKSFetchOutlivesCanceledRequest(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	gate := make(chan struct{})
	jwks.setGate(gate)
	v := jwks.validator(clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := v.Validate(ctx, k.mint(t, claimsAt(clock.Now()), nil), nil)
		done <- err
	}()
	for jwks.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if e, ok := errors.AsType[*Error](<-done); !ok || e.Status != 503 {
		t.Fatalf("canceled request: %v", e)
	}
	close(gate)
	tok := k.mint(t, with(clock.Now(), map[string]any{"jti": "second"}), nil)
	if _, err := v.Validate(context.Background(), tok, nil); err != nil {
		t.Fatal(err)
	}
	if got := jwks.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

func TestCacheExpiry(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	ctx := context.Background()
	tok := k.mint(t, claimsAt(clock.Now()), nil)
	if _, err := v.Validate(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(15*time.Minute + 30*time.Second) // exp + leeway: still good
	if _, err := v.Validate(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	p, err := v.Validate(ctx, tok, nil)
	wantInvalid(t, p, err, "expired")
	if n := len(v.cache.m); n != 0 {
		t.Fatalf("expired token still cached (%d entries)", n)
	}
}

func TestCacheRevoked(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	var revoked atomic.Bool
	var calls atomic.Int32
	var storeErr atomic.Pointer[error]
	v.Revoked = func(ctx context.Context, ref TokenRef) (bool, error) {
		calls.Add(1)
		// What a revocation store needs: jti, client and iat.
		if want := (TokenRef{JTI: "jti-1", ClientID: "client-1", IssuedAt: t0, Expires: t0.Add(15 * time.Minute)}); ref != want {
			t.Errorf("Revoked(%+v), want %+v", ref, want)
		}
		if p := storeErr.Load(); p != nil {
			return false, *p
		}
		return revoked.Load(), nil
	}
	ctx := context.Background()
	tok := k.mint(t, claimsAt(clock.Now()), nil)
	for range 3 {
		if _, err := v.Validate(ctx, tok, nil); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("Revoked called %d times for 3 requests", calls.Load())
	}
	revoked.Store(true)
	p, err := v.Validate(ctx, tok, nil)
	wantInvalid(t, p, err, "revoked")

	down := errors.New("store down")
	storeErr.Store(&down)
	_, err = v.Validate(ctx, tok, nil)
	if e, ok := errors.AsType[*Error](err); !ok || e.Status != 503 || !errors.Is(err, down) {
		t.Fatalf("Revoked failing: %v", err)
	}
	if w := serve(v, bearerRequest(tok)); w.Code != 503 || strings.Contains(w.Body.String(), "store down") {
		t.Fatalf("Revoked failing: %d %s", w.Code, w.Body)
	}
}

func TestCacheBounded(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	v.CacheSize = 3
	ctx := context.Background()
	var toks []string
	for i := range 10 {
		tok := k.mint(t, with(clock.Now(), map[string]any{"jti": "b" + string(rune('a'+i))}), nil)
		toks = append(toks, tok)
		if _, err := v.Validate(ctx, tok, nil); err != nil {
			t.Fatal(err)
		}
		if n := len(v.cache.m); n > 3 {
			t.Fatalf("cache holds %d entries, bound 3", n)
		}
	}
	// Evicted tokens are still valid, only checked afresh.
	for _, tok := range toks {
		if _, err := v.Validate(ctx, tok, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("disabled", func(t *testing.T) {
		v := staticValidator(clock, k)
		v.CacheSize = -1
		for range 2 {
			if _, err := v.Validate(ctx, toks[0], nil); err != nil {
				t.Fatal(err)
			}
		}
		if v.cache != nil {
			t.Fatal("cache in use with CacheSize -1")
		}
	})
}

// The Principal handed out is the caller's to keep; changing it does not
// change what the next request with the same token gets.
func TestCachedPrincipalIsACopy(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	tok := k.mint(t, with(clock.Now(), map[string]any{"scope": "payment.read"}), nil)
	p, err := v.Validate(context.Background(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Subject = "someone else"
	p.Scopes = append(p.Scopes, "payment.withdraw")
	p2, err := v.Validate(context.Background(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Subject != "client-1" || !slices.Equal(p2.Scopes, []string{"payment.read"}) {
		t.Fatalf("cached principal changed: %+v", p2)
	}
}

func TestKeyFits(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048 := testpki.NewKey(t, testpki.RSA2048).Public()
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name string
		key  jose.JSONWebKey
		alg  jose.SignatureAlgorithm
		want bool
	}{
		{"P-256 ES256", jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES256, true},
		{"P-256 ES384", jose.JSONWebKey{Key: &p256.PublicKey}, jose.ES384, false},
		{"P-384 ES384", jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES384, true},
		{"P-384 ES256", jose.JSONWebKey{Key: &p384.PublicKey}, jose.ES256, false},
		{"Ed25519 EdDSA", jose.JSONWebKey{Key: edPub}, jose.EdDSA, true},
		{"Ed25519 ES256", jose.JSONWebKey{Key: edPub}, jose.ES256, false},
		{"P-256 EdDSA", jose.JSONWebKey{Key: &p256.PublicKey}, jose.EdDSA, false},
		{"alg of the key differs", jose.JSONWebKey{Key: &p256.PublicKey, Algorithm: "ES384"}, jose.ES256, false},
		{"alg of the key agrees", jose.JSONWebKey{Key: &p256.PublicKey, Algorithm: "ES256"}, jose.ES256, true},
		{"RSA-2048 PS256", jose.JSONWebKey{Key: rsa2048}, jose.PS256, true},
		{"RSA-2048 ES256", jose.JSONWebKey{Key: rsa2048}, jose.ES256, false},
		{"RSA-1024 RS256", jose.JSONWebKey{Key: &rsa1024.PublicKey}, jose.RS256, false},
		{"private key", jose.JSONWebKey{Key: p256}, jose.ES256, false},
		{"symmetric key", jose.JSONWebKey{Key: []byte("secret")}, jose.HS256, false},
	} {
		if got := keyFits(&tc.key, tc.alg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
