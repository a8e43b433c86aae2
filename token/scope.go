package token

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Principal is the authenticated caller of a request.
//
// Deprecated: Use [auth.Principal], the same type.
type Principal = auth.Principal

// FromContext returns the caller that [Validator.Middleware] (or the API
// key middleware) authenticated, or nil for an unauthenticated request.
//
// Deprecated: Use [auth.FromContext].
func FromContext(ctx context.Context) *Principal { return auth.FromContext(ctx) }

// RequireScope returns middleware that lets a request through only when
// its caller carries every one of scopes.
//
// Deprecated: Use [auth.RequireScope], which this calls.
func RequireScope(scopes ...string) func(http.Handler) http.Handler {
	return auth.RequireScope(scopes...)
}

// parseScope splits the scope claim: scope tokens separated by single
// spaces (RFC 6749 §3.3, RFC 9068 §2.2.3). An empty claim is no scope.
// Anything else (two spaces, a leading space, a quote) is refused rather
// than repaired, since a repaired scope is one the issuer did not sign.
func parseScope(s string) ([]string, bool) {
	if s == "" {
		return nil, true
	}
	scopes := strings.Split(s, " ")
	for _, t := range scopes {
		if !httpx.IsScopeToken(t) {
			return nil, false
		}
	}
	return slices.Clip(scopes), true
}
