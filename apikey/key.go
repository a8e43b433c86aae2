// Package apikey issues, checks and rotates API keys.
//
// # Format
//
// A key reads "rk_live_" (or "rk_test_"), then 43 base62 characters of
// randomness (256 bits), then 6 base62 characters of CRC32 checksum over
// everything before them:
//
//	rk_live_7Gq0c1o0mZ5tq9d1Y2f3pXcQ3y0vR8s9K4j2L6h5N1b0a8fG2uVbN
//
// The prefix lets secret scanners find leaked keys and people tell live
// from test; the checksum lets [Parse], and scanners, reject typos and
// random strings before any lookup. The checksum is not secret and proves
// nothing: only the stored hash authenticates a key.
//
// # Storage
//
// A key is shown once, when it is made. The store keeps only its
// HMAC-SHA256 under a server pepper ([Hash]; keys are high-entropy, so a
// fast hash is right and a slow one would only cost throughput), and a
// hint for people ([Key.Hint], "rk_live_7Gq0…").
//
// # Verification and rotation
//
// A [Verifier] finds the key by its hash, checks its client, status,
// expiry and rotation grace, caches the result briefly, and notices
// revocations made by any instance sharing the store within
// [Verifier.RevocationCheck]. A Verifier is an auth.Authenticator
// ([Verifier.Authenticate]; the key's details with
// [Verifier.VerifyRequest]): [Verifier.Middleware], or auth.Middleware
// with bearer tokens too, authenticates requests ("Authorization: Bearer
// rk_..." or "X-API-Key", read by auth.ParseCredential); a key in its
// rotation grace period still works and gets Deprecation and Sunset
// headers. A refused key is a [*RefusedError]. A [Manager] creates,
// rotates and revokes keys.
package apikey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
)

// Env is the environment a key belongs to, in its prefix.
type Env string

const (
	Live Env = "live"
	Test Env = "test"
)

const (
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomLen   = 43 // 62^43 > 2^256
	checksumLen = 6  // 62^6 > 2^32
	prefixLen   = len("rk_live_")
	// Len is the length of every key.
	Len = prefixLen + randomLen + checksumLen
	// hintLen is how much of the random part a hint shows: 24 bits, so
	// the rest keeps 232.
	hintLen = 4
)

// Key is an API key in its one valid form. Its String is the secret:
// never log it.
type Key struct{ s string }

// String returns the key itself.
func (k Key) String() string { return k.s }

// Env returns the key's environment.
func (k Key) Env() Env { return Env(k.s[3:7]) }

// Hint returns what may be shown of the key: its prefix and the first
// characters of its random part, "rk_live_7Gq0…".
func (k Key) Hint() string { return k.s[:prefixLen+hintLen] + "…" }

// Errors of Parse, the Reasons of its [*RefusedError]s. ErrChecksum
// wraps ErrInvalid.
var (
	ErrInvalid  = errors.New("apikey: " + notAKey)
	ErrChecksum = fmt.Errorf("%w: %s", ErrInvalid, badChecksum)
)

const (
	notAKey     = "not an API key"
	badChecksum = "checksum mismatch (a typo, or not a key this server issues)"
)

// Generate makes a new key for env.
func Generate(env Env) (Key, error) {
	if env != Live && env != Test {
		return Key{}, fmt.Errorf("apikey: environment %q: want live or test", env)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Key{}, err
	}
	body := "rk_" + string(env) + "_" + base62(new(big.Int).SetBytes(raw[:]), randomLen)
	return Key{body + checksum(body)}, nil
}

// Parse checks that s is an API key: length, prefix, alphabet, checksum.
// It does not say whether the key exists; a [Verifier] does. The error
// is a [*RefusedError] whose Reason is ErrInvalid or ErrChecksum.
func Parse(s string) (Key, error) {
	switch {
	case len(s) != Len:
		return Key{}, keyRefusedf(ErrInvalid, "%s: %d characters, want %d", notAKey, len(s), Len)
	case !strings.HasPrefix(s, "rk_live_") && !strings.HasPrefix(s, "rk_test_"):
		return Key{}, keyRefusedf(ErrInvalid, "%s: want the prefix rk_live_ or rk_test_", notAKey)
	}
	for i := prefixLen; i < len(s); i++ {
		if !isBase62[s[i]] {
			return Key{}, keyRefusedf(ErrInvalid, "%s: character %d is not base62", notAKey, i+1)
		}
	}
	body := s[:Len-checksumLen]
	if checksum(body) != s[Len-checksumLen:] {
		return Key{}, &RefusedError{Reason: ErrChecksum, Description: notAKey + ": " + badChecksum}
	}
	return Key{s}, nil
}

// Hash returns the key's HMAC-SHA256 under pepper, what the store keeps
// and looks keys up by. A nil pepper gives plain SHA-256; use a pepper, so
// that a stolen database does not let anyone test guesses offline.
func Hash(k Key, pepper []byte) []byte {
	if pepper == nil {
		sum := sha256.Sum256([]byte(k.s))
		return sum[:]
	}
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(k.s))
	return m.Sum(nil)
}

var isBase62 = func() (t [256]bool) {
	for i := range len(alphabet) {
		t[alphabet[i]] = true
	}
	return t
}()

func checksum(body string) string {
	n := crc32.ChecksumIEEE([]byte(body))
	var b [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		b[i] = alphabet[n%62]
		n /= 62
	}
	return string(b[:])
}

// base62 writes n in exactly width digits, most significant first.
func base62(n *big.Int, width int) string {
	b := make([]byte, width)
	base := big.NewInt(62)
	m := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, m)
		b[i] = alphabet[m.Int64()]
	}
	return string(b)
}
