package apikey

import (
	"errors"
	"net/http"
	"time"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// ErrNoKey is what errors.Is reports for the error of a request without
// an API key: a [*auth.NoCredentialError].
//
// Deprecated: Use [auth.ErrNoCredential], the same value.
var ErrNoKey = auth.ErrNoCredential

// ErrTwoCredentials is wrapped by the refusal of a request that carries
// more than one credential.
//
// Deprecated: Use [auth.ErrTwoCredentials], the same value.
var ErrTwoCredentials = auth.ErrTwoCredentials

// CheckOneCredential returns an error wrapping ErrTwoCredentials when r
// carries more than one credential header.
//
// Deprecated: Use [auth.ParseCredential], which refuses such a request
// (and every other malformed credential).
func CheckOneCredential(r *http.Request) error {
	if _, err := auth.ParseCredential(r); errors.Is(err, auth.ErrTwoCredentials) {
		return ErrTwoCredentials
	}
	return nil
}

// FromRequest returns the API key a request carries: the X-API-Key
// header, or an "Authorization: Bearer rk_..." header. ok is false when
// there is none, and when [auth.ParseCredential] refuses the request.
//
// Deprecated: Use [auth.ParseCredential]: an API key is a Credential of
// Method auth.APIKey.
func FromRequest(r *http.Request) (key string, ok bool) {
	c, err := auth.ParseCredential(r)
	if err != nil || c.Method != auth.APIKey {
		return "", false
	}
	return c.Value, true
}

// VerifyRequest verifies the API key of r, read by
// [auth.ParseCredential] (X-API-Key, or Authorization: Bearer rk_...),
// and returns what [Verifier.Verify] says of it. The error is a
// [*auth.NoCredentialError] when r carries no API key, so that a caller
// accepting other credentials too can try those, and otherwise an
// [*auth.Error]: 400 for a malformed request, 401 invalid_token for a
// key refused (wrapping its [*RefusedError]), 503 when the store cannot
// answer (wrapping the store's error).
func (v *Verifier) VerifyRequest(r *http.Request) (*Verified, error) {
	c, err := auth.ParseCredential(r)
	if err != nil {
		return nil, err
	}
	if c.Method != auth.APIKey {
		return nil, &auth.NoCredentialError{Accepts: []auth.Method{auth.APIKey}, Found: c.Method}
	}
	ver, err := v.Verify(r.Context(), c.Value)
	if err != nil {
		return nil, refusal(err)
	}
	return ver, nil
}

// Authenticate is [Verifier.VerifyRequest]'s caller: v is an
// [auth.Authenticator]. A nil *Verifier checks no key: every request is
// one without a credential for it (a [*auth.NoCredentialError] that
// accepts nothing), so that [auth.Middleware] refuses API keys.
func (v *Verifier) Authenticate(r *http.Request) (*auth.Principal, error) {
	if v == nil {
		c, err := auth.ParseCredential(r)
		if err != nil {
			return nil, err
		}
		return nil, &auth.NoCredentialError{Found: c.Method}
	}
	ver, err := v.VerifyRequest(r)
	if err != nil {
		return nil, err
	}
	return ver.Principal, nil
}

// refusal is the auth.Error that answers err, an error of Verify.
func refusal(err error) *auth.Error {
	if re, ok := errors.AsType[*RefusedError](err); ok {
		return &auth.Error{Code: auth.InvalidToken, Status: http.StatusUnauthorized, Description: re.Description, Err: err}
	}
	// The store failed: not the client's fault, and nothing to tell.
	return &auth.Error{Code: auth.TemporarilyUnavailable, Status: http.StatusServiceUnavailable,
		Description: "the key store cannot answer now; retry shortly", RetryAfter: time.Second, Err: err}
}

// Middleware authenticates every request by API key and puts the caller
// in the request's context ([auth.FromContext]): [auth.Middleware] with v
// alone. Without a valid key: 401, with WWW-Authenticate as for a bearer
// token (RFC 6750 §3), since keys may be sent as one. A key in its
// rotation grace period works, and the answer says so: Deprecation (RFC
// 9745) and Sunset (RFC 8594) headers.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return auth.Middleware(v)(next)
}

// Deprecate sets the Deprecation and Sunset headers for a key in its
// rotation grace period, so that the client's operators see it is time to
// switch. [auth.Middleware] sets them for every caller that needs them.
func Deprecate(w http.ResponseWriter, ver *Verified) {
	if !ver.Deprecated {
		return
	}
	httpx.SetDeprecation(w.Header(), ver.RotatedAt, ver.Sunset)
}

// Unauthorized writes the answer to err, an error of VerifyRequest or
// Verify: 401 (RFC 6750 §3.1, with no error code for a request without
// a key), 400 invalid_request for a malformed request, 503 when the store
// failed.
//
// Deprecated: Use [auth.WriteError]; the errors of VerifyRequest and
// Authenticate are what it takes.
func Unauthorized(w http.ResponseWriter, err error) {
	var e error
	switch {
	case errors.As(err, new(*auth.NoCredentialError)), errors.As(err, new(*auth.Error)):
		e = err
	case errors.Is(err, ErrNoKey):
		e = &auth.NoCredentialError{Accepts: []auth.Method{auth.APIKey}}
	default:
		e = refusal(err)
	}
	auth.WriteError(w, "", e)
}
