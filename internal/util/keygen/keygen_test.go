package keygen

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/pin"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestGenerateEveryType(t *testing.T) {
	want := map[Type]string{
		"ecdsa-p256": "ECDSA P-256", "ecdsa-p384": "ECDSA P-384", "rsa-2048": "RSA 2048",
		"rsa-3072": "RSA 3072", "rsa-4096": "RSA 4096", "ed25519": "Ed25519",
	}
	for _, typ := range Types {
		k, err := Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		data, err := KeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		items, err := certfile.Parse(data)
		if err != nil || len(items) != 1 || certfile.DescribeKey(items[0].Key) != want[typ] {
			t.Fatalf("%s: re-parsed as %v, %v", typ, items, err)
		}
		p, _ := pin.FromPrivateKey(k)
		if pin.FromSPKI(items[0].SPKI) != p {
			t.Errorf("%s: pin of the written key differs from the generated key's", typ)
		}
	}
	if _, err := Generate("dsa-1024"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v, want ErrUnknownType", err)
	}
	for _, typ := range Types {
		if got, err := ParseType(string(typ)); got != typ || err != nil {
			t.Errorf("ParseType(%q) = %q, %v", typ, got, err)
		}
	}
	if _, err := ParseType("RSA-2048"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("ParseType(RSA-2048): %v, want ErrUnknownType", err)
	}
}

func TestCSR(t *testing.T) {
	k, _ := Generate("ecdsa-p256")
	data, err := CSRPEM(k, "api.example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	p, _ := pin.FromPrivateKey(k)
	if pin.FromCSR(csr) != p || csr.Subject.CommonName != "api.example.com" || len(csr.DNSNames) != 1 || csr.DNSNames[0] != "api.example.com" {
		t.Errorf("CSR = %+v", csr)
	}
}
