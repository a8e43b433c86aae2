package authserver

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/internal/jws"
)

// Server is an OAuth2 authorization server for the client-credentials
// grant. Issuer, Audience, Keys, Revocations, Clients, APIKeys and
// KeyEncryptionKey are required; set the fields before first use.
//
// Endpoints, under Issuer: /oauth2/token, /oauth2/jwks, /oauth2/introspect,
// /oauth2/revoke, and /.well-known/oauth-authorization-server.
type Server struct {
	// Issuer is the server's URL, the iss of its tokens (RFC 8414 §2).
	Issuer string
	// Audience is the aud of the tokens: the resource servers' identifier.
	Audience string
	// Keys holds the signing keys, sealed, shared by every instance
	// (Start makes the first ones).
	Keys KeyStore
	// Revocations keeps revoked tokens (RFC 7009) for introspection.
	Revocations RevocationStore
	// Clients and APIKeys authenticate clients: an API key is the client
	// secret. Any apikey.Store is a Clients.
	Clients Clients
	APIKeys *apikey.Verifier
	// KeyEncryptionKey (32 bytes) unseals the signing keys in the store.
	KeyEncryptionKey []byte
	// Algorithm of new signing keys: ES256 (if empty) or EdDSA.
	Algorithm Algorithm
	// Scopes is the catalogue published in the metadata.
	Scopes []string
	// ScopeImplies declares a scope hierarchy: a token granted a scope
	// also carries the ones it implies ({"payment.write":
	// ["payment.read"]}). Without it, scopes are independent exact
	// strings.
	ScopeImplies map[string][]string
	// TrustedProxies are proxies whose X-Forwarded-For is believed, for
	// the per-address brute-force limit.
	TrustedProxies []netip.Prefix
	// MutualTLS says that the TLS server in front asks clients for
	// certificates (tls.VerifyClientCertIfGiven or stricter) and that
	// requests reach this handler with their r.TLS. Only then does the
	// server offer tls_client_auth (RFC 8705 §2.1) and bind the tokens it
	// issues that way to the certificate (§3), and only then does the
	// metadata advertise both; without it, client certificates are
	// ignored.
	MutualTLS bool
	// ClientCAs, if set, are the only roots tls_client_auth accepts
	// client certificates from (RFC 8705 §2.1), when the TLS server
	// verifies client certificates against a wider pool (rampart serve's
	// also holds its internal CA's root, for certificate renewal). Nil
	// accepts whatever chain the TLS server verified.
	ClientCAs *x509.CertPool
	// FailureLimit bounds failed client authentications, per client and
	// per address; zero means 10 a minute.
	FailureLimit ratelimit.Limit
	// KeyReload is how often signing keys are re-read from the store, to
	// follow rotations by another instance; 0 means 10 s.
	KeyReload time.Duration
	// Logger receives an audit line per token issued or refused and per
	// revocation (the client, the API key's ID, the scopes, the grant,
	// the status and the client's address; never a secret), at Info,
	// and the server's own failures, at Warn and Error. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once    sync.Once
	mux     *http.ServeMux
	limiter *ratelimit.Memory
	// gateMu guards inflight: the client authentications in progress per
	// address, each holding a reserved failure (see reserve).
	gateMu   sync.Mutex
	inflight map[string]int
	mu       sync.Mutex
	ring     *keyring
	clients  map[string]cachedClient
}

// Clients is what a Server asks of the client registry: a client by its
// ID, or apikey.ErrNotFound. It must be safe for concurrent use.
type Clients interface {
	Client(ctx context.Context, id string) (*apikey.Client, error)
}

type cachedClient struct {
	c      *apikey.Client
	loaded time.Time
}

// clientCacheTTL bounds how stale the client settings used with an API
// key may be (its token lifetime). Whether the client is disabled is not
// taken from here: the key's own record says, and revocations reach it
// at once.
const clientCacheTTL = 10 * time.Second

// client returns a client's settings for secret authentication, from a
// short cache: looking it up on every token request would cost more than
// signing the token.
func (s *Server) client(ctx context.Context, id string) (*apikey.Client, error) {
	now := s.now()
	s.mu.Lock()
	e, ok := s.clients[id]
	s.mu.Unlock()
	if ok && now.Sub(e.loaded) < clientCacheTTL && !now.Before(e.loaded) {
		return e.c, nil
	}
	c, err := s.Clients.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.clients == nil || len(s.clients) >= 10000 {
		s.clients = make(map[string]cachedClient)
	}
	s.clients[id] = cachedClient{c, now}
	s.mu.Unlock()
	return c, nil
}

