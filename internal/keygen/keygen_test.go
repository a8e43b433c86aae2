package keygen

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampartsec/rampart/internal/certfile"
	"github.com/rampartsec/rampart/pin"

	_ "github.com/rampartsec/rampart/internal/golden" // accepts go test ./... -update
)

func TestGenerateEveryType(t *testing.T) {
	want := map[string]string{
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
	if _, err := Generate("dsa-1024"); err == nil {
		t.Error("unknown type accepted")
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

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.key")
	if err := WriteNew(path, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if err := WriteNew(path, []byte("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, []byte("secret")) {
		t.Fatal("existing file was changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A dangling symlink is not followed.
	link := filepath.Join(dir, "link.key")
	os.Symlink(filepath.Join(dir, "target"), link)
	if err := WriteNew(link, []byte("x")); !errors.Is(err, ErrExists) {
		t.Errorf("write through a dangling symlink: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "target")); err == nil {
		t.Error("the symlink target was created")
	}
}
