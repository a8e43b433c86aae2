package token

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/internal/testing/testpki"
)

// Tokens an attacker would try, through the Middleware in front of a
// JWKS-backed Validator. A bad token is 401 invalid_token; a request that
// is malformed before any token is read is 400 invalid_request (RFC 6750
// §3.1 "repeats the same parameter ... or is otherwise malformed"). None
// gets a 500 or reaches the handler.
func TestHostileTokens(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	v := jwks.validator(clock)
	now := clock.Now()
	good := k.mint(t, claimsAt(now), nil)
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	pubDER, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubJWK, _ := json.Marshal(k.pub)

	ca := testpki.NewRoot(t, "clients")
	mine, theirs := ca.Issue(t, testpki.LeafOptions{}), ca.Issue(t, testpki.LeafOptions{})
	bound := k.mint(t, with(now, map[string]any{"cnf": map[string]any{"x5t#S256": thumbprint(mine.Cert)}}), nil)

	// Payload with more scope, the original signature.
	richer, _ := json.Marshal(with(now, map[string]any{"scope": "payment.read payment.write payment.withdraw"}))
	tamperedPayload := parts[0] + "." + b64(richer) + "." + parts[2]
	// Header with another typ, the original signature.
	hdr, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": k.kid, "typ": "at+jwt", "x": 1})
	tamperedHeader := b64(hdr) + "." + parts[1] + "." + parts[2]
	// A second signature appended to the compact form.
	other := newKey(t, jose.ES256)
	extraSig := good + "." + strings.Split(other.mint(t, claimsAt(now), nil), ".")[2]

	// The JWS JSON serialization, with a second signer.
	multi, err := jose.NewMultiSigner([]jose.SigningKey{
		{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: other.priv, KeyID: other.kid}},
	}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	claimsJSON, _ := json.Marshal(claimsAt(now))
	obj, err := multi.Sign(claimsJSON)
	if err != nil {
		t.Fatal(err)
	}
	jsonSerialized := obj.FullSerialize()

	withCert := func(c *testpki.Leaf) func(*http.Request) {
		return func(r *http.Request) {
			r.TLS = tlsState(c)
		}
	}
	for _, tc := range []struct {
		name   string
		header []string // Authorization header values
		modify func(*http.Request)
		status int
		code   ErrorCode
		desc   string
	}{
		{"alg none", []string{"Bearer " + unsigned(t, k.kid, claimsAt(now))}, nil, 401, InvalidToken, "not allowed"},
		{"alg none, no signature part", []string{"Bearer " + strings.TrimSuffix(unsigned(t, k.kid, claimsAt(now)), ".")}, nil, 401, InvalidToken, ""},
		{"HS256 with the public key (DER) as secret", []string{"Bearer " + sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, k.kid, claimsAt(now), nil)}, nil, 401, InvalidToken, "not allowed"},
		{"HS256 with the public key (PEM) as secret", []string{"Bearer " + sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM}, k.kid, claimsAt(now), nil)}, nil, 401, InvalidToken, "not allowed"},
		{"HS256 with the public JWK as secret", []string{"Bearer " + sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubJWK}, k.kid, claimsAt(now), nil)}, nil, 401, InvalidToken, "not allowed"},
		{"unknown kid", []string{"Bearer " + other.mint(t, claimsAt(now), nil)}, nil, 401, InvalidToken, "unknown signing key"},
		{"another key under the issuer's kid", []string{"Bearer " + other.mint(t, claimsAt(now), map[string]any{"kid": k.kid})}, nil, 401, InvalidToken, "bad signature"},
		{"expired", []string{"Bearer " + k.mint(t, with(now, map[string]any{"exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()}), nil)}, nil, 401, InvalidToken, "expired"},
		{"not yet valid", []string{"Bearer " + k.mint(t, with(now, map[string]any{"nbf": now.Add(time.Hour).Unix()}), nil)}, nil, 401, InvalidToken, "not yet valid"},
		{"wrong aud", []string{"Bearer " + k.mint(t, with(now, map[string]any{"aud": "https://other-api.example.com"}), nil)}, nil, 401, InvalidToken, "audience"},
		{"wrong iss", []string{"Bearer " + k.mint(t, with(now, map[string]any{"iss": "https://evil.example.com"}), nil)}, nil, 401, InvalidToken, "issuer"},
		{"typ JWT", []string{"Bearer " + k.mint(t, claimsAt(now), map[string]any{"typ": "JWT"})}, nil, 401, InvalidToken, "typ"},
		{"typ missing", []string{"Bearer " + k.mint(t, claimsAt(now), map[string]any{"typ": nil})}, nil, 401, InvalidToken, "typ"},
		{"tampered payload", []string{"Bearer " + tamperedPayload}, nil, 401, InvalidToken, "bad signature"},
		{"tampered header", []string{"Bearer " + tamperedHeader}, nil, 401, InvalidToken, "bad signature"},
		{"signature of another token", []string{"Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(k.mint(t, with(now, map[string]any{"jti": "x"}), nil), ".")[2]}, nil, 401, InvalidToken, "bad signature"},
		{"oversized", []string{"Bearer " + strings.Repeat("A", 8<<10+1)}, nil, 401, InvalidToken, "too large"},
		{"cnf-bound, no certificate", []string{"Bearer " + bound}, nil, 401, InvalidToken, "bound"},
		{"cnf-bound, another certificate", []string{"Bearer " + bound}, withCert(theirs), 401, InvalidToken, "bound"},
		{"extra signature appended", []string{"Bearer " + extraSig}, nil, 401, InvalidToken, "compact"},
		{"JSON serialization in a b64token", []string{"Bearer " + b64([]byte(jsonSerialized))}, nil, 401, InvalidToken, ""},
		{"JSON serialization", []string{"Bearer " + jsonSerialized}, nil, 400, InvalidRequest, ""},
		{"garbage", []string{"Bearer garbage"}, nil, 401, InvalidToken, "malformed"},
		{"garbage with dots", []string{"Bearer a.b.c"}, nil, 401, InvalidToken, "malformed"},
		{"garbage base64", []string{"Bearer " + b64([]byte("{}")) + "." + b64([]byte("{}")) + "." + b64([]byte("x"))}, nil, 401, InvalidToken, ""},
		{"empty token", []string{"Bearer "}, nil, 400, InvalidRequest, ""},
		{"empty header", []string{""}, nil, 401, "", ""},
		{"two Authorization headers", []string{"Bearer " + good, "Bearer " + good}, nil, 400, InvalidRequest, "more than one"},
		{"two Authorization headers, one bad", []string{"Bearer " + good, "Bearer " + tamperedPayload}, nil, 400, InvalidRequest, "more than one"},
		{"header injection", []string{"Bearer " + good + "\r\nX-Admin: 1"}, nil, 400, InvalidRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bearerRequest("")
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			if tc.modify != nil {
				tc.modify(r)
			}
			w := serve(v, r)
			if w.Code >= 500 || w.Code == 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var body struct {
				Error       ErrorCode `json:"error"`
				Description string    `json:"error_description"`
			}
			json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != tc.status || body.Error != tc.code || !strings.Contains(body.Description, tc.desc) {
				t.Fatalf("%d %s %q, want %d %s %q", w.Code, body.Error, body.Description, tc.status, tc.code, tc.desc)
			}
			if tc.code != "" && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="`+string(tc.code)+`"`) {
				t.Fatalf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("the good token and its bound twin pass", func(t *testing.T) {
		if w := serve(v, bearerRequest(good)); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		r := bearerRequest(bound)
		withCert(mine)(r)
		if w := serve(v, r); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("JSON serialization through Validate", func(t *testing.T) {
		p, err := v.Validate(context.Background(), jsonSerialized, nil)
		wantInvalid(t, p, err, "compact")
	})
}

func tlsState(c *testpki.Leaf) *tls.ConnectionState {
	return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{c.Cert}}
}

// An unknown kid makes the Validator refetch the JWKS (the issuer may
// have rotated), but at most once per RefetchInterval, however many such
// tokens arrive, for tokens issued before the keys were fetched (a key
// that signed them would have been published then).
func TestHostileUnknownKidRefetchRateLimited(t *testing.T) {
	clock := newClock()
	k, stranger := newKey(t, jose.ES256), newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	v := jwks.validator(clock)
	bad := stranger.mint(t, with(clock.Now(), map[string]any{"iat": clock.Now().Add(-time.Hour).Unix(), "exp": clock.Now().Add(time.Hour).Unix()}), nil)
	flood := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if w := serve(v, bearerRequest(bad)); w.Code != 401 {
					t.Errorf("status %d", w.Code)
				}
			})
		}
		wg.Wait()
	}
	for _, step := range []struct {
		advance time.Duration
		hits    int32
	}{
		{0, 1},                 // the first fetch; no refetch right after it
		{29 * time.Second, 1},  // still within RefetchInterval
		{time.Second, 2},       // 30 s after the first: one refetch
		{10 * time.Second, 2},  // within RefetchInterval of the refetch
		{20 * time.Second, 3},  // one more
		{5 * time.Minute, 4},   // only one however long the wait
		{10 * time.Minute, 5},  // the scheduled refresh, which has found nothing either
		{100 * time.Second, 6}, // one more for the kid
	} {
		clock.Add(step.advance)
		flood()
		if got := jwks.hits.Load(); got != step.hits {
			t.Fatalf("after %v more: %d JWKS fetches, want %d", step.advance, got, step.hits)
		}
	}
}

// Tokens with made-up kids and a fresh iat (anyone can write one) get
// the JWKS fetched at most every 5 s (freshRefetch), however many and
// however varied, and are answered 503 (the key may be new) or 401 (the
// keys were fetched after the token was issued), never let through.
func TestHostileFreshUnknownKidsRefetchBounded(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	jwks := newJWKS(t, k)
	v := jwks.validator(clock)
	if _, err := v.Validate(context.Background(), k.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatal(err)
	}
	for sec := range 60 {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				stranger := newKey(t, jose.ES256)
				if w := serve(v, bearerRequest(stranger.mint(t, claimsAt(clock.Now()), nil))); w.Code != 503 && w.Code != 401 {
					t.Errorf("a made-up kid: %d", w.Code)
				}
			})
		}
		wg.Wait()
		if want := int32(1 + sec/5); jwks.hits.Load() != want {
			t.Fatalf("after %d s: %d JWKS fetches, want %d (one every 5 s)", sec, jwks.hits.Load(), want)
		}
		clock.Add(time.Second)
	}
}

// A token larger than MaxTokenSize is refused before it is parsed: the
// JWKS is not even fetched. One byte less is fine.
func TestHostileOversized(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	const limit = 8 << 10
	for _, tc := range []struct {
		size int
		ok   bool
	}{{limit, true}, {limit + 1, false}} {
		jwks := newJWKS(t, k)
		v := jwks.validator(clock)
		tok := mintSized(t, k, clock.Now(), tc.size)
		w := serve(v, bearerRequest(tok))
		if tc.ok {
			if w.Code != 200 {
				t.Fatalf("%d-byte token: %d %s", tc.size, w.Code, w.Body)
			}
			continue
		}
		if w.Code != 401 || !strings.Contains(w.Body.String(), "too large") {
			t.Fatalf("%d-byte token: %d %s", tc.size, w.Code, w.Body)
		}
		if n := jwks.hits.Load(); n != 0 {
			t.Fatalf("%d-byte token made the Validator fetch its keys", tc.size)
		}
		p, err := v.Validate(context.Background(), tok, nil)
		wantInvalid(t, p, err, "too large")
	}
	t.Run("a megabyte of anything", func(t *testing.T) {
		v := staticValidator(clock, k)
		for _, junk := range []string{strings.Repeat("A", 1<<20), strings.Repeat("\x00", 1<<20), "{" + strings.Repeat(`"a":`, 1<<18)} {
			p, err := v.Validate(context.Background(), junk, nil)
			wantInvalid(t, p, err, "too large")
		}
	})
}

// mintSized mints a valid token of exactly size bytes, padding a claim
// and a header parameter.
func mintSized(t *testing.T, k *testKey, now time.Time, size int) string {
	t.Helper()
	base := len(k.mint(t, with(now, map[string]any{"pad": ""}), map[string]any{"pad": ""}))
	est := (size - base) * 3 / 4
	for hp := 0; hp < 4; hp++ {
		for n := max(est-16, 0); n < est+16; n++ {
			tok := k.mint(t, with(now, map[string]any{"pad": strings.Repeat("x", n)}), map[string]any{"pad": strings.Repeat("y", hp)})
			if len(tok) == size {
				return tok
			}
		}
	}
	t.Fatalf("cannot mint a %d-byte token", size)
	return ""
}

// fuzzKey is deterministic, so that every fuzzing worker verifies the
// seed tokens with the same key.
func fuzzKey(t testing.TB) *testKey {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return &testKey{priv: priv, alg: jose.EdDSA, kid: pub.KeyID, pub: pub}
}

// FuzzValidate mutates a valid token. Whatever the Validator accepts must
// be that token, byte for byte (an Ed25519 signature has one encoding,
// and base64url one canonical spelling: RFC 7515 §2), carrying exactly
// the claims that were signed; whatever it refuses is refused as
// invalid_token, never with a panic or a server error.
func FuzzValidate(f *testing.F) {
	clock := newClock()
	k := fuzzKey(f)
	good := k.mint(f, claimsAt(clock.Now()), nil)
	f.Add(good)
	f.Add(k.mint(f, claimsAt(clock.Now()), map[string]any{"typ": "JWT"}))
	f.Add(unsigned(f, k.kid, claimsAt(clock.Now())))
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("")
	for _, seg := range strings.Split(good, ".") {
		for _, spelling := range reencodings(seg)[1:] {
			f.Add(strings.Replace(good, seg, spelling, 1))
		}
	}
	want, err := staticValidator(clock, k).Validate(context.Background(), good, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v := staticValidator(clock, k)
		p, err := v.Validate(context.Background(), raw, nil)
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || e.Code != InvalidToken || e.Status != 401 {
				t.Fatalf("Validate(%q): %v", raw, err)
			}
			return
		}
		if raw != good {
			t.Fatalf("Validate(%q) accepted another spelling of %q", raw, good)
		}
		if p.Subject != want.Subject || p.ClientID != want.ClientID || p.TokenID != want.TokenID ||
			!slices.Equal(p.Scopes, want.Scopes) || !p.Expires.Equal(want.Expires) {
			t.Fatalf("Validate(%q) accepted a token with other claims: %+v", raw, p)
		}
	})
}

// E18: an attacker's made-up kid spends a refetch; the issuer then
// rotates twice, and signs with a key this Validator has never seen. The
// new token waits seconds, not RefetchInterval (30 s), and is told 503
// (retry: the token is fine) meanwhile, never 401 invalid_token (RFC 6750
// §3.1: "get a new token", which would fail the same way).
func TestJWKSDoubleRotationAfterAnAttackersRefetch(t *testing.T) {
	clock := newClock()
	k1, k2, k3, stranger := newKey(t, jose.ES256), newKey(t, jose.ES256), newKey(t, jose.ES256), newKey(t, jose.ES256)
	jwks := newJWKS(t, k1, k2) // current and next
	v := jwks.validator(clock)
	ctx := context.Background()
	if _, err := v.Validate(ctx, k1.mint(t, claimsAt(clock.Now()), nil), nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(5 * time.Second)
	if w := serve(v, bearerRequest(stranger.mint(t, claimsAt(clock.Now()), nil))); w.Code == 200 {
		t.Fatal("a made-up kid was accepted")
	}
	fetches := jwks.hits.Load()
	// rampart token rotate-keys, twice: k3 signs, k2 retired, k4 next.
	jwks.set(k2, k3, newKey(t, jose.ES256))
	clock.Add(2 * time.Second)
	tok := k3.mint(t, with(clock.Now(), map[string]any{"jti": "after-rotation"}), nil)
	w := serve(v, bearerRequest(tok))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("within 5 s of the attacker's refetch: %d %v %s, want 503 with Retry-After", w.Code, w.Header(), w.Body)
	}
	clock.Add(3 * time.Second) // 5 s after the attacker's refetch
	if w := serve(v, bearerRequest(tok)); w.Code != 200 {
		t.Errorf("5 s after the attacker's refetch: %d %s, want 200", w.Code, w.Body)
	}
	if got := jwks.hits.Load(); got != fetches+1 {
		t.Errorf("%d JWKS fetches for the new key, want 1", got-fetches)
	}
}