// clientIDSyntax is apikey's client ID syntax.
var clientIDSyntax = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// b64 is base64url without padding, as JOSE writes it.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) init() {
	s.once.Do(func() {
		s.limiter = &ratelimit.Memory{Now: s.Now}
		s.inflight = make(map[string]int)
		mux := http.NewServeMux()
		mux.HandleFunc("POST /oauth2/token", s.token)
		mux.HandleFunc("GET /oauth2/jwks", s.jwks)
		mux.HandleFunc("POST /oauth2/introspect", s.introspect)
		mux.HandleFunc("POST /oauth2/revoke", s.revoke)
		mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
		// RFC 8414 §3.1: for an issuer with a path, the well-known suffix
		// goes between the host and the path.
		if u, err := url.Parse(s.Issuer); err == nil && strings.TrimSuffix(u.EscapedPath(), "/") != "" {
			at := "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
			mux.HandleFunc("GET /.well-known/oauth-authorization-server/", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.EscapedPath() != at {
					http.NotFound(w, r)
					return
				}
				s.metadata(w, r)
			})
		}
		s.mux = mux
	})
}

// ServeHTTP serves the endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	s.mux.ServeHTTP(w, r)
}

// Start makes the first signing keys if the store has none and loads
// them; it fails when they cannot be unsealed. Call it before serving.
func (s *Server) Start(ctx context.Context) error {
	s.init()
	if s.Issuer == "" || s.Audience == "" || s.Keys == nil || s.Revocations == nil || s.Clients == nil || s.APIKeys == nil {
		return errors.New("authserver: Server needs Issuer, Audience, Keys, Revocations, Clients and APIKeys")
	}
	if err := EnsureKeys(ctx, s.Keys, s.KeyEncryptionKey, s.Algorithm, s.now()); err != nil {
		return err
	}
	_, err := s.keys(ctx)
	return err
}

// keys returns the keyring, reloaded when older than KeyReload.
func (s *Server) keys(ctx context.Context) (*keyring, error) {
	now := s.now()
	reload := s.KeyReload
	if reload == 0 {
		reload = 10 * time.Second
	}
	s.mu.Lock()
	kr := s.ring
	s.mu.Unlock()
	if kr != nil && now.Sub(kr.loaded) < reload && !now.Before(kr.loaded) {
		return kr, nil
	}
	fresh, err := loadKeyring(ctx, s.Keys, s.KeyEncryptionKey, now)
	if err != nil {
		if kr != nil {
			// Keep signing with what we have; the store may be back soon.
			s.logger().Warn("token: reloading signing keys failed; keeping the loaded ones", "err", err)
			return kr, nil
		}
		return nil, err
	}
	s.mu.Lock()
	s.ring = fresh
	s.mu.Unlock()
	return fresh, nil
}

// oauthError is an error response of RFC 6749 §5.2. Its code is empty
// for the answers §5.2 has no code for (429, 503): the body then holds
// only error_description.
type oauthError struct {
	status      int
	code        string
	description string
	header      http.Header
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

// unavailable is the answer when the server cannot decide (a store or
// signing failure): 503 with Retry-After. RFC 6749 §5.2 defines no code
// for it; temporarily_unavailable is the authorization endpoint's
// (§4.1.2.1), so there is none.
func unavailable() *oauthError {
	return &oauthError{status: http.StatusServiceUnavailable, description: "the authorization server cannot answer now; retry shortly",
		header: http.Header{"Retry-After": {"1"}}}
}

func badRequest(code, format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, description: fmt.Sprintf(format, args...)}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: desc,
		header: http.Header{"Www-Authenticate": {`Basic realm="rampart", charset="UTF-8"`}}}
}

// writeOAuthError answers with e, an RFC 6749 §5.2 error response: the
// one place in Rampart such bodies are sent (with introspection and
// revocation, RFC 7662 §2.3 and RFC 7009 §2.2.1, which use them too).
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := http.Header{"Pragma": {"no-cache"}}
	for k, v := range e.header {
		h[k] = v
	}
	httpx.WriteOAuthError(w, httpx.OAuthError{Status: e.status, Code: e.code, Description: descriptionText(e.description), Header: h})
}

