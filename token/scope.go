package token

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rampartsec/rampart/internal/principal"
)

// Principal is the authenticated caller of a request. It is the same type
// as apikey.Principal, so that [RequireScope] serves bearer tokens and API
// keys alike.
type Principal = principal.Principal

// FromContext returns the caller that [Validator.Middleware] (or the API
// key middleware) authenticated, or nil for an unauthenticated request.
// The Principal may be shared with other requests: treat it as read-only.
func FromContext(ctx context.Context) *Principal { return principal.From(ctx) }

// RequireScope returns middleware that lets a request through only when
// its caller (see [FromContext]) carries every one of scopes. Scopes are
// compared as exact strings: payment.write implies neither payment.read
// nor payment.withdraw, because an implied hierarchy is a privilege the
// issuer never granted.
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
		if !valIsScopeToken(s) {
			panic(fmt.Sprintf("token: RequireScope: %q is not an RFC 6749 scope token", s))
		}
	}
	scopes = slices.Clone(scopes)
	required := strings.Join(scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := FromContext(r.Context())
			if p == nil {
				valWriteError(w, "", valNoCredentials())
				return
			}
			var missing []string
			for _, s := range scopes {
				if !p.HasScope(s) {
					missing = append(missing, s)
				}
			}
			if len(missing) > 0 {
				valWriteError(w, "", &Error{
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

// valParseScope splits the scope claim: scope tokens separated by single
// spaces (RFC 6749 §3.3, RFC 9068 §2.2.3). An empty claim is no scope.
// Anything else (two spaces, a leading space, a quote) is refused rather
// than repaired, since a repaired scope is one the issuer did not sign.
func valParseScope(s string) ([]string, bool) {
	if s == "" {
		return nil, true
	}
	scopes := strings.Split(s, " ")
	for _, t := range scopes {
		if !valIsScopeToken(t) {
			return nil, false
		}
	}
	return slices.Clip(scopes), true
}

// valIsScopeToken reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func valIsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 0x21 && (c < 0x23 || c > 0x5B) && (c < 0x5D || c > 0x7E) {
			return false
		}
	}
	return true
}
