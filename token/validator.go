package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/token/internal/jws"
)

// Validator checks access tokens (RFC 9068) for a resource server. Set
// the fields, then share one *Validator between goroutines; after first
// use the fields must not change and the Validator must not be copied.
// Issuer, Audience and one of JWKSURL and Keys are required; every other
// zero value is a safe default.
//
// A configuration error (a missing field, a forbidden algorithm) is
// reported by [Validator.Check], so that a caller can refuse to start; it
// is also returned by the first [Validator.Validate] and every one after,
// and makes [Validator.Middleware] answer 500: it is the one 500 there
// is, and no client input causes it.
//
// A Validator starts nothing and needs no Start or Close: a JWKS fetch,
// when a request needs one, is made by a goroutine of its own that the
// requests needing it wait for (each only as long as its context allows),
// and that ends with the fetch, within the Client's timeout (10 s if it
// has none). An idle Validator holds no goroutine.
type Validator struct {
	// Issuer must equal the iss claim exactly (RFC 9068 §4 step 3).
	// Required.
	Issuer string
	// Audience, this resource server's identifier, must be one of the
	// aud claim's values (RFC 9068 §4 step 4): a token minted for
	// another API must not work here. Required.
	Audience string

	// JWKSURL is where the issuer publishes its keys. It must be https,
	// or http to a loopback address (tests, a sidecar): keys fetched in
	// the clear can be replaced by anyone on the path. Empty: Keys must
	// be set.
	JWKSURL string
	// Keys are static verification keys, for tests and offline use,
	// instead of JWKSURL. Only public keys are used. Nil: JWKSURL must be
	// set.
	Keys *jose.JSONWebKeySet
	// Client fetches the JWKS; nil means a client with a 10 s timeout
	// that follows redirects only to URLs allowed for JWKSURL. A fetch
	// with a Client without a Timeout is abandoned after 10 s. Whoever
	// controls the JWKS controls every token, so the client should be
	// pinned to the issuer (see
	// [github.com/rampartsec/rampart/pin.Verifier.Client]).
	Client *http.Client

	// Algorithms is the allow-list of signature algorithms; nil means
	// ES256 and EdDSA, what authserver.Server signs with. "none" and
	// HS256/384/512 are refused even if listed (a configuration
	// error): "none" is no signature, and HMAC with a public key as the
	// secret is the classic forgery.
	Algorithms []Algorithm
	// Leeway is the clock skew allowed for exp, nbf and iat; 0 means
	// 30 s.
	Leeway time.Duration
	// MaxTokenSize bounds the token in bytes; 0 means 8 KiB. Larger
	// tokens are refused before any parsing, so that parsing cost is
	// bounded for unauthenticated input.
	MaxTokenSize int
	// CacheSize is how many validated tokens are kept, each until it
	// expires, so that a client reusing its token costs a hash and a
	// lookup, not a signature check. 0 means 10,000; negative disables
	// the cache. When full, a random entry (preferably an expired one)
	// is evicted.
	CacheSize int
	// JWKSRefresh is how long fetched keys are trusted before they are
	// fetched again, so that a key the issuer withdraws stops working
	// here; 0 means 10 minutes. If the refetch fails, the keys already
	// known keep working for one more JWKSRefresh, so that a short JWKS
	// outage is not an API outage; after that, requests get 503.
	JWKSRefresh time.Duration
	// RefetchInterval is the minimum time between two JWKS fetches; 0
	// means 30 s. A token with an unknown kid triggers a refetch (the
	// issuer may have rotated keys), so without this limit anyone could
	// make this server hammer the issuer. A token issued after the keys
	// were last fetched (by its iat, give or take Leeway) may be signed
	// by a key published since: for it the wait is at most 5 s, and
	// until the refetch it is answered 503 with Retry-After rather than
	// 401, since the token may be good.
	RefetchInterval time.Duration
	// Realm is the WWW-Authenticate realm; "" means "rampart".
	Realm string
	// Revoked, if set, reports whether a token was revoked: by its jti
	// (RFC 7009, rampart token revoke), with every token of its client
	// (rampart token revoke --client, rampart client disable), or because
	// its client is disabled. The control plane's revocations are an
	// authserver.RevocationStore's TokenRevoked, which the authorization
	// server's introspection answers from too, so that the two agree. It is called on every
	// request, cached tokens too, so that revocation is immediate. An
	// error makes the request fail with 503: a token that cannot be
	// checked is not accepted. Without it, revoked tokens and those of
	// disabled clients are accepted until they expire.
	Revoked func(ctx context.Context, t TokenRef) (bool, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a misconfiguration (once) and failed JWKS fetches
	// (at most once per RefetchInterval); nil means slog.Default().
	Logger *slog.Logger

	once    sync.Once
	initErr error
	c       config
	keys    atomic.Pointer[knownKeys]
	cache   *tokenCache

	mu        sync.Mutex // guards lastFetch and fetching
	lastFetch time.Time
	fetching  *inflightFetch
}

// config is the Validator's configuration with the defaults applied.
type config struct {
	algs       []jose.SignatureAlgorithm
	leeway     time.Duration
	maxSize    int
	refresh    time.Duration
	refetch    time.Duration
	url        string
	client     *http.Client
	static     bool
	useTimeout bool
}

const (
	defaultLeeway    = 30 * time.Second
	defaultMaxSize   = 8 << 10
	defaultCacheSize = 10_000
	defaultRefresh   = 10 * time.Minute
	defaultRefetch   = 30 * time.Second
	fetchTimeout     = 10 * time.Second
	maxJWKSBytes     = 1 << 20
	maxJWKSRedirects = 3
)

// algorithms are the signature algorithms a Validator may be told to
// accept: asymmetric ones only.
// Algorithm is a JWS signature algorithm, by its "alg" name (RFC 7518
// §3.1).
type Algorithm string

// The signature algorithms a Validator can accept. ES256 and EdDSA are
// what authserver.Server signs with (and a Validator's default).
const (
	ES256 Algorithm = "ES256"
	ES384 Algorithm = "ES384"
	ES512 Algorithm = "ES512"
	EdDSA Algorithm = "EdDSA"
	RS256 Algorithm = "RS256"
	RS384 Algorithm = "RS384"
	RS512 Algorithm = "RS512"
	PS256 Algorithm = "PS256"
	PS384 Algorithm = "PS384"
	PS512 Algorithm = "PS512"
)

var algorithms = map[Algorithm]jose.SignatureAlgorithm{
	ES256: jose.ES256, ES384: jose.ES384, ES512: jose.ES512,
	EdDSA: jose.EdDSA,
	RS256: jose.RS256, RS384: jose.RS384, RS512: jose.RS512,
	PS256: jose.PS256, PS384: jose.PS384, PS512: jose.PS512,
}

func (v *Validator) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}

