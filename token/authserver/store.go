package authserver

import (
	"context"
	"time"

	"github.com/rampartsec/rampart/token"
)

// KeyState is where a signing key is in its rotation.
type KeyState string

const (
	// Next keys are published in the JWKS but sign nothing yet, so that
	// resource servers know them before the first token they sign.
	Next KeyState = "next"
	// Current is the one key that signs.
	Current KeyState = "current"
	// Retired keys sign nothing and stay published until every token
	// they signed has expired.
	Retired KeyState = "retired"
)

// StoredKey is a signing key as the store keeps it: the public key in
// the clear, the private key sealed (AES-256-GCM under the server's key
// encryption key, the key ID as additional data).
type StoredKey struct {
	// ID is the kid: the RFC 7638 thumbprint of the public key.
	ID string
	// Alg is ES256 or EdDSA.
	Alg   string
	State KeyState
	// Public is the public key, PKIX DER.
	Public []byte
	// Sealed is nonce || ciphertext of the PKCS#8 private key.
	Sealed      []byte
	CreatedAt   time.Time
	ActivatedAt time.Time // when it became Current; zero before
	RetiredAt   time.Time // when it became Retired; zero before
}

// KeyStore keeps the token signing keys, shared by every instance.
type KeyStore interface {
	// SigningKeys returns every stored signing key.
	SigningKeys(ctx context.Context) ([]StoredKey, error)
	// RotateSigningKeys, in one transaction: the Current key (if any)
	// becomes Retired at now; the Next key (if any) becomes Current at
	// now; next is stored as the new Next; Retired keys retired before
	// dropRetiredBefore are deleted.
	RotateSigningKeys(ctx context.Context, next StoredKey, now, dropRetiredBefore time.Time) error
}

// RevocationStore keeps revoked access tokens until they would have
// expired anyway: single tokens (RFC 7009, rampart token revoke), and
// every token of a client issued up to a time (rampart token revoke
// --client, rampart client disable).
type RevocationStore interface {
	// RevokeToken revokes the token with that jti, which expires at
	// expires (when the revocation can be forgotten).
	RevokeToken(ctx context.Context, jti string, expires time.Time) error
	// RevokeClientTokens revokes every token of the client issued at or
	// before at, by their iat: every token it holds, when at is now.
	// Tokens issued later are not revoked, but a token's iat is in whole
	// seconds, so one issued within the second of at is revoked too.
	// Revoking again keeps the latest at.
	RevokeClientTokens(ctx context.Context, clientID string, at time.Time) error
	// TokenRevoked reports whether t is revoked: by its jti, by a
	// revocation of its client's tokens at or after its IssuedAt, or
	// because its client is disabled or unknown to the store. The
	// Server's introspection answers from it, and a Validator's Revoked
	// should too: then introspection and validation agree.
	TokenRevoked(ctx context.Context, t token.TokenRef) (bool, error)
	// PruneRevoked forgets revocations of tokens expired before t.
	PruneRevoked(ctx context.Context, before time.Time) error
}
