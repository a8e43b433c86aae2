package bundle_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin/bundle"
)

func TestGenerateKey(t *testing.T) {
	for _, tc := range []struct {
		alg  bundle.Algorithm
		want func(any) bool
	}{
		{"", func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve.Params().Name == "P-256" }},
		{bundle.ES256, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve.Params().Name == "P-256" }},
		{bundle.ES384, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve.Params().Name == "P-384" }},
		{bundle.EdDSA, func(k any) bool { _, ok := k.(ed25519.PrivateKey); return ok }},
	} {
		k, err := bundle.GenerateKey(tc.alg)
		if err != nil || !tc.want(k) {
			t.Errorf("GenerateKey(%q) = %T, %v", tc.alg, k, err)
		}
	}
	for _, alg := range []bundle.Algorithm{"RS256", "HS256", "none", "es256", "ES512", "Ed25519"} {
		if _, err := bundle.GenerateKey(alg); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", alg)
		}
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA"} {
		k := mustKey(t, alg)
		pemBytes, err := bundle.MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(pemBytes), "-----BEGIN PRIVATE KEY-----") {
			t.Errorf("%s: not a PKCS #8 PEM block:\n%s", alg, pemBytes)
		}
		back, err := bundle.ParsePrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if kid(t, back) != kid(t, k) {
			t.Errorf("%s: key changed in the round trip", alg)
		}
	}
	// SEC 1 ("EC PRIVATE KEY"), as openssl writes it.
	ec := mustKey(t, "ES256").(*ecdsa.PrivateKey)
	der, _ := x509.MarshalECPrivateKey(ec)
	if k, err := bundle.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil || kid(t, k) != kid(t, ec) {
		t.Errorf("EC PRIVATE KEY: %v", err)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pubPEM, _ := bundle.MarshalPublicKey(ec.Public())
	privPEM, _ := bundle.MarshalPrivateKey(ec)
	for name, in := range map[string][]byte{
		"empty":        nil,
		"RSA key":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}),
		"public key":   pubPEM,
		"encrypted":    pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}),
		"two keys":     append(slices.Clone(privPEM), privPEM...),
		"certificate":  testpki.CertPEM(testpki.NewRoot(t, "x").Cert),
		"garbage body": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("nope")}),
	} {
		if _, err := bundle.ParsePrivateKey(in); err == nil {
			t.Errorf("%s: ParsePrivateKey succeeded", name)
		}
	}
	if _, err := bundle.MarshalPrivateKey(rsaKey); err == nil {
		t.Error("MarshalPrivateKey accepted an RSA key")
	}
}