// descriptionText keeps an error_description within what RFC 6749 §5.2
// allows, %x20-21 / %x23-5B / %x5D-7E: anything else becomes '?'.
func descriptionText(s string) string {
	return httpx.Quote(s)
}

// readForm parses an application/x-www-form-urlencoded body of at most
// 8 KiB; a parameter given twice is an error, and one without a value is
// treated as omitted (RFC 6749 §3.2).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		return nil, badRequest("invalid_request", "malformed or oversized form body")
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			return nil, badRequest("invalid_request", "parameter %s given more than once", k)
		}
	}
	if len(r.URL.Query()) > 0 {
		return nil, badRequest("invalid_request", "parameters belong in the body, not the URL")
	}
	form := url.Values{}
	for k, vs := range r.PostForm {
		if vs[0] != "" {
			form[k] = vs
		}
	}
	return form, nil
}

// authenticated is a client that proved who it is.
type authenticated struct {
	client *apikey.Client
	// scopes it may be granted: its key's, or the client's when it
	// authenticated with a certificate.
	scopes []string
	method string
	// keyID is the API key's ID, for client_secret_*.
	keyID string
	// until is when the credential stops working (the key's expiry or
	// the end of its rotation grace); zero if never. No token outlives
	// it.
	until time.Time
}

// authenticate runs client authentication (RFC 6749 §2.3, RFC 8705 §2.1)
// with the brute-force limits around it.
func (s *Server) authenticate(r *http.Request, form url.Values) (*authenticated, *oauthError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the credentials are form-urlencoded before
		// being put in the header.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, invalidClient("malformed credentials in the Authorization header")
		}
		if form.Has("client_secret") || form.Has("client_id") && form.Get("client_id") != id {
			return nil, badRequest("invalid_request", "use one client authentication method (RFC 6749 section 2.3)")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" {
		return nil, invalidClient("client authentication required: client_secret_basic, client_secret_post or tls_client_auth")
	}
	if !clientIDSyntax.MatchString(id) {
		// Not a client ID at all: no lookup, and no limiter entry keyed
		// by whatever was sent.
		return nil, invalidClient("client authentication failed")
	}
	addrKey := s.addrKey(r)
	clientKey := "client|" + id
	limit := s.failureLimit()
	// An address that failed too often is refused before its credentials
	// are looked at. A client that failed too often is not: its secrets
	// are 256-bit keys, beyond guessing, and refusing its right key would
	// let anyone who knows its ID lock it out. Its failures are throttled
	// instead (below).
	if oerr := s.reserve(addrKey); oerr != nil {
		return nil, oerr
	}
	a, oerr := s.verifyClient(r, id, secret, basic)
	failed := oerr != nil && oerr.code == "invalid_client"
	s.settle(addrKey, failed)
	if failed {
		if d, _ := s.limiter.Allow(r.Context(), clientKey, limit); !d.Allowed {
			return nil, tooManyFailures(d)
		}
	}
	return a, oerr
}

func (s *Server) failureLimit() ratelimit.Limit {
	if s.FailureLimit == (ratelimit.Limit{}) {
		return ratelimit.PerMinute(10, 10)
	}
	return s.FailureLimit
}

func (s *Server) addrKey(r *http.Request) string {
	return "addr|" + ratelimit.AddrKey(ratelimit.ClientAddr(r, s.TrustedProxies))
}

// reserve admits a client authentication from the address of key when
// its failure budget has room for it and for every authentication from
// there still in progress: each holds a failure in reserve until settle
// says whether it failed. Checking the budget, verifying (a store round
// trip) and only then counting would let a concurrent burst through the
// check all at once.
func (s *Server) reserve(key string) *oauthError {
	s.init()
	limit := s.failureLimit()
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	d, _ := s.limiter.Peek(key, limit)
	if !d.Allowed {
		return tooManyFailures(d)
	}
	if s.inflight[key] > d.Remaining {
		// The budget is spoken for by authentications in progress:
		// retry once they are settled.
		return tooManyFailures(ratelimit.Decision{RetryAfter: limit.Period / time.Duration(limit.Rate)})
	}
	s.inflight[key]++
	return nil
}

// settle ends a reservation: a failure is counted, a success (or an
// answer that was neither, such as a store failure) gives it back.
func (s *Server) settle(key string, failed bool) {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if failed {
		s.limiter.Allow(context.Background(), key, s.failureLimit())
	}
	if s.inflight[key]--; s.inflight[key] <= 0 {
		delete(s.inflight, key)
	}
}

