// Package signedct verifies what Certificate Transparency logs sign: the
// TLS DigitallySigned struct (RFC 5246 §4.7) with the algorithms RFC 6962
// §2.1.4 allows, ECDSA P-256 or RSA with SHA-256, and reads log keys.
// Package ct (tree heads) and package pin (SCTs) share it.
package signedct

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// ErrSignature is wrapped by the errors of signatures that do not verify.
var ErrSignature = errors.New("signature does not verify")

// TLS 1.2 SignatureAndHashAlgorithm values (RFC 5246 §7.4.1.4.1).
const (
	hashSHA256 = 4
	sigRSA     = 1
	sigECDSA   = 3
)

// Verify checks the DigitallySigned ds over msg with key: SHA-256 with
// ECDSA (an ASN.1 signature) or RSA PKCS #1 v1.5, matching the key's type.
func Verify(key crypto.PublicKey, msg, ds []byte) error {
	s := cryptobyte.String(ds)
	var hash, alg uint8
	var sig cryptobyte.String
	if !s.ReadUint8(&hash) || !s.ReadUint8(&alg) || !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return fmt.Errorf("%w: malformed DigitallySigned", ErrSignature)
	}
	if hash != hashSHA256 {
		return fmt.Errorf("%w: hash algorithm %d, not SHA-256", ErrSignature, hash)
	}
	digest := sha256.Sum256(msg)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg != sigECDSA {
			return fmt.Errorf("%w: signature algorithm %d for an ECDSA key", ErrSignature, alg)
		}
		if !ecdsa.VerifyASN1(k, digest[:], sig) {
			return ErrSignature
		}
	case *rsa.PublicKey:
		if alg != sigRSA {
			return fmt.Errorf("%w: signature algorithm %d for an RSA key", ErrSignature, alg)
		}
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
			return ErrSignature
		}
	default:
		return fmt.Errorf("%w: unsupported key %T", ErrSignature, key)
	}
	return nil
}

// ParseKey reads a log's DER SubjectPublicKeyInfo: RFC 6962 §2.1.4 allows
// ECDSA P-256 and RSA; browsers require RSA keys of at least 2048 bits.
func ParseKey(der []byte) (crypto.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("key: %v", err)
	}
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key: ECDSA on %s, not P-256", k.Curve.Params().Name)
		}
		return k, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key: RSA of %d bits, fewer than 2048", k.N.BitLen())
		}
		return k, nil
	}
	return nil, fmt.Errorf("key: %T is not an ECDSA P-256 or RSA key", k)
}