func TestParseKeys(t *testing.T) {
	k1, k2, k3 := mustKey(t, "ES256"), mustKey(t, "ES384"), mustKey(t, "EdDSA")
	pem1, _ := bundle.MarshalPublicKey(k1.Public())
	pem2, _ := bundle.MarshalPublicKey(k2.Public())
	jwk3, _ := json.Marshal(jose.JSONWebKey{Key: k3.Public()})
	set, _ := bundle.NewKeys(k2.Public(), k3.Public())
	jwks23, err := set.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ks ...any) []string {
		var out []string
		for _, k := range ks {
			id, err := bundle.KeyID(k)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"one PEM", string(pem1), ids(k1.Public())},
		{"two PEM", string(pem1) + string(pem2), ids(k1.Public(), k2.Public())},
		{"JWK", string(jwk3), ids(k3.Public())},
		{"JWKS", string(jwks23), ids(k2.Public(), k3.Public())},
		{"mix", "\n" + string(pem1) + "\n" + string(jwks23) + "\n" + string(jwk3) + "\n", ids(k1.Public(), k2.Public(), k3.Public())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := bundle.ParseKeys([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := keys.IDs(); !slices.Equal(got, tc.want) {
				t.Errorf("IDs = %v, want %v", got, tc.want)
			}
		})
	}

	// JWKS writes kid, alg and use for each key, and reads back.
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks23, &doc); err != nil || len(doc.Keys) != 2 {
		t.Fatalf("JWKS = %s", jwks23)
	}
	for _, k := range doc.Keys {
		if k["use"] != "sig" || k["kid"] == "" || (k["alg"] != "ES384" && k["alg"] != "EdDSA") || k["d"] != nil {
			t.Errorf("JWKS member %v", k)
		}
	}

	const privateMsg = "this is a private key; give the public key (rampart bundle keygen writes NAME.pub)"
	priv1, _ := bundle.MarshalPrivateKey(k1)
	sec1, _ := x509.MarshalECPrivateKey(k1.(*ecdsa.PrivateKey))
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: k3})
	for name, in := range map[string]string{
		"PKCS #8":             string(priv1),
		"SEC 1":               string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})),
		"public then private": string(pem1) + string(priv1),
		"JWK":                 string(privJWK),
		"JWKS":                `{"keys":[` + string(privJWK) + `]}`,
	} {
		if _, err := bundle.ParseKeys([]byte(in)); err == nil || !strings.Contains(err.Error(), privateMsg) {
			t.Errorf("private key (%s): err = %v", name, err)
		}
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	k1ID, _ := bundle.KeyID(k1.Public())
	jwkWith := func(f func(*jose.JSONWebKey)) string {
		j := jose.JSONWebKey{Key: k1.Public()}
		f(&j)
		b, _ := json.Marshal(j)
		return string(b)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"white space": " \n",
		"garbage":     "hello",
		"RSA":         string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})),
		"certificate": string(testpki.CertPEM(testpki.NewRoot(t, "x").Cert)),
		"symmetric":   `{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`,
		"wrong kid":   jwkWith(func(j *jose.JSONWebKey) { j.KeyID = "key-1" }),
		"wrong alg":   jwkWith(func(j *jose.JSONWebKey) { j.Algorithm = "ES384" }),
		"use enc":     jwkWith(func(j *jose.JSONWebKey) { j.Use = "enc" }),
		"empty JWKS":  `{"keys":[]}`,
		"bad JSON":    `{"keys":`,
		"trailing":    string(pem1) + "junk",
	} {
		if _, err := bundle.ParseKeys([]byte(in)); err == nil {
			t.Errorf("%s: ParseKeys succeeded", name)
		} else if !strings.HasPrefix(err.Error(), "bundle: ") {
			t.Errorf("%s: error %q lacks the bundle: prefix", name, err)
		}
	}
	// A JWK with its right kid, alg and use is fine.
	good := jwkWith(func(j *jose.JSONWebKey) { j.KeyID, j.Algorithm, j.Use = k1ID, "ES256", "sig" })
	if _, err := bundle.ParseKeys([]byte(good)); err != nil {
		t.Errorf("complete JWK: %v", err)
	}
}

func TestKeysSet(t *testing.T) {
	var k bundle.Keys // the zero Keys is an empty set
	if len(k.IDs()) != 0 || k.Len() != 0 {
		t.Fatal("zero Keys not empty")
	}
	a := mustKey(t, "ES256")
	for range 2 {
		if err := k.Add(a.Public()); err != nil {
			t.Fatal(err)
		}
	}
	if k.Len() != 1 {
		t.Errorf("adding a key twice: Len = %d", k.Len())
	}
	b := mustKey(t, "EdDSA")
	other, _ := bundle.NewKeys(a.Public(), b.Public())
	if err := k.Merge(other); err != nil || k.Len() != 2 || other.Len() != 2 {
		t.Errorf("Merge: %v, Len = %d", err, k.Len())
	}
	if err := k.Merge(&k); err != nil || k.Merge(nil) != nil || k.Len() != 2 {
		t.Errorf("Merge of itself or nil: %v", err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := bundle.NewKeys(rsaKey.Public()); err == nil {
		t.Error("NewKeys accepted RSA")
	}
	if err := k.Add(a); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("Add(private key): %v", err)
	}
	bad := &ecdsa.PublicKey{Curve: a.Public().(*ecdsa.PublicKey).Curve, X: a.Public().(*ecdsa.PublicKey).X, Y: a.Public().(*ecdsa.PublicKey).X}
	if err := k.Add(bad); err == nil {
		t.Error("Add accepted a point off the curve")
	}
}