// Check reports a configuration that cannot work: a missing Issuer,
// Audience or key source, both key sources, a forbidden or unknown
// algorithm, a negative duration or size, a JWKSURL that is not https (or
// http to a loopback address), static Keys without a usable key. It has
// no side effects: it fetches nothing and logs nothing. Validate returns
// the same error.
func (v *Validator) Check() error {
	_, _, err := v.configure()
	return err
}

func (v *Validator) init() error {
	v.once.Do(func() {
		var static *knownKeys
		v.c, static, v.initErr = v.configure()
		if v.initErr != nil {
			v.logger().Error("token: Validator misconfigured; every request will fail", "err", v.initErr)
			return
		}
		if static != nil {
			v.keys.Store(static)
		}
		if n := orDefault(v.CacheSize, defaultCacheSize); n > 0 {
			v.cache = &tokenCache{max: n, m: make(map[[sha256.Size]byte]*entry)}
		}
	})
	return v.initErr
}

// configure returns the configuration with the defaults applied, and the
// static keys if Keys is set, or the error of a configuration that cannot
// work. It changes nothing.
func (v *Validator) configure() (config, *knownKeys, error) {
	var c config
	fail := func(err error) (config, *knownKeys, error) { return config{}, nil, err }
	if v.Issuer == "" {
		return fail(errors.New("token: Validator.Issuer is required"))
	}
	if v.Audience == "" {
		return fail(errors.New("token: Validator.Audience is required"))
	}
	names := v.Algorithms
	if len(names) == 0 {
		names = []Algorithm{ES256, EdDSA}
	}
	for _, n := range names {
		if strings.EqualFold(string(n), "none") || strings.HasPrefix(strings.ToUpper(string(n)), "HS") {
			return fail(fmt.Errorf("token: algorithm %q is never accepted: it lets anyone who knows the public key forge tokens", n))
		}
		a, ok := algorithms[n]
		if !ok {
			return fail(fmt.Errorf("token: unsupported signature algorithm %q", n))
		}
		c.algs = append(c.algs, a)
	}
	if v.Leeway < 0 || v.MaxTokenSize < 0 || v.JWKSRefresh < 0 || v.RefetchInterval < 0 {
		return fail(errors.New("token: Validator durations and sizes must not be negative"))
	}
	c.leeway = orDefault(v.Leeway, defaultLeeway)
	c.maxSize = orDefault(v.MaxTokenSize, defaultMaxSize)
	c.refresh = orDefault(v.JWKSRefresh, defaultRefresh)
	c.refetch = orDefault(v.RefetchInterval, defaultRefetch)

	var static *knownKeys
	switch {
	case v.JWKSURL != "" && v.Keys != nil:
		return fail(errors.New("token: set one of Validator.JWKSURL and Validator.Keys, not both"))
	case v.Keys != nil:
		c.static = true
		static = usableKeys(c.algs, v.Keys.Keys)
		if len(static.byKID) == 0 {
			return fail(errors.New("token: Validator.Keys has no public signing key with a kid for the allowed algorithms"))
		}
	case v.JWKSURL != "":
		if err := checkJWKSURL(v.JWKSURL); err != nil {
			return fail(err)
		}
		c.url = v.JWKSURL
		c.client = v.Client
		if c.client == nil {
			c.client = &http.Client{
				Timeout: fetchTimeout,
				CheckRedirect: func(req *http.Request, via []*http.Request) error {
					if len(via) >= maxJWKSRedirects {
						return errors.New("token: too many JWKS redirects")
					}
					return checkJWKSURL(req.URL.String())
				},
			}
		}
		c.useTimeout = c.client.Timeout == 0
	default:
		return fail(errors.New("token: Validator needs JWKSURL or Keys"))
	}
	return c, static, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// checkJWKSURL allows https, and http only to a loopback address:
// keys fetched in the clear over a network are an attacker's keys.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("token: JWKS URL: %w", err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("token: JWKS URL %q must be https (http only to a loopback address)", s)
}

