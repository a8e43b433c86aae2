package secrets_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/util/secrets"
)

// Fixed vectors computed with the packages this one replaced (masterkey
// and sealed, at commit c52dee1, internal/masterkey/vectors_test.go),
// under the master key 00 01 02 ... 1f. Existing installations depend on
// these bytes: the API-key hashes in their databases, their sealed token
// signing keys and their sealed CA issuing keys
// (internal/app/controlplane's TestOpenCAOfAnEarlierRelease).
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

// vectorMasterKey loads the master key of the vectors.
func vectorMasterKey(t *testing.T) *secrets.Master {
	t.Helper()
	t.Setenv(secrets.Env, vectorMaster)
	m, err := secrets.Load(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// records is a database holding a check value, or none, and nothing else.
type records struct{ check string }

func (r *records) CheckValue(context.Context) (string, error) { return r.check, nil }
func (r *records) InitCheckValue(_ context.Context, v string) (string, error) {
	if r.check == "" {
		r.check = v
	}
	return r.check, nil
}
func (r *records) SealedSigningKey(context.Context) (string, []byte, bool, error) {
	return "", nil, false, nil
}
func (r *records) HasClients(context.Context) (bool, error) { return false, nil }

// Every purpose's key, the check value, an API key's hash and a sealed
// signing key are byte for byte what the earlier packages made.
func TestVectors(t *testing.T) {
	m := vectorMasterKey(t)
	for _, tc := range []struct {
		p    secrets.Purpose
		want string
	}{
		{secrets.APIKeyPepper, vectorPepper},
		{secrets.SigningKeyKEK, vectorSigningKEK},
		{secrets.CheckKey, vectorCheckKey},
		{secrets.CAKeyKEK, vectorCAKEK},
	} {
		if got := hex.EncodeToString(m.Key(tc.p)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.p, got, tc.want)
		}
	}

	db := &records{}
	if err := secrets.Verify(context.Background(), db, m); err != nil || db.check != vectorCheck {
		t.Errorf("check value recorded %q (%v), want %s", db.check, err, vectorCheck)
	}
	if err := secrets.Verify(context.Background(), &records{check: vectorCheck}, m); err != nil {
		t.Errorf("Verify against the check value an earlier release recorded: %v", err)
	}

	key, err := apikey.Parse(vectorAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(apikey.Hash(key, m.Key(secrets.APIKeyPepper))); got != vectorAPIKeyHash {
		t.Errorf("API key hash %s, want %s", got, vectorAPIKeyHash)
	}

	sealedKey, _ := base64.StdEncoding.DecodeString(vectorSealed)
	pkcs8, err := secrets.Open(m.Key(secrets.SigningKeyKEK), vectorKID, sealedKey)
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
