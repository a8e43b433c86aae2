package token

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/token/internal/jws"
)

const b64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// reencodings returns every spelling of the base64url segment seg that
// a lax decoder reads as the same bytes: the last character with its
// unused low bits set every way (RFC 4648 §3.5). The first is seg.
func reencodings(seg string) []string {
	unused := map[int]uint{2: 4, 3: 2}[len(seg)%4]
	last := strings.IndexByte(b64URL, seg[len(seg)-1])
	out := []string{seg}
	for low := 1; low < 1<<unused; low++ {
		out = append(out, seg[:len(seg)-1]+string(b64URL[last|low]))
	}
	return out
}

// testTwin returns the ECDSA twin of an ES256 token: (r, s) -> (r, n - s),
// a second valid signature of the same message.
func testTwin(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s)
	twin := append([]byte{}, sig[:32]...)
	twin = append(twin, s.FillBytes(make([]byte, 32))...)
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(twin)
}

// E9: a token is one credential, not hundreds. Every non-canonical
// re-encoding of any segment is refused (RFC 7515 §2: BASE64URL is the
// unpadded encoding of RFC 4648 §5, whose §3.5 canonical form has no bits
// set past the data), so that `by: [credential]` limits and the cache
// see one string per token (CWE-180, CWE-697).
func TestRFC7515_2_CanonicalBase64URL(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	// A payload whose length leaves unused bits, whatever the claims.
	var tok string
	for i := 0; ; i++ {
		tok = k.mint(t, with(clock.Now(), map[string]any{"jti": strings.Repeat("j", i+1)}), nil)
		parts := strings.Split(tok, ".")
		if len(parts[0])%4 > 1 && len(parts[1])%4 > 1 {
			break
		}
	}
	parts := strings.Split(tok, ".")
	hs, ps, ss := reencodings(parts[0]), reencodings(parts[1]), reencodings(parts[2])
	total := len(hs) * len(ps) * len(ss)
	if total < 64 {
		t.Fatalf("only %d spellings: the test token leaves too few unused bits", total)
	}
	accepted := 0
	for _, h := range hs {
		for _, p := range ps {
			for _, s := range ss {
				raw := h + "." + p + "." + s
				_, err := v.Validate(context.Background(), raw, nil)
				if raw == tok {
					if err != nil {
						t.Fatalf("the canonical token: %v", err)
					}
					accepted++
					continue
				}
				if err == nil {
					accepted++
					continue
				}
				if code, d := codeOf(t, err); code != InvalidToken || !strings.Contains(d, "canonical") {
					t.Errorf("re-encoding: %s %q, want invalid_token naming the encoding", code, d)
				}
			}
		}
	}
	if accepted != 1 {
		t.Errorf("%d of the %d spellings of one token were accepted, want 1", accepted, total)
	}
	// The twin check comes after the encoding check: a segment that
	// leaves a lone character is refused too.
	for _, raw := range []string{parts[0] + "A." + parts[1] + "." + parts[2], parts[0] + "." + parts[1] + "." + parts[2] + "AAAAA"} {
		if _, err := v.Validate(context.Background(), raw, nil); err == nil {
			t.Errorf("a segment of impossible length accepted: %q", raw)
		}
	}
}

// E9 continued: the ECDSA twin (r, n - s) of a signature is valid too
// (RFC 7518 §3.4 does not require low S, and issuers other than this
// package's Server produce either), but it is the same token: it is
// served from the cache entry of its twin, not verified afresh, and
// revoked with it. The Server signs with low S only.
func TestECDSATwinIsTheSameToken(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256)
	v := staticValidator(clock, k)
	tok := k.mint(t, claimsAt(clock.Now()), nil)
	twin := testTwin(t, tok)
	if _, err := v.Validate(context.Background(), tok, nil); err != nil {
		t.Fatal(err)
	}
	if e := v.cache.get(sha256.Sum256([]byte(twin))); e == nil {
		t.Error("the twin of a validated token is not in the cache: each twin costs a signature check")
	}
	p, err := v.Validate(context.Background(), twin, nil)
	if err != nil || p.TokenID != "jti-1" {
		t.Fatalf("the twin: %+v %v", p, err)
	}
	if n := len(v.cache.m); n != 2 {
		t.Errorf("cache holds %d entries, want the token and its twin (2)", n)
	}
}

// The Server's ES256 signatures have low S (s <= n/2), so that the token
// it issues is the canonical one of the two.
func TestServerSignsLowS(t *testing.T) {
	half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	k := newKey(t, jose.ES256)
	for range 64 {
		tok := jws.LowS(sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, k.kid, claimsAt(t0), nil), jose.ES256)
		sig, _ := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
		if new(big.Int).SetBytes(sig[32:]).Cmp(half) > 0 {
			t.Fatalf("high S after lowS: %s", tok)
		}
		if _, err := staticValidator(newClock(), k).Validate(context.Background(), tok, nil); err != nil {
			t.Fatalf("lowS broke the signature: %v", err)
		}
	}
}
