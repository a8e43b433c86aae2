package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
)

// errPrivateKey is returned where a public key is wanted and a private
// key was given: the private key belongs on the signing machine only.
var errPrivateKey = errors.New("bundle: this is a private key; give the public key (rampart bundle keygen writes NAME.pub)")

// Keys is a set of trusted bundle signing keys, indexed by key ID (the
// RFC 7638 thumbprint, see [KeyID]). Several keys let a signing key be
// rotated: ship the new key's public half, sign with it, then drop the
// old one. The zero Keys is an empty set. Keys is safe for concurrent use.
type Keys struct {
	mu   sync.RWMutex
	keys map[string]trustedKey
}

type trustedKey struct {
	pub crypto.PublicKey
	alg jose.SignatureAlgorithm
}

// NewKeys returns a set holding pubs, which must be ECDSA P-256 or P-384
// or Ed25519 public keys.
func NewKeys(pubs ...crypto.PublicKey) (*Keys, error) {
	k := new(Keys)
	for _, p := range pubs {
		if err := k.Add(p); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Add adds a public key to the set. Adding a key already present does
// nothing.
func (k *Keys) Add(pub crypto.PublicKey) error {
	alg, err := algFor(pub)
	if err != nil {
		return err
	}
	kid, err := KeyID(pub)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]trustedKey)
	}
	k.keys[kid] = trustedKey{pub: pub, alg: alg}
	return nil
}

// Merge adds the keys of other to the set, for trust read from several
// files. other is not changed.
func (k *Keys) Merge(other *Keys) error {
	if other == nil || other == k {
		return nil
	}
	other.mu.RLock()
	add := make(map[string]trustedKey, len(other.keys))
	for id, t := range other.keys {
		add[id] = t
	}
	other.mu.RUnlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]trustedKey, len(add))
	}
	for id, t := range add {
		k.keys[id] = t
	}
	return nil
}

// IDs returns the key IDs of the set, sorted.
func (k *Keys) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Len returns the number of keys in the set.
func (k *Keys) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

func (k *Keys) get(kid string) (trustedKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	t, ok := k.keys[kid]
	return t, ok
}

// JWKS returns the set as a JSON Web Key Set (RFC 7517 §5), each key with
// its kid, alg and "use":"sig", sorted by kid: the form to embed in a
// client's configuration. [ParseKeys] reads it back.
func (k *Keys) JWKS() ([]byte, error) {
	k.mu.RLock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(k.keys))}
	for kid, t := range k.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: t.pub, KeyID: kid, Algorithm: string(t.alg), Use: "sig"})
	}
	k.mu.RUnlock()
	slices.SortFunc(set.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("bundle: encoding JWKS: %w", err)
	}
	return out, nil
}

// ParseKeys reads trusted public keys from any sequence of PEM "PUBLIC KEY"
// blocks (what `rampart bundle keygen` writes to NAME.pub), JWKs and JWK
// Sets (JSON), separated by white space. It refuses private keys, which
// must never ship in a client, keys of other types than ECDSA P-256,
// P-384 and Ed25519, a JWK whose kid is not its RFC 7638 thumbprint, or
// whose alg or use say it is not a bundle signing key, and input without
// any key.
func ParseKeys(data []byte) (*Keys, error) {
	k := new(Keys)
	rest := data
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		switch {
		case bytes.HasPrefix(rest, []byte("-----BEGIN ")):
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				return nil, errors.New("bundle: keys: malformed PEM block")
			}
			if err := k.addPEM(block); err != nil {
				return nil, err
			}
		case rest[0] == '{':
			dec := json.NewDecoder(bytes.NewReader(rest))
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("bundle: keys: malformed JSON: %v", err)
			}
			rest = rest[dec.InputOffset():]
			if err := k.addJSON(raw); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("bundle: keys: want PEM PUBLIC KEY blocks, a JWK or a JWK Set")
		}
	}
	if k.Len() == 0 {
		return nil, errors.New("bundle: keys: no key found")
	}
	return k, nil
}

func (k *Keys) addPEM(b *pem.Block) error {
	switch {
	case b.Type == "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return fmt.Errorf("bundle: keys: %w", err)
		}
		return k.Add(pub)
	case strings.Contains(b.Type, "PRIVATE KEY"):
		return errPrivateKey
	case b.Type == "CERTIFICATE":
		return errors.New("bundle: keys: a certificate is not a bundle signing key; give the public key (PEM PUBLIC KEY)")
	default:
		return fmt.Errorf("bundle: keys: PEM block %q: want PUBLIC KEY", b.Type)
	}
}

