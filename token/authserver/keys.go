package authserver

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/internal/jws"
)

// Signing-key rotation timing. Keys retired stay published until every
// token they signed has expired: the longest token lifetime plus clock
// skew.
const (
	MaxLifetime     = 24 * time.Hour
	DefaultLifetime = 15 * time.Minute
	ClockSkew       = 5 * time.Minute
	// RetiredKeyLife is how long a retired key stays in the JWKS.
	RetiredKeyLife = MaxLifetime + ClockSkew
)

// ErrNoSigningKey is returned when the store holds no current signing key
// (run rampart token rotate-keys, or let the server make the first).
var ErrNoSigningKey = errors.New("authserver: no current signing key")

// Algorithm is a signature algorithm of access tokens, by its JOSE name
// (RFC 7518 §3.1, RFC 8037 §3.1): token.Algorithm, the type a
// token.Validator's allow-list holds, so that one names what the other
// signs with.
type Algorithm = token.Algorithm

// The algorithms of signing keys: the Server signs with these two only.
const (
	// ES256 is ECDSA P-256 with SHA-256, the default.
	ES256 = token.ES256
	// EdDSA is Ed25519.
	EdDSA = token.EdDSA
)

// Signing keys are sealed with AES-256-GCM under the key-encryption key,
// bound to their key ID so that a sealed key cannot be passed off as
// another (internal/util/secrets).

func unseal(kek []byte, kid string, ciphertext []byte) ([]byte, error) {
	out, err := secrets.Open(kek, kid, ciphertext)
	if errors.Is(err, secrets.ErrOpen) {
		return nil, fmt.Errorf("authserver: signing key %s does not decrypt: wrong key encryption key, or the database was tampered with", kid)
	}
	if err != nil {
		return nil, fmt.Errorf("authserver: signing key %s: %w", kid, err)
	}
	return out, nil
}

// newStoredKey makes a signing key for alg (ES256 if empty, or EdDSA),
// sealed.
func newStoredKey(kek []byte, alg Algorithm, now time.Time) (StoredKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case ES256, "":
		alg = ES256
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return StoredKey{}, fmt.Errorf("authserver: signing algorithm %q: want ES256 or EdDSA", alg)
	}
	if err != nil {
		return StoredKey{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return StoredKey{}, err
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return StoredKey{}, err
	}
	kid := b64(tp)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return StoredKey{}, err
	}
	ciphertext, err := secrets.Seal(kek, kid, pkcs8)
	if err != nil {
		return StoredKey{}, fmt.Errorf("authserver: %w", err)
	}
	return StoredKey{ID: kid, Alg: string(alg), State: Next, Public: pub, Sealed: ciphertext, CreatedAt: now.UTC()}, nil
}

// RotateKeys moves the signing keys one step: the next key starts
// signing, the current one retires (published for RetiredKeyLife more),
// and a new next key is made and published. Run it on a schedule (say,
// monthly) with rampart token rotate-keys; every instance sharing the
// store picks the change up within a few seconds.
func RotateKeys(ctx context.Context, ks KeyStore, kek []byte, alg Algorithm, now time.Time) error {
	k, err := newStoredKey(kek, alg, now)
	if err != nil {
		return err
	}
	return ks.RotateSigningKeys(ctx, k, now.UTC(), now.UTC().Add(-RetiredKeyLife))
}

// EnsureKeys makes the first signing keys of a new store: rotating twice
// from nothing gives a current key and a next one.
func EnsureKeys(ctx context.Context, ks KeyStore, kek []byte, alg Algorithm, now time.Time) error {
	for range 2 {
		keys, err := ks.SigningKeys(ctx)
		if err != nil {
			return err
		}
		hasCurrent, hasNext := false, false
		for _, k := range keys {
			hasCurrent = hasCurrent || k.State == Current
			hasNext = hasNext || k.State == Next
		}
		if hasCurrent && hasNext {
			return nil
		}
		if err := RotateKeys(ctx, ks, kek, alg, now); err != nil {
			return err
		}
	}
	return nil
}

