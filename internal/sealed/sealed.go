// Package sealed encrypts small secrets at rest — the CA's issuing key in
// its file, the token signing keys in the store — with AES-256-GCM under a
// key-encryption key derived from the master key (package masterkey).
//
// # Format
//
// A sealed secret is nonce (12 random bytes) || ciphertext || tag. Each is
// bound to a label, the additional authenticated data, that says what the
// secret is ("rampart ca issuing key pay.internal"): a sealed secret moved
// to another place, or passed off as another, does not open.
//
// # Keys
//
// [DeriveKey] makes a purpose-specific key-encryption key from a 32-byte
// secret with HKDF-SHA256, so that one master key serves many purposes
// without any two sharing a key.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrOpen is returned by Open when a sealed secret does not decrypt: the
// wrong key or label, or tampering.
var ErrOpen = errors.New("sealed: does not decrypt: wrong key, or the file was tampered with")

// DeriveKey derives a 32-byte key-encryption key for purpose from secret
// (HKDF-SHA256, purpose as info).
func DeriveKey(secret []byte, purpose string) ([]byte, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("sealed: secret of %d bytes, want at least 32", len(secret))
	}
	return hkdf.Key(sha256.New, secret, nil, purpose, 32)
}

// Seal encrypts plaintext under kek (32 bytes), bound to label.
func Seal(kek []byte, label string, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, []byte(label)), nil
}

// Open decrypts what Seal made with the same kek and label.
func Open(kek []byte, label string, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(label))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("sealed: key-encryption key of %d bytes, want 32", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