func (v *Validator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate checks raw, a JWT access token, and returns its caller. peer is
// the client certificate of the connection (nil without one); a token
// bound to a certificate (cnf x5t#S256, RFC 8705 §3) is valid only with
// that certificate.
//
// The checks, in order: size; compact JWS with an allowed alg; typ
// at+jwt (RFC 9068 §4 step 1); a kid naming a known key (an unknown kid
// triggers one rate-limited JWKS refetch); the signature; iss, aud, exp,
// nbf and iat; sub, client_id, jti and iat present; scope well formed;
// the certificate binding; Revoked. Encrypted tokens (JWE, §4 step 2)
// are not supported and are refused.
//
// Validated tokens are cached by SHA-256 of raw until they expire; a
// cache hit still checks expiry, that the signing key is still
// published, the certificate binding and Revoked.
//
// The error is an [*Error] for anything the token or the key source
// causes, and a plain error for a misconfigured Validator.
func (v *Validator) Validate(ctx context.Context, raw string, peer *x509.Certificate) (*Principal, error) {
	if err := v.init(); err != nil {
		return nil, err
	}
	if len(raw) > v.c.maxSize {
		return nil, invalid("token too large", nil)
	}
	now := v.now()
	var id [sha256.Size]byte
	if v.cache != nil {
		id = sha256.Sum256([]byte(raw))
		if e := v.cache.get(id); e != nil {
			if ks := v.keys.Load(); ks != nil && ks.find(e.kid, e.alg) != nil {
				if err := v.recheck(ctx, e, now, peer); err != nil {
					if err.Description == tokenExpired {
						v.cache.remove(e.ids...)
					}
					return nil, err
				}
				p := e.p
				return &p, nil
			}
			// The key has left the JWKS: whatever it signed is checked
			// afresh, and will fail.
			v.cache.remove(e.ids...)
		}
	}
	e, err := v.verify(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if err := v.recheck(ctx, e, now, peer); err != nil {
		return nil, err
	}
	if v.cache != nil {
		e.ids = append(e.ids, id)
		// The ECDSA twin of the signature is the same token, valid as
		// well: served from the cache too, it costs no signature check.
		if twin := jws.Twin(raw, e.alg); twin != "" {
			e.ids = append(e.ids, sha256.Sum256([]byte(twin)))
		}
		for _, id := range e.ids {
			v.cache.put(id, e, now)
		}
	}
	p := e.p
	return &p, nil
}

const tokenExpired = "token expired"

// entry is a verified token: what is true of it forever (signature,
// issuer, audience, claims) and what must be checked on every use.
type entry struct {
	p      Principal
	exp    time.Time
	iat    time.Time
	kid    string
	alg    jose.SignatureAlgorithm
	jti    string
	bound  bool
	x5t256 [sha256.Size]byte
	// ids are the cache keys of the entry: the token's, and its twin's
	// for an ECDSA signature.
	ids [][sha256.Size]byte
}

// recheck is what may change between two uses of the same token: the
// clock, the client certificate, revocation.
func (v *Validator) recheck(ctx context.Context, e *entry, now time.Time, peer *x509.Certificate) *Error {
	if now.Add(-v.c.leeway).After(e.exp) {
		return invalid(tokenExpired, nil)
	}
	if e.bound {
		if peer == nil {
			return invalid("token is bound to a client certificate and none was presented", nil)
		}
		sum := sha256.Sum256(peer.Raw)
		if subtle.ConstantTimeCompare(sum[:], e.x5t256[:]) != 1 {
			return invalid("token is bound to another client certificate", nil)
		}
	}
	if v.Revoked != nil {
		revoked, err := v.Revoked(ctx, TokenRef{JTI: e.jti, ClientID: e.p.ClientID, IssuedAt: e.iat, Expires: e.exp})
		if err != nil {
			return unavailableNow("cannot check token revocation", time.Second, err)
		}
		if revoked {
			return invalid("token revoked", nil)
		}
	}
	return nil
}

// claims are the claims RFC 9068 §2.2 defines, as authserver.Server writes
// them (see the package documentation).
type claims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	// Scope is a string; an array (as some issuers send) fails to
	// decode, and the token is refused.
	Scope string `json:"scope"`
	Cnf   *struct {
		X5tS256 *string `json:"x5t#S256"`
	} `json:"cnf"`
}

// verify makes the checks whose outcome cannot change: everything but
// the clock's exp, the certificate binding and revocation.
func (v *Validator) verify(ctx context.Context, raw string, now time.Time) (*entry, error) {
	if !jws.Compact(raw) {
		return nil, invalid("malformed token: not a JWS in compact serialization", nil)
	}
	if !jws.Canonical(raw) {
		return nil, invalid("malformed token: not canonical base64url (RFC 7515 section 2)", nil)
	}
	tok, err := jose.ParseSignedCompact(raw, v.c.algs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, invalid("signature algorithm not allowed", err)
		}
		return nil, invalid("malformed token", err)
	}
	if len(tok.Signatures) != 1 {
		return nil, invalid("malformed token: one signature expected", nil)
	}
	h := tok.Signatures[0].Protected
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		// RFC 9068 §4 step 1: an ID token or another JWT signed by the
		// same issuer must not pass for an access token.
		return nil, invalid("token type (typ) must be at+jwt", nil)
	}
	if h.KeyID == "" {
		return nil, invalid("token has no key ID (kid)", nil)
	}
	alg := jose.SignatureAlgorithm(h.Algorithm)
	key, err := v.key(ctx, h.KeyID, alg, now, func() time.Time { return unverifiedIAT(tok) })
	if err != nil {
		return nil, err
	}
	payload, err := tok.Verify(key.Key)
	if err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return nil, invalid("bad signature", err)
		}
		return nil, invalid("malformed token", err)
	}
	// The claims are decoded after the signature is checked, by a
	// strict, fast decoder: duplicate members are refused.
	var c claims
	if err := jsonv2.Unmarshal(payload, &c); err != nil {
		return nil, invalid("malformed claims", err)
	}
	err = c.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.Issuer,
		AnyAudience: jwt.Audience{v.Audience},
		Time:        now,
	}, v.c.leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, invalid("wrong issuer", nil)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, invalid("wrong audience", nil)
	case errors.Is(err, jwt.ErrExpired):
		return nil, invalid(tokenExpired, nil)
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, invalid("token not yet valid", nil)
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, invalid("token issued in the future", nil)
	case err != nil:
		return nil, invalid("invalid claims", err)
	}
	// RFC 9068 §2.2: required claims. iss and aud were checked above.
	switch {
	case c.Expiry == nil:
		return nil, invalid("token has no expiry (exp)", nil)
	case c.IssuedAt == nil:
		return nil, invalid("token has no issue time (iat)", nil)
	case c.Subject == "":
		return nil, invalid("token has no subject (sub)", nil)
	case c.ClientID == "":
		return nil, invalid("token has no client_id", nil)
	case c.ID == "":
		return nil, invalid("token has no ID (jti)", nil)
	}
	scopes, ok := parseScope(c.Scope)
	if !ok {
		return nil, invalid("malformed scope", nil)
	}
	e := &entry{
		p: Principal{
			Subject:  c.Subject,
			ClientID: c.ClientID,
			Scopes:   scopes,
			Method:   auth.Bearer,
			TokenID:  c.ID,
			Expires:  c.Expiry.Time(),
		},
		exp: c.Expiry.Time(),
		iat: c.IssuedAt.Time(),
		kid: h.KeyID,
		alg: alg,
		jti: c.ID,
	}
	if c.Cnf != nil {
		// A bound token whose binding cannot be checked is refused:
		// accepting it would unbind it.
		if c.Cnf.X5tS256 == nil {
			return nil, invalid("unsupported confirmation method (cnf)", nil)
		}
		sum, err := base64.RawURLEncoding.Strict().DecodeString(*c.Cnf.X5tS256)
		if err != nil || len(sum) != sha256.Size {
			return nil, invalid("malformed certificate thumbprint (cnf x5t#S256)", nil)
		}
		e.bound = true
		copy(e.x5t256[:], sum)
	}
	return e, nil
}