// LimitFailedAuth puts next, an endpoint that authenticates its callers
// (such as API-key self-rotation, POST /v1/apikeys/rotate), under the
// token endpoint's per-address failure limit: a 401 from next counts as a
// failed client authentication, and an address past the limit gets 429
// before next sees its request. The budget is the one the token,
// introspection and revocation endpoints share, so that no endpoint is an
// unthrottled oracle for guessing keys.
func (s *Server) LimitFailedAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := s.addrKey(r)
		if oerr := s.reserve(key); oerr != nil {
			writeOAuthError(w, oerr)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.settle(key, sw.status == http.StatusUnauthorized && r.Context().Err() == nil) }()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tooManyFailures is the answer to an address or client that failed
// client authentication too often: 429 with Retry-After (RFC 6585 §4),
// and no error code, since RFC 6749 §5.2 has none for it (and
// temporarily_unavailable is the authorization endpoint's).
func tooManyFailures(d ratelimit.Decision) *oauthError {
	secs := max(httpx.Seconds(d.RetryAfter), 1)
	return &oauthError{status: http.StatusTooManyRequests,
		description: fmt.Sprintf("too many failed client authentications; retry in %d s", secs),
		header:      http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}}
}

func (s *Server) verifyClient(r *http.Request, id, secret string, basic bool) (*authenticated, *oauthError) {
	if secret != "" {
		ver, err := s.APIKeys.Verify(r.Context(), secret)
		if err != nil {
			if isStoreFailure(err) {
				s.logger().Warn("token: verifying an API key failed", "err", err)
				return nil, unavailable()
			}
			return nil, invalidClient("client authentication failed")
		}
		if ver.Record.ClientID != id {
			return nil, invalidClient("client authentication failed")
		}
		c, err := s.client(r.Context(), id)
		switch {
		case errors.Is(err, apikey.ErrNotFound):
			return nil, invalidClient("client authentication failed")
		case err != nil:
			s.logger().Warn("token: looking up a client failed", "err", err)
			return nil, unavailable()
		case c.Disabled:
			return nil, invalidClient("client authentication failed")
		}
		method := "client_secret_post"
		if basic {
			method = "client_secret_basic"
		}
		return &authenticated{client: c, scopes: ver.Record.Scopes, method: method, keyID: ver.Record.ID, until: ver.Principal.Expires}, nil
	}
	// tls_client_auth (RFC 8705 §2.1): the certificate the TLS layer
	// verified must be the one registered for the client.
	cert := verifiedClientCert(r)
	if !s.MutualTLS || cert == nil || !s.fromClientCA(r) {
		return nil, invalidClient("client authentication failed")
	}
	c, err := s.Clients.Client(r.Context(), id)
	if err != nil && !errors.Is(err, apikey.ErrNotFound) {
		s.logger().Warn("token: looking up a client failed", "err", err)
		return nil, unavailable()
	}
	if err != nil || c.Disabled || !certMatches(c, cert) {
		return nil, invalidClient("client authentication failed")
	}
	return &authenticated{client: c, scopes: c.Scopes, method: "tls_client_auth"}, nil
}

func isStoreFailure(err error) bool {
	for _, e := range []error{apikey.ErrInvalid, apikey.ErrUnknown, apikey.ErrRevoked, apikey.ErrExpired, apikey.ErrRotated, apikey.ErrClientDisabled} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// fromClientCA reports whether the client certificate the TLS layer
// verified chains to ClientCAs (any root, without ClientCAs).
func (s *Server) fromClientCA(r *http.Request) bool {
	if s.ClientCAs == nil {
		return true
	}
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[min(1, len(r.TLS.PeerCertificates)):] {
		inter.AddCert(c)
	}
	_, err := r.TLS.VerifiedChains[0][0].Verify(x509.VerifyOptions{
		Roots: s.ClientCAs, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err == nil
}

// verifiedClientCert returns the client certificate the TLS layer
// verified against the server's client CAs, nil without one.
func verifiedClientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// certMatches applies RFC 8705 §2.1.2: the registered subject DN, URI SAN
// or DNS SAN must be the certificate's.
func certMatches(c *apikey.Client, cert *x509.Certificate) bool {
	switch {
	case c.CertSubject != "":
		// The subject as encoded, in order, with every attribute:
		// pkix.Name would reorder and merge attributes, and two
		// different DNs could compare equal (RFC 8705 §2.1.2 wants a DN
		// comparison).
		var rdns pkix.RDNSequence
		if rest, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rest) != 0 {
			return false
		}
		return rdns.String() == c.CertSubject
	case c.CertURI != "":
		return slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == c.CertURI })
	case c.CertDNS != "":
		return slices.Contains(cert.DNSNames, c.CertDNS)
	}
	return false
}

