package token

import "time"

// TokenRef identifies an access token for revocation: what
// [Validator.Revoked] is asked of, and what an authorization server's
// revocation store (authserver.RevocationStore) needs to know of it.
type TokenRef struct {
	// JTI is its jti claim.
	JTI string
	// ClientID is its client_id claim.
	ClientID string
	// IssuedAt is its iat claim (whole seconds).
	IssuedAt time.Time
	// Expires is its exp claim; zero when not known.
	Expires time.Time
}