func (k *Keys) addJSON(raw []byte) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return fmt.Errorf("bundle: keys: %v", err)
	}
	if _, ok := probe["keys"]; ok {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(raw, &set); err != nil {
			return fmt.Errorf("bundle: keys: JWK Set: %v", err)
		}
		if len(set.Keys) == 0 {
			return errors.New("bundle: keys: empty JWK Set")
		}
		for _, j := range set.Keys {
			if err := k.addJWK(j); err != nil {
				return err
			}
		}
		return nil
	}
	return k.addJWK(raw)
}

func (k *Keys) addJWK(raw []byte) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return fmt.Errorf("bundle: keys: JWK: %v", err)
	}
	if _, ok := probe["d"]; ok {
		return errPrivateKey
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("bundle: keys: JWK: %v", err)
	}
	if _, ok := jwk.Key.([]byte); ok {
		return errors.New("bundle: keys: a symmetric (oct) key cannot verify bundles; give the signing key's public key")
	}
	if !jwk.IsPublic() {
		return errPrivateKey
	}
	alg, err := algFor(jwk.Key)
	if err != nil {
		return err
	}
	kid, err := KeyID(jwk.Key)
	if err != nil {
		return err
	}
	if jwk.KeyID != "" && jwk.KeyID != kid {
		return fmt.Errorf("bundle: keys: JWK kid %q is not the key's RFC 7638 thumbprint %q, which is what bundles name", truncate(jwk.KeyID), kid)
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(alg) {
		return fmt.Errorf("bundle: keys: JWK %s: alg %q, but the key signs with %s", kid, truncate(jwk.Algorithm), alg)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return fmt.Errorf("bundle: keys: JWK %s: use %q: want sig", kid, truncate(jwk.Use))
	}
	return k.Add(jwk.Key)
}

// KeyID returns the key ID of a bundle signing public key: its RFC 7638
// JWK thumbprint (SHA-256), base64url without padding. It is the kid of
// every bundle the key signs.
func KeyID(pub crypto.PublicKey) (string, error) {
	if _, err := algFor(pub); err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// algFor returns the one algorithm a key signs bundles with, and refuses
// keys that cannot.
func algFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", errors.New("bundle: nil ECDSA key")
		}
		// ECDH validates the point (on the curve, not infinity).
		if _, err := k.ECDH(); err != nil {
			return "", fmt.Errorf("bundle: invalid ECDSA public key: %w", err)
		}
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("bundle: ECDSA curve %s is not accepted (want P-256 or P-384)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", errors.New("bundle: invalid Ed25519 public key")
		}
		return jose.EdDSA, nil
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		return "", errPrivateKey
	case *rsa.PublicKey:
		return "", errors.New("bundle: RSA keys are not accepted (want ECDSA P-256, P-384 or Ed25519)")
	}
	return "", fmt.Errorf("bundle: key type %T is not accepted (want ECDSA P-256, P-384 or Ed25519)", pub)
}

// Algorithm is a signature algorithm of bundles, by its JOSE name (RFC
// 7518 §3.1, RFC 8037 §3.1). A key signs with one algorithm, which
// follows from it: ECDSA P-256 with ES256, P-384 with ES384, Ed25519 with
// EdDSA.
type Algorithm string

// The algorithms bundles are signed with.
const (
	// ES256 is ECDSA P-256 with SHA-256, the default.
	ES256 Algorithm = "ES256"
	// ES384 is ECDSA P-384 with SHA-384.
	ES384 Algorithm = "ES384"
	// EdDSA is Ed25519.
	EdDSA Algorithm = "EdDSA"
)

// GenerateKey returns a new signing key for alg: ES256 (ECDSA P-256, the
// default when alg is empty), ES384 (ECDSA P-384) or EdDSA (Ed25519).
func GenerateKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case "", ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("bundle: algorithm %q: want ES256, ES384 or EdDSA", alg)
}

// MarshalPrivateKey encodes a signing key as a PEM "PRIVATE KEY" (PKCS #8)
// block. It holds the secret: write it with mode 0600, or better keep it
// in a KMS.
func MarshalPrivateKey(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return nil, errors.New("bundle: no key")
	}
	if _, err := algFor(k.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey encodes a public key as a PEM "PUBLIC KEY"
// (SubjectPublicKeyInfo) block, which [ParseKeys] reads.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	if _, err := algFor(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a signing key from one PEM block: "PRIVATE KEY"
// (PKCS #8, what [MarshalPrivateKey] writes) or "EC PRIVATE KEY" (SEC 1).
// Encrypted keys and keys of other types are refused.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("bundle: private key: no PEM block found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("bundle: private key: data after the PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("bundle: private key: encrypted keys are not supported")
	case "PUBLIC KEY":
		return nil, errors.New("bundle: this is a public key; signing needs the private key")
	default:
		return nil, fmt.Errorf("bundle: private key: PEM block %q: want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("bundle: private key: type %T cannot sign", key)
	}
	if _, err := algFor(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}