// IntrospectScope lets a client (a resource server) introspect the
// tokens of other clients; without it a client introspects only its own.
const IntrospectScope = "token.introspect"

// tokenClaims are the claims of an access token (RFC 9068 §2.2).
type tokenClaims struct {
	Issuer   string        `json:"iss"`
	Subject  string        `json:"sub"`
	Audience string        `json:"aud"`
	ClientID string        `json:"client_id"`
	IssuedAt int64         `json:"iat"`
	Expiry   int64         `json:"exp"`
	ID       string        `json:"jti"`
	Scope    string        `json:"scope"`
	Cnf      *confirmation `json:"cnf,omitempty"`
}

func (c *tokenClaims) ref() token.TokenRef {
	return token.TokenRef{JTI: c.ID, ClientID: c.ClientID, IssuedAt: time.Unix(c.IssuedAt, 0), Expires: time.Unix(c.Expiry, 0)}
}

type confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// token is the token endpoint (RFC 6749 §3.2, §4.4). Every answer is
// audited (see Logger).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	var (
		form url.Values
		a    *authenticated
		c    *tokenClaims
	)
	oerr := func() *oauthError {
		var oerr *oauthError
		if form, oerr = readForm(w, r); oerr != nil {
			return oerr
		}
		switch gt := form.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			return badRequest("invalid_request", "grant_type is required")
		default:
			return badRequest("unsupported_grant_type", "only client_credentials is supported")
		}
		if a, oerr = s.authenticate(r, form); oerr != nil {
			return oerr
		}
		var compact string
		var lifetime time.Duration
		if c, compact, lifetime, oerr = s.issue(r, a, form.Get("scope")); oerr != nil {
			return oerr
		}
		// RFC 6749 §5.1.
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": compact,
			"token_type":   "Bearer",
			"expires_in":   int64(lifetime / time.Second),
			"scope":        c.Scope,
		})
		return nil
	}()
	attrs := []slog.Attr{slog.String("grant_type", form.Get("grant_type"))}
	attrs = append(attrs, s.callerAttrs(r, form, a)...)
	if oerr != nil {
		writeOAuthError(w, oerr)
		attrs = append(attrs, slog.Int("status", oerr.status), slog.String("error", oerr.code), slog.String("error_description", oerr.description))
		if sc := form.Get("scope"); sc != "" {
			attrs = append(attrs, slog.String("scope_requested", descriptionText(sc)))
		}
		s.audit(r, "token: refused", attrs...)
		return
	}
	attrs = append(attrs, slog.Int("status", http.StatusOK), slog.String("scope", c.Scope), slog.String("jti", c.ID),
		slog.Time("expires", time.Unix(c.Expiry, 0).UTC()), slog.Bool("bound", c.Cnf != nil))
	s.audit(r, "token: issued", attrs...)
}