// keyring is what a Server signs with and publishes, loaded from the
// store.
type keyring struct {
	signer jose.Signer
	kid    string
	alg    string
	jwks   jose.JSONWebKeySet
	loaded time.Time
	pubs   map[string]crypto.PublicKey // kid -> key, for introspection
}

func loadKeyring(ctx context.Context, ks KeyStore, kek []byte, now time.Time) (*keyring, error) {
	keys, err := ks.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("authserver: loading signing keys: %w", err)
	}
	kr := &keyring{loaded: now, pubs: make(map[string]crypto.PublicKey)}
	for _, k := range keys {
		if k.State == Retired && now.Sub(k.RetiredAt) >= RetiredKeyLife {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return nil, fmt.Errorf("authserver: signing key %s: %w", k.ID, err)
		}
		kr.pubs[k.ID] = pub
		kr.jwks.Keys = append(kr.jwks.Keys, jose.JSONWebKey{Key: pub, KeyID: k.ID, Algorithm: k.Alg, Use: "sig"})
		if k.State != Current {
			continue
		}
		pkcs8, err := unseal(kek, k.ID, k.Sealed)
		if err != nil {
			return nil, err
		}
		priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
		if err != nil {
			return nil, fmt.Errorf("authserver: signing key %s: %w", k.ID, err)
		}
		opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader(jose.HeaderKey("kid"), k.ID)
		kr.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: priv}, opts)
		if err != nil {
			return nil, fmt.Errorf("authserver: signing key %s: %w", k.ID, err)
		}
		kr.kid, kr.alg = k.ID, k.Alg
	}
	if kr.signer == nil {
		return nil, ErrNoSigningKey
	}
	return kr, nil
}

// ErrNotIssued is returned by ReadIssued for a string that is not an
// access token signed by one of the store's signing keys.
var ErrNotIssued = errors.New("authserver: not an access token signed by this server's keys")

// ReadIssued checks that raw is an access token signed by one of the
// signing keys in ks, whatever their state, and returns what revoking it
// takes. It checks neither expiry nor issuer: an operator revoking a
// token needs to know it is one of ours, and which. The error wraps
// ErrNotIssued for anything else.
func ReadIssued(ctx context.Context, ks KeyStore, raw string) (token.TokenRef, error) {
	raw = strings.TrimSpace(raw)
	if len(raw) > 8<<10 || !jws.Compact(raw) || !jws.Canonical(raw) {
		return token.TokenRef{}, fmt.Errorf("%w: not a JWS in compact serialization", ErrNotIssued)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return token.TokenRef{}, fmt.Errorf("%w: malformed", ErrNotIssued)
	}
	keys, err := ks.SigningKeys(ctx)
	if err != nil {
		return token.TokenRef{}, fmt.Errorf("authserver: loading signing keys: %w", err)
	}
	for _, k := range keys {
		if k.ID != tok.Headers[0].KeyID {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return token.TokenRef{}, fmt.Errorf("authserver: signing key %s: %w", k.ID, err)
		}
		var c tokenClaims
		if err := tok.Claims(pub, &c); err != nil {
			return token.TokenRef{}, fmt.Errorf("%w: bad signature", ErrNotIssued)
		}
		if c.ID == "" || c.ClientID == "" {
			return token.TokenRef{}, fmt.Errorf("%w: no jti or client_id", ErrNotIssued)
		}
		return c.ref(), nil
	}
	return token.TokenRef{}, fmt.Errorf("%w: its key (kid %q) is not one of the store's", ErrNotIssued, httpx.Quote(tok.Headers[0].KeyID))
}

// certThumbprint is the x5t#S256 of a certificate (RFC 8705 §3.1).
func certThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return b64(sum[:])
}
