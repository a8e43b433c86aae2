// Package jws holds what the token validator and the authorization
// server both check of a JWS in compact serialization (RFC 7515 §7.1):
// its shape, its one canonical spelling, and the ECDSA twin of its
// signature.
package jws

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Compact reports whether raw has the shape of a JWS in compact
// serialization: three base64url parts. go-jose would accept the JSON
// serialization through other entry points, and base64 decoding skips
// CR and LF; checking the characters first leaves one reading of a token.
func Compact(raw string) bool {
	dots := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return dots == 2
}

// Canonical reports whether every segment of raw, a string that
// passed Compact, is base64url without padding in its one canonical
// form (RFC 7515 §2, RFC 4648 §3.5): no length that leaves a lone
// character, and no bits set past the last whole byte. Decoders
// (go-jose's included) ignore those bits, so without this check one
// token had up to hundreds of spellings: as many credentials for a
// limit keyed on the credential, and as many cache misses.
func Canonical(raw string) bool {
	for seg := range strings.SplitSeq(raw, ".") {
		if len(seg) == 0 {
			continue // refused by the parser
		}
		last := b64Value(seg[len(seg)-1])
		switch len(seg) % 4 {
		case 1:
			return false
		case 2:
			if last&0x0f != 0 {
				return false
			}
		case 3:
			if last&0x03 != 0 {
				return false
			}
		}
	}
	return true
}

// b64Value is the value of a base64url character.
func b64Value(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63
}

// Twin returns the other encoding of an ECDSA signature that verifies
// as well, (r, n - s) for (r, s) (malleability: RFC 7518 §3.4 does not
// require either), as the token raw would carry it; "" for other
// algorithms.
func Twin(raw string, alg jose.SignatureAlgorithm) string {
	var n *big.Int
	switch alg {
	case jose.ES256:
		n = elliptic.P256().Params().N
	case jose.ES384:
		n = elliptic.P384().Params().N
	case jose.ES512:
		n = elliptic.P521().Params().N
	default:
		return ""
	}
	i := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.Strict().DecodeString(raw[i+1:])
	if err != nil || len(sig)%2 != 0 {
		return ""
	}
	half := len(sig) / 2
	s := new(big.Int).SetBytes(sig[half:])
	if s.Sign() == 0 || s.Cmp(n) >= 0 {
		return ""
	}
	s.Sub(n, s)
	twin := make([]byte, len(sig))
	copy(twin, sig[:half])
	s.FillBytes(twin[half:])
	return raw[:i+1] + base64.RawURLEncoding.EncodeToString(twin)
}

// LowS returns the compact JWS raw with its ECDSA signature in low-S
// form (s <= n/2), the canonical one of the two that verify: the
// authorization server issues that one, so that its twin is never the token it issued. Other
// algorithms, and what is not an ECDSA signature, are returned as they
// are.
func LowS(raw string, alg jose.SignatureAlgorithm) string {
	twin := Twin(raw, alg)
	if twin == "" {
		return raw
	}
	sig := func(tok string) *big.Int {
		b, _ := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
		return new(big.Int).SetBytes(b[len(b)/2:])
	}
	if sig(twin).Cmp(sig(raw)) < 0 {
		return twin
	}
	return raw
}