// issue makes the access token for a, with the scopes requested (a's
// when none).
func (s *Server) issue(r *http.Request, a *authenticated, requested string) (*tokenClaims, string, time.Duration, *oauthError) {
	scopes := a.scopes
	if requested != "" {
		// RFC 6749 §3.3: scope-tokens separated by single spaces, a set.
		scopes = nil
		for _, sc := range strings.Split(requested, " ") {
			if !httpx.IsScopeToken(sc) {
				return nil, "", 0, badRequest("invalid_scope", "the scope parameter must be scope-tokens separated by single spaces (RFC 6749 section 3.3)")
			}
			if !slices.Contains(a.scopes, sc) {
				if a.keyID != "" && slices.Contains(a.client.Scopes, sc) {
					return nil, "", 0, badRequest("invalid_scope", "scope %s is not granted to API key %s (its scopes: %s)", sc, a.keyID, strings.Join(a.scopes, " "))
				}
				return nil, "", 0, badRequest("invalid_scope", "scope %s is not granted to client %s", sc, a.client.ID)
			}
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	scopes = s.expand(scopes)
	lifetime := a.client.TokenLifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	lifetime = min(lifetime, MaxLifetime)
	now := s.now()
	if !a.until.IsZero() && a.until.Sub(now) < lifetime {
		lifetime = max(a.until.Sub(now).Truncate(time.Second), time.Second)
	}
	kr, err := s.keys(r.Context())
	if err != nil {
		s.logger().Error("token: no signing key", "err", err)
		return nil, "", 0, unavailable()
	}
	// Hex, not base64url: a jti never starts with '-', so that an
	// operator can paste it after rampart token revoke.
	var jti [16]byte
	rand.Read(jti[:])
	c := &tokenClaims{
		Issuer: s.Issuer, Subject: a.client.ID, Audience: s.Audience, ClientID: a.client.ID,
		IssuedAt: now.Unix(), Expiry: now.Add(lifetime).Unix(), ID: hex.EncodeToString(jti[:]), Scope: strings.Join(scopes, " "),
	}
	// A token of a client that authenticated with its certificate is
	// bound to it (RFC 8705 §3). One that authenticated with a secret is
	// not, whatever certificate its TLS stack sent: a binding it did not
	// ask for would make its token useless where no certificate is asked
	// for (the gateway).
	if a.method == "tls_client_auth" {
		c.Cnf = &confirmation{X5tS256: certThumbprint(verifiedClientCert(r).Raw)}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, "", 0, &oauthError{status: http.StatusInternalServerError, code: "server_error", description: "internal error"}
	}
	sig, err := kr.signer.Sign(payload)
	var compact string
	if err == nil {
		compact, err = sig.CompactSerialize()
		compact = jws.LowS(compact, jose.SignatureAlgorithm(kr.alg))
	}
	if err != nil {
		s.logger().Error("token: signing failed", "err", err)
		return nil, "", 0, unavailable()
	}
	return c, compact, lifetime, nil
}

// callerAttrs describes who asked, for the audit log: the client ID it
// claimed (when it has the syntax of one), how it authenticated, the API
// key's ID, and its address. Never a secret.
func (s *Server) callerAttrs(r *http.Request, form url.Values, a *authenticated) []slog.Attr {
	var out []slog.Attr
	switch {
	case a != nil:
		out = append(out, slog.String("client_id", a.client.ID), slog.String("auth_method", a.method))
		if a.keyID != "" {
			out = append(out, slog.String("key_id", a.keyID))
		}
	default:
		id, _, basic := r.BasicAuth()
		if basic {
			id, _ = url.QueryUnescape(id)
		} else if form != nil {
			id = form.Get("client_id")
		}
		if clientIDSyntax.MatchString(id) {
			out = append(out, slog.String("client_id", id))
		}
	}
	return out
}

// audit writes one audit line, with the client's address.
func (s *Server) audit(r *http.Request, msg string, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String("remote_addr", ratelimit.ClientAddr(r, s.TrustedProxies).String()))
	s.logger().LogAttrs(r.Context(), slog.LevelInfo, msg, attrs...)
}

// expand adds the scopes the configured hierarchy implies.
func (s *Server) expand(scopes []string) []string {
	out := slices.Clone(scopes)
	for i := 0; i < len(out); i++ {
		for _, implied := range s.ScopeImplies[out[i]] {
			if !slices.Contains(out, implied) {
				out = append(out, implied)
			}
		}
	}
	return out
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	kr, err := s.keys(r.Context())
	if err != nil {
		writeOAuthError(w, unavailable())
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(kr.jwks)
}

// metadata is RFC 8414 §3's authorization server metadata.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	iss := strings.TrimSuffix(s.Issuer, "/")
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	if s.MutualTLS {
		authMethods = append(authMethods, "tls_client_auth")
	}
	scopes := s.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                 s.Issuer,
		"token_endpoint":         iss + "/oauth2/token",
		"jwks_uri":               iss + "/oauth2/jwks",
		"introspection_endpoint": iss + "/oauth2/introspect",
		"revocation_endpoint":    iss + "/oauth2/revoke",
		"grant_types_supported":  []string{"client_credentials"},
		// REQUIRED (RFC 8414 §2), and honest: with no authorization
		// endpoint, no response type is supported.
		"response_types_supported":                      []string{},
		"token_endpoint_auth_methods_supported":         authMethods,
		"introspection_endpoint_auth_methods_supported": authMethods,
		"revocation_endpoint_auth_methods_supported":    authMethods,
		"scopes_supported":                              scopes,
		"tls_client_certificate_bound_access_tokens":    s.MutualTLS,
	})
}

