package auth

import (
	"context"
	"slices"
	"time"
)

// Method says how a caller authenticated, and the kind of a credential.
type Method string

const (
	// APIKey is an API key (package apikey), sent in X-API-Key or as a
	// bearer credential.
	APIKey Method = "api-key"
	// Bearer is an OAuth2 access token (package token), sent as a bearer
	// credential (RFC 6750 §2.1).
	Bearer Method = "bearer"
)

// Principal is an authenticated caller. Principals may be shared between
// requests (an Authenticator's cache): treat them as read-only.
type Principal struct {
	// Subject is who the credential speaks for; for client credentials,
	// the client itself.
	Subject string
	// ClientID is the OAuth2 client or API-key owner.
	ClientID string
	// Scopes are the permissions the credential carries, exact strings.
	Scopes []string
	// Method is how the caller authenticated.
	Method Method
	// KeyID is the API key's ID (Method APIKey); TokenID the token's jti
	// (Method Bearer).
	KeyID   string
	TokenID string
	// Expires is when the credential stops working; zero if never.
	Expires time.Time
	// Sunset is set for a credential that is being retired and works
	// until then: an API key rotated out, in its grace period.
	// Deprecation is when it was retired (when its replacement was made),
	// zero if that is not known. [Middleware] tells the client with the
	// Deprecation (RFC 9745) and Sunset (RFC 8594) headers, so that its
	// operators see it is time to switch.
	Sunset      time.Time
	Deprecation time.Time
}

// HasScope reports whether p carries scope s, compared exactly. A nil
// Principal has no scope.
func (p *Principal) HasScope(s string) bool { return p != nil && slices.Contains(p.Scopes, s) }

type contextKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, contextKey{}, p)
}

// FromContext returns the caller that [Middleware] (or another
// authenticating middleware, through [NewContext]) put in ctx, or nil for
// an unauthenticated request.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(contextKey{}).(*Principal)
	return p
}