// key returns the key with that kid that can verify alg. A kid not in
// the keys known triggers a refetch, rate-limited: the issuer may have
// published the key since the last fetch. The limit depends on the
// token: one issued after (or about when) the keys were fetched, by its
// iat (read before the signature is checked, so only to choose a limit),
// may be signed by a key this Validator has not seen, and waits at most
// freshRefetch; an older one, RefetchInterval. When the refetch is
// not allowed yet for a fresh token, the answer is 503 with Retry-After,
// not invalid_token: the token may be good, and a new one would meet the
// same fate (RFC 6750 §3.1).
func (v *Validator) key(ctx context.Context, kid string, alg jose.SignatureAlgorithm, now time.Time, iat func() time.Time) (*jose.JSONWebKey, error) {
	ks, fetched, _, err := v.keySet(ctx, now, 0)
	if err != nil {
		return nil, err
	}
	if k := ks.find(kid, alg); k != nil {
		return k, nil
	}
	if v.c.static || fetched {
		return nil, invalid("unknown signing key", nil)
	}
	issued := iat()
	fresh := !issued.IsZero() && !issued.Before(ks.fetched.Add(-v.c.leeway))
	interval := v.c.refetch
	if fresh {
		interval = min(interval, freshRefetch)
	}
	ks, fetched, wait, err := v.keySet(ctx, now, interval)
	if err != nil {
		return nil, err
	}
	if k := ks.find(kid, alg); k != nil {
		return k, nil
	}
	if fresh && !fetched {
		return nil, unavailableNow("the token's signing key is not known here yet", max(wait, time.Second), nil)
	}
	return nil, invalid("unknown signing key", nil)
}