// parseOwnToken checks a token this server issued: signature with one of
// its published keys, issuer, expiry. It returns nil for anything else.
func (s *Server) parseOwnToken(ctx context.Context, raw string) *tokenClaims {
	if len(raw) > 8<<10 || !jws.Compact(raw) || !jws.Canonical(raw) {
		return nil
	}
	kr, err := s.keys(ctx)
	if err != nil {
		return nil
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return nil
	}
	pub, ok := kr.pubs[tok.Headers[0].KeyID]
	if !ok {
		return nil
	}
	var c tokenClaims
	if err := tok.Claims(pub, &c); err != nil {
		return nil
	}
	if c.Issuer != s.Issuer || !s.now().Before(time.Unix(c.Expiry, 0)) {
		return nil
	}
	return &c
}

// introspect is RFC 7662's introspection endpoint, for authenticated
// clients (resource servers).
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	form, oerr := readForm(w, r)
	var caller *authenticated
	if oerr == nil {
		caller, oerr = s.authenticate(r, withoutParams(form, "token", "token_type_hint"))
	}
	if oerr != nil {
		writeOAuthError(w, oerr)
		s.audit(r, "token: introspection refused", append(s.callerAttrs(r, form, nil), slog.Int("status", oerr.status), slog.String("error", oerr.code))...)
		return
	}
	raw := form.Get("token")
	if raw == "" {
		writeOAuthError(w, badRequest("invalid_request", "token is required"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	c := s.parseOwnToken(r.Context(), raw)
	// A client introspects its own tokens; resource servers, any token,
	// with the scope that says they are one (RFC 7662 §4).
	if c != nil && c.ClientID != caller.client.ID && !slices.Contains(caller.scopes, IntrospectScope) {
		c = nil
	}
	if c != nil {
		// Revoked by jti, with its client's tokens, or its client
		// disabled: the check a Validator's Revoked makes, so that
		// introspection and validation agree (RFC 7662 §2.2).
		revoked, err := s.Revocations.TokenRevoked(r.Context(), c.ref())
		if err != nil {
			s.logger().Warn("token: checking a revocation failed", "err", err)
			writeOAuthError(w, unavailable())
			return
		}
		if revoked {
			c = nil
		}
	}
	if c == nil {
		json.NewEncoder(w).Encode(map[string]bool{"active": false})
		return
	}
	out := map[string]any{
		"active": true, "scope": c.Scope, "client_id": c.ClientID, "sub": c.Subject, "aud": c.Audience,
		"iss": c.Issuer, "exp": c.Expiry, "iat": c.IssuedAt, "jti": c.ID, "token_type": "Bearer",
	}
	if c.Cnf != nil {
		out["cnf"] = c.Cnf
	}
	json.NewEncoder(w).Encode(out)
}

// revoke is RFC 7009's revocation endpoint. A client revokes its own
// tokens; anything else (unknown, expired, another client's) is answered
// 200 all the same, as §2.2 asks for invalid tokens, so that nothing can
// be learnt by probing.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	form, oerr := readForm(w, r)
	var a *authenticated
	if oerr == nil {
		a, oerr = s.authenticate(r, withoutParams(form, "token", "token_type_hint"))
	}
	if oerr != nil {
		writeOAuthError(w, oerr)
		s.audit(r, "token: revocation refused", append(s.callerAttrs(r, form, nil), slog.Int("status", oerr.status), slog.String("error", oerr.code))...)
		return
	}
	if form.Get("token") == "" {
		writeOAuthError(w, badRequest("invalid_request", "token is required"))
		return
	}
	// token_type_hint is only a hint (RFC 7009 §2.1): access tokens are
	// the one type this server has, and they are searched whatever it
	// says.
	if c := s.parseOwnToken(r.Context(), form.Get("token")); c != nil && c.ClientID == a.client.ID {
		if err := s.Revocations.RevokeToken(r.Context(), c.ID, time.Unix(c.Expiry, 0)); err != nil {
			s.logger().Warn("token: storing a revocation failed", "err", err)
			writeOAuthError(w, unavailable())
			return
		}
		s.audit(r, "token: revoked", append(s.callerAttrs(r, form, a), slog.Int("status", http.StatusOK), slog.String("jti", c.ID))...)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func withoutParams(form url.Values, names ...string) url.Values {
	out := url.Values{}
	for k, v := range form {
		if !slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out
}
