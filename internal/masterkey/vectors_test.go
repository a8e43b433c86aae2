package masterkey

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/sealed"
)

// Fixed vectors of today's derivations, computed with this package and
// package sealed, under the master key 00 01 02 ... 1f. The package that
// replaces them (internal/secrets) must give the same bytes: API-key
// hashes, sealed signing keys and the sealed CA key of existing
// installations depend on them.
const (
	vectorMaster     = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	vectorPepper     = "6b80b7b5c48097a3f5a1d4987bb017548e1a176fd1e1965b1b42ec5306b683c3"
	vectorSigningKEK = "82541561c23b034797937d98661b1fb57d6f513cc82db42b218f634c85b34a67"
	vectorCheckKey   = "88d54df0081f926bb79f288ff4176818f6d1bd569a38fa54f157f3b1277b0133"
	vectorCheck      = "v1:OjEUEcchm00lQvSrWVjTC3ZrT69NLfmggcptOkfDAGQ"
	vectorCAKEK      = "7f345112d56f9909b920f81006b55419dc8ec639e73a0a10b418f61c811b3241"
	// An API key and its stored hash (rampart apikey create).
	vectorAPIKey     = "rk_live_dAICr2VN4pNoFlhh53QPs9R9GNT2vGdT6nD5V3cjmLt37lGJV"
	vectorAPIKeyHash = "6fa5c0a9594b3a2ae7b8714dd0ae7ae67d1ba811bedeb829be6148d61f3dfb89"
	// A token signing key as rampart token rotate-keys stored it: its
	// ID (the seal's label), public key and sealed PKCS #8.
	vectorKID    = "TZmbxptAAHQVjKKJaYPdbv1d_b9kgWmKq57sBZbVsU0"
	vectorPublic = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEi2ndj/PoX9Esb+j2WqVd7HmwA+cI/Rw527WyLM4K5rnlanHIkVW4bbXE5Y91i0P/yePgjLETDer9Acs+maZWew=="
	vectorSealed = "jl11KW7OcZqRiQmoGCWbfYpbqKhsViB5be0IdQ9Yl1JCZ3nlvnzovHrCj9M5YJCdSB3Llx7FNtWvafCVjeuX99EfSFp6ZeipXrAWi2hb7E/PrEkTpadUhkMHSbHUG0DZmMElrs29XU4C57bhUed6RbVGSxIUn/SHJgcJftLZ415ft06F1f9pk+nASEq8bRiNjb0wmqqHbddw12k4Pn2Pn2wsDnbUaA=="
)

func TestVectors(t *testing.T) {
	t.Setenv(Env, vectorMaster)
	k, err := Load(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	caKEK, err := sealed.DeriveKey(k.SigningKeyKEK, "rampart ca issuing key v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"pepper", k.Pepper, vectorPepper},
		{"signing key KEK", k.SigningKeyKEK, vectorSigningKEK},
		{"check key", k.check, vectorCheckKey},
		{"CA KEK", caKEK, vectorCAKEK},
	} {
		if hex.EncodeToString(tc.got) != tc.want {
			t.Errorf("%s: %x, want %s", tc.name, tc.got, tc.want)
		}
	}
	if got := k.checkValue(); got != vectorCheck {
		t.Errorf("check value %s, want %s", got, vectorCheck)
	}
	key, err := apikey.Parse(vectorAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(apikey.Hash(key, k.Pepper)); got != vectorAPIKeyHash {
		t.Errorf("API key hash %s, want %s", got, vectorAPIKeyHash)
	}
	sealedKey, _ := base64.StdEncoding.DecodeString(vectorSealed)
	pkcs8, err := sealed.Open(k.SigningKeyKEK, vectorKID, sealedKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := base64.StdEncoding.DecodeString(vectorPublic); !bytes.Equal(pub, want) {
		t.Error("the sealed signing key is not the one of its public key")
	}
}
