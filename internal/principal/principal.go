// Package principal carries the authenticated caller of a request through
// its context, whichever way it authenticated (an API key, a bearer
// token), so that one scope check serves both. Packages apikey and token
// re-export the type as apikey.Principal and token.Principal.
package principal

import (
	"context"
	"slices"
	"time"
)

// Method says how a principal authenticated.
type Method string

const (
	APIKey Method = "api-key"
	Bearer Method = "bearer"
)

// Principal is an authenticated caller.
type Principal struct {
	// Subject is who the credential speaks for; for client credentials,
	// the client itself.
	Subject string
	// ClientID is the OAuth2 client or API-key owner.
	ClientID string
	// Scopes are the permissions the credential carries, exact strings.
	Scopes []string
	Method Method
	// KeyID is the API key's ID (Method APIKey); TokenID the token's jti
	// (Method Bearer).
	KeyID   string
	TokenID string
	// Expires is when the credential stops working; zero if never.
	Expires time.Time
}

// HasScope reports whether p carries scope s, compared exactly.
func (p *Principal) HasScope(s string) bool { return p != nil && slices.Contains(p.Scopes, s) }

type key struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, key{}, p)
}

// From returns the principal of ctx, or nil.
func From(ctx context.Context) *Principal {
	p, _ := ctx.Value(key{}).(*Principal)
	return p
}
