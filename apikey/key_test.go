package apikey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/apikey"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func TestGenerateAndParse(t *testing.T) {
	for _, env := range []apikey.Env{apikey.Live, apikey.Test} {
		k, err := apikey.Generate(env)
		if err != nil {
			t.Fatal(err)
		}
		s := k.String()
		if len(s) != apikey.Len || !strings.HasPrefix(s, "rk_"+string(env)+"_") || k.Env() != env {
			t.Errorf("Generate(%s) = %q", env, s)
		}
		if strings.Trim(s[8:], base62) != "" {
			t.Errorf("%q has characters outside base62", s)
		}
		if h := k.Hint(); h != s[:12]+"…" {
			t.Errorf("Hint = %q", h)
		}
		p, err := apikey.Parse(s)
		if err != nil || p != k {
			t.Errorf("Parse(Generate()) = %v, %v", p, err)
		}
	}
	a, _ := apikey.Generate(apikey.Live)
	b, _ := apikey.Generate(apikey.Live)
	if a == b {
		t.Error("two keys are equal")
	}
	if _, err := apikey.Generate("prod"); err == nil {
		t.Error("Generate accepted environment prod")
	}
}

// Typos and random strings are refused before any lookup, and say why.
func TestParseRefuses(t *testing.T) {
	k, _ := apikey.Generate(apikey.Live)
	s := k.String()
	swap := func(i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, in string
		want     error
		msg      string
	}{
		{"empty", "", apikey.ErrInvalid, "0 characters"},
		{"short", s[:len(s)-1], apikey.ErrInvalid, "56 characters"},
		{"long", s + "a", apikey.ErrInvalid, "58 characters"},
		{"prefix", "sk_live_" + s[8:], apikey.ErrInvalid, "prefix"},
		{"environment", "rk_prod_" + s[8:], apikey.ErrInvalid, "prefix"},
		{"not base62", s[:20] + "-" + s[21:], apikey.ErrInvalid, "character 21"},
		{"typo in the random part", swap(20), apikey.ErrChecksum, "checksum"},
		{"typo in the checksum", swap(len(s) - 1), apikey.ErrChecksum, "checksum"},
		{"test key with a live checksum", "rk_test_" + s[8:], apikey.ErrChecksum, "checksum"},
	} {
		_, err := apikey.Parse(tc.in)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
		}
	}
}

// The hash is an HMAC under the pepper: another pepper, another hash.
func TestHash(t *testing.T) {
	k, _ := apikey.Generate(apikey.Live)
	a, b := apikey.Hash(k, []byte("pepper-a")), apikey.Hash(k, []byte("pepper-b"))
	if len(a) != 32 || string(a) == string(b) || string(a) == string(apikey.Hash(k, nil)) {
		t.Errorf("hashes %x %x", a, b)
	}
	if strings.Contains(string(a), k.String()) {
		t.Error("the hash holds the key")
	}
}

// FuzzParse: whatever Parse accepts is a key in its one form, and every
// single-character change to it (within the alphabet) is refused: CRC32
// catches every error of up to 32 bits in a row.
func FuzzParse(f *testing.F) {
	k, _ := apikey.Generate(apikey.Live)
	f.Add(k.String())
	k2, _ := apikey.Generate(apikey.Test)
	f.Add(k2.String())
	f.Add("rk_live_")
	f.Add(strings.Repeat("0", apikey.Len))
	f.Fuzz(func(t *testing.T, s string) {
		key, err := apikey.Parse(s)
		if err != nil {
			if !errors.Is(err, apikey.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if key.String() != s || len(s) != apikey.Len || (key.Env() != apikey.Live && key.Env() != apikey.Test) {
			t.Fatalf("accepted %q as %q", s, key)
		}
		for i := 8; i < len(s); i++ {
			for _, c := range []byte{'0', 'Z', 'z'} {
				if s[i] == c {
					continue
				}
				b := []byte(s)
				b[i] = c
				if _, err := apikey.Parse(string(b)); !errors.Is(err, apikey.ErrChecksum) {
					t.Fatalf("a change at %d (%q) was not caught: %v", i, b, err)
				}
			}
		}
	})
}