// freshRefetch is the least time between two JWKS fetches for tokens
// with an unknown kid issued after the last fetch: short enough that a
// token signed by a key published since (after two rotations in a row,
// say) waits seconds, long enough that anyone sending made-up kids gets
// the issuer fetched no more than every 5 s.
const freshRefetch = 5 * time.Second

// unverifiedIAT returns the iat of tok, a token whose signature has
// not been checked: only for choosing a refetch limit (see key). Zero
// when it has none.
func unverifiedIAT(tok *jose.JSONWebSignature) time.Time {
	var c struct {
		IssuedAt *jwt.NumericDate `json:"iat"`
	}
	if json.Unmarshal(tok.UnsafePayloadWithoutVerification(), &c) != nil || c.IssuedAt == nil {
		return time.Time{}
	}
	return c.IssuedAt.Time()
}

// knownKeys is a set of verification keys, replaced whole on each fetch.
type knownKeys struct {
	byKID   map[string][]jose.JSONWebKey
	fetched time.Time
}

func (ks *knownKeys) find(kid string, alg jose.SignatureAlgorithm) *jose.JSONWebKey {
	for i := range ks.byKID[kid] {
		if k := &ks.byKID[kid][i]; keyFits(k, alg) {
			return k
		}
	}
	return nil
}

