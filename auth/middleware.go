package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Authenticator checks the credential of a request and returns its
// caller. apikey.Verifier checks API keys and token.Validator bearer
// tokens; both read the credential with [ParseCredential].
//
// Authenticate returns the caller, or an error, never both nil:
//   - a [*NoCredentialError] when the request carries no credential the
//     Authenticator checks, so that [Middleware] may ask the next one;
//   - an [*Error] for a credential (or request) it refuses, and for one
//     it cannot check now (503);
//   - any other error when it cannot work at all (a misconfiguration):
//     the request is answered 500, and nothing of the error is sent.
//
// Authenticate must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// AuthenticatorFunc is a function that is an [Authenticator].
type AuthenticatorFunc func(r *http.Request) (*Principal, error)

// Authenticate returns f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*Principal, error) { return f(r) }

// Middleware returns middleware that authenticates every request with
// the first of as that checks its credential, and passes it on with the
// caller in its context ([FromContext]); otherwise it answers the refusal
// ([WriteError], realm "rampart") and next is not called. A request that
// no Authenticator takes gets 401: with no error code and a description
// of what the route accepts when it carries no credential (RFC 6750
// §3.1), invalid_token when it carries a kind none of as checks. A
// credential in its last days (Principal.Sunset) gets the Deprecation and
// Sunset headers on the answer.
//
// A nil Authenticator in as is passed over; with none, every request is
// refused.
func Middleware(as ...Authenticator) func(http.Handler) http.Handler {
	return MiddlewareRealm("", as...)
}

// MiddlewareRealm is [Middleware] with realm as the realm of the
// WWW-Authenticate challenges; "" means "rampart".
func MiddlewareRealm(realm string, as ...Authenticator) func(http.Handler) http.Handler {
	as = slices.Clone(as)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := authenticate(r, as)
			if err != nil {
				WriteError(w, realm, err)
				return
			}
			httpx.SetDeprecation(w.Header(), p.Deprecation, p.Sunset)
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
		})
	}
}

// authenticate asks as in turn.
func authenticate(r *http.Request, as []Authenticator) (*Principal, error) {
	none := &NoCredentialError{}
	if !slices.ContainsFunc(as, func(a Authenticator) bool { return a != nil }) {
		c, err := ParseCredential(r)
		if err != nil {
			return nil, err
		}
		none.Found = c.Method
	}
	for _, a := range as {
		if a == nil {
			continue
		}
		p, err := a.Authenticate(r)
		if err == nil && p == nil {
			err = errors.New("auth: an Authenticator returned neither a caller nor an error")
		}
		if err == nil {
			return p, nil
		}
		nc, ok := errors.AsType[*NoCredentialError](err)
		if !ok {
			return nil, err
		}
		none.Accepts = append(none.Accepts, nc.Accepts...)
		if nc.Found != "" {
			none.Found = nc.Found
		}
	}
	return nil, none
}

// RequireScope returns middleware that lets a request through only when
// its caller ([FromContext]) carries every one of scopes. Scopes are
// compared as exact strings: payment.write implies neither payment.read
// nor payment.withdraw, because an implied hierarchy is a privilege the
// issuer never granted. API keys and bearer tokens are authorized alike.
//
// A request without a caller gets 401 with no error code, as if it had
// no credentials (the authenticating middleware is missing or was
// skipped); a caller without a scope gets 403 insufficient_scope with the
// scope attribute listing every scope required (RFC 6750 §3.1).
//
// RequireScope panics on a scope that RFC 6749 §3.3 does not allow (such
// as one containing a space): that route could never be reached, and a
// setup-time panic says so before any request does.
func RequireScope(scopes ...string) func(http.Handler) http.Handler {
	for _, s := range scopes {
		if !httpx.IsScopeToken(s) {
			panic(fmt.Sprintf("auth: RequireScope: %q is not an RFC 6749 scope token", s))
		}
	}
	scopes = slices.Clone(scopes)
	required := strings.Join(scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := FromContext(r.Context())
			if p == nil {
				WriteError(w, "", &Error{Description: needToken, Status: http.StatusUnauthorized})
				return
			}
			var missing []string
			for _, s := range scopes {
				if !p.HasScope(s) {
					missing = append(missing, s)
				}
			}
			if len(missing) > 0 {
				WriteError(w, "", &Error{
					Code:        InsufficientScope,
					Description: "the token lacks scope " + strings.Join(missing, ", "),
					Scope:       required,
					Status:      http.StatusForbidden,
				})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