// keyFits reports whether k may verify signatures made with alg: the
// key's own alg, when it has one, and its type must agree, so that a
// key published for one algorithm is never used with another.
func keyFits(k *jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return pub.N.BitLen() >= 2048
		}
	}
	return false
}

// usableKeys keeps the keys a token may be verified with: public, for
// signatures (use "sig" or none), with a kid, for one of algs.
func usableKeys(algs []jose.SignatureAlgorithm, keys []jose.JSONWebKey) *knownKeys {
	ks := &knownKeys{byKID: make(map[string][]jose.JSONWebKey)}
	for _, k := range keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.Valid() || !k.IsPublic() {
			continue
		}
		for _, a := range algs {
			if keyFits(&k, a) {
				ks.byKID[k.KeyID] = append(ks.byKID[k.KeyID], k)
				break
			}
		}
	}
	return ks
}

// inflightFetch is one JWKS fetch in flight; every request that needs it
// waits for the same one.
type inflightFetch struct {
	done chan struct{}
	keys *knownKeys
	err  error
}

// keySet returns the keys to verify with, fetching them when there are
// none, when they are older than JWKSRefresh, or when force is set (an
// unknown kid) and the last fetch is at least force ago; scheduled
// fetches are never closer than RefetchInterval. fetched reports that
// the keys returned come from a fetch made for this call (or one it
// joined); wait, that a forced fetch was not allowed yet, and for how
// long. When a fetch is due but fails or is not allowed yet, the known
// keys are used for up to a second JWKSRefresh; past that, or with no
// keys at all, the answer is 503: the client is not at fault.
func (v *Validator) keySet(ctx context.Context, now time.Time, force time.Duration) (ks *knownKeys, fetched bool, wait time.Duration, err error) {
	ks = v.keys.Load()
	if v.c.static || (ks != nil && force == 0 && now.Sub(ks.fetched) < v.c.refresh) {
		return ks, false, 0, nil
	}
	interval := v.c.refetch
	if force > 0 {
		interval = force
	}
	v.mu.Lock()
	f := v.fetching
	if f == nil {
		if wait := v.lastFetch.Add(interval).Sub(now); !v.lastFetch.IsZero() && wait > 0 {
			v.mu.Unlock()
			ks, err := v.stale(ks, now, wait, nil)
			return ks, false, wait, err
		}
		v.lastFetch = now
		f = &inflightFetch{done: make(chan struct{})}
		v.fetching = f
		go v.fetch(context.WithoutCancel(ctx), f)
	}
	v.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, false, 0, unavailableNow("signing keys are being fetched", time.Second, ctx.Err())
	}
	if f.err != nil {
		ks, err := v.stale(v.keys.Load(), now, v.c.refetch, f.err)
		return ks, false, 0, err
	}
	return f.keys, true, 0, nil
}

// stale returns ks if it is not too old to trust, or a 503.
func (v *Validator) stale(ks *knownKeys, now time.Time, retry time.Duration, err error) (*knownKeys, error) {
	if ks != nil && now.Sub(ks.fetched) < 2*v.c.refresh {
		return ks, nil
	}
	return nil, unavailableNow("the issuer's signing keys are unavailable", retry, err)
}

func (v *Validator) fetch(ctx context.Context, f *inflightFetch) {
	if v.c.useTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
	}
	f.keys, f.err = v.fetchKeys(ctx)
	if f.err != nil {
		// Fetches are rate-limited, so this logs at most once per
		// RefetchInterval.
		v.logger().Warn("token: JWKS fetch failed", "url", v.c.url, "err", f.err)
	}
	v.mu.Lock()
	if f.err == nil {
		v.keys.Store(f.keys)
	}
	v.fetching = nil
	v.mu.Unlock()
	close(f.done)
}

func (v *Validator) fetchKeys(ctx context.Context) (*knownKeys, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token: JWKS: %s answered %s", v.c.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("token: JWKS: %s sent more than %d bytes", v.c.url, maxJWKSBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("token: JWKS: no keys member")
	}
	// Keys are decoded one by one: a key of a type go-jose does not know
	// (or an encryption key) must not hide the signing keys next to it.
	keys := make([]jose.JSONWebKey, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if k.UnmarshalJSON(raw) == nil {
			keys = append(keys, k)
		}
	}
	// An empty set is an answer, not a failure: an issuer that withdraws
	// every key means every token to fail.
	ks := usableKeys(v.c.algs, keys)
	ks.fetched = v.now()
	return ks, nil
}

// Middleware authenticates each request by its bearer token and passes
// it on with the caller in its context ([auth.FromContext]); otherwise it
// answers as RFC 6750 §3 says (401 invalid_token, 400 invalid_request,
// 401 with no error code for a request without a token) and next is not
// called. It is [auth.MiddlewareRealm] with v alone, in Realm.
//
// When the JWKS cannot be fetched (or Revoked fails), the answer is 503
// with Retry-After: the client's token may be fine.
func (v *Validator) Middleware(next http.Handler) http.Handler {
	return auth.MiddlewareRealm(v.Realm, v)(next)
}

// Authenticate reads the bearer token of r with [auth.ParseCredential]
// and validates it ([Validator.Validate]): v is an [auth.Authenticator].
//
// The token is read from the Authorization header only (RFC 6750 §2.1).
// A request with two Authorization headers, or an X-API-Key next to one,
// is 400 invalid_request (§2: one method per request), and so is a token
// in the URI query (§2.3), because URIs end up in logs and Referer
// headers; a token in a form body (§2.2) is not looked for, so that the
// body stays unread. When the token is bound to a certificate, the client
// certificate is r.TLS.PeerCertificates[0]: TLS must terminate in this
// process.
//
// A request without a bearer token (none, an API key, another scheme) is
// a [*auth.NoCredentialError]. A nil *Validator checks no token: every
// request is one without a credential for it, so that [auth.Middleware]
// refuses bearer tokens.
func (v *Validator) Authenticate(r *http.Request) (*auth.Principal, error) {
	c, err := auth.ParseCredential(r)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, &auth.NoCredentialError{Found: c.Method}
	}
	if err := v.init(); err != nil {
		return nil, err
	}
	if c.Method != auth.Bearer {
		return nil, &auth.NoCredentialError{Accepts: []auth.Method{auth.Bearer}, Found: c.Method}
	}
	if len(c.Value) > v.c.maxSize {
		return nil, invalid("token too large", nil)
	}
	var peer *x509.Certificate
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer = r.TLS.PeerCertificates[0]
	}
	return v.Validate(r.Context(), c.Value, peer)
}

// tokenCache holds verified tokens by SHA-256 of the token, so that it
// never holds a usable credential.
type tokenCache struct {
	mu  sync.RWMutex
	max int
	m   map[[sha256.Size]byte]*entry
}

func (c *tokenCache) get(id [sha256.Size]byte) *entry {
	c.mu.RLock()
	e := c.m[id]
	c.mu.RUnlock()
	return e
}

func (c *tokenCache) remove(ids ...[sha256.Size]byte) {
	c.mu.Lock()
	for _, id := range ids {
		delete(c.m, id)
	}
	c.mu.Unlock()
}

// put adds e, evicting when full: expired entries among a few random
// ones, or else one random entry. Random eviction costs O(1) and cannot
// be steered by an attacker who does not know which entries exist.
func (c *tokenCache) put(id [sha256.Size]byte, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		seen, evicted := 0, false
		for k, old := range c.m {
			if now.After(old.exp) {
				delete(c.m, k)
				evicted = true
			}
			if seen++; seen == 8 {
				break
			}
		}
		if !evicted {
			for k := range c.m {
				delete(c.m, k)
				break
			}
		}
	}
	c.m[id] = e
}
