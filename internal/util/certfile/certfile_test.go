package certfile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/testing/testpki"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func block(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustDER(der []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return der
}

func TestParseKinds(t *testing.T) {
	ca := testpki.NewRoot(t, "Root")
	leaf := ca.Issue(t, testpki.LeafOptions{DNSNames: []string{"a.test"}, KeyType: testpki.RSA2048})
	ec := testpki.NewKey(t, testpki.ECDSAP384).(*ecdsa.PrivateKey)
	ed := testpki.NewKey(t, testpki.Ed25519)
	rsaKey := leaf.Key.(*rsa.PrivateKey)
	csr := testpki.CSR(t, ec, "b.test")
	spkiRSA := leaf.Cert.RawSubjectPublicKeyInfo
	spkiEC := mustDER(x509.MarshalPKIXPublicKey(ec.Public()))
	spkiEd := mustDER(x509.MarshalPKIXPublicKey(ed.Public()))
	ecDER := mustDER(x509.MarshalECPrivateKey(ec))

	for _, tc := range []struct {
		name    string
		in      []byte
		typ     Type
		key     string
		spki    []byte
		subject string
	}{
		{"PEM certificate", block("CERTIFICATE", leaf.Cert.Raw), Certificate, "RSA 2048", spkiRSA, "CN=a.test"},
		{"DER certificate", leaf.Cert.Raw, Certificate, "RSA 2048", spkiRSA, "CN=a.test"},
		{"PEM public key", block("PUBLIC KEY", spkiEC), PublicKey, "ECDSA P-384", spkiEC, ""},
		{"DER public key", spkiEd, PublicKey, "Ed25519", spkiEd, ""},
		{"PKCS#1 public key", block("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), PublicKey, "RSA 2048", spkiRSA, ""},
		{"PKCS#8 private key", testpki.KeyPEM(t, ed), PrivateKey, "Ed25519", spkiEd, ""},
		{"PKCS#1 private key", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), PrivateKey, "RSA 2048", spkiRSA, ""},
		{"SEC 1 private key", block("EC PRIVATE KEY", ecDER), PrivateKey, "ECDSA P-384", spkiEC, ""},
		{"DER SEC 1 private key", ecDER, PrivateKey, "ECDSA P-384", spkiEC, ""},
		{"DER PKCS#8 private key", mustDER(x509.MarshalPKCS8PrivateKey(rsaKey)), PrivateKey, "RSA 2048", spkiRSA, ""},
		{"CSR", block("CERTIFICATE REQUEST", csr.Raw), CSR, "ECDSA P-384", spkiEC, "CN=b.test"},
		{"old CSR header", block("NEW CERTIFICATE REQUEST", csr.Raw), CSR, "ECDSA P-384", spkiEC, "CN=b.test"},
		{"DER CSR", csr.Raw, CSR, "ECDSA P-384", spkiEC, "CN=b.test"},
		{"openssl ecparam output", append(block("EC PARAMETERS", []byte{6, 5, 43, 129, 4, 0, 34}), block("EC PRIVATE KEY", ecDER)...), PrivateKey, "ECDSA P-384", spkiEC, ""},
		{"text around PEM", append(append([]byte("subject=CN = a.test\nissuer=...\n"), block("CERTIFICATE", leaf.Cert.Raw)...), "trailer\n"...), Certificate, "RSA 2048", spkiRSA, "CN=a.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 1 {
				t.Fatalf("got %d items", len(items))
			}
			it := items[0]
			if it.Type != tc.typ || DescribeKey(it.Key) != tc.key || !bytes.Equal(it.SPKI, tc.spki) || it.Subject() != tc.subject {
				t.Errorf("got %s %q subject %q, want %s %q subject %q (spki equal: %v)",
					it.Type, DescribeKey(it.Key), it.Subject(), tc.typ, tc.key, tc.subject, bytes.Equal(it.SPKI, tc.spki))
			}
		})
	}

	t.Run("several blocks", func(t *testing.T) {
		in := append(testpki.CertPEM(leaf.Cert, ca.Cert), block("PUBLIC KEY", spkiEC)...)
		items, err := Parse(in)
		if err != nil || len(items) != 3 || items[1].Cert.Subject.CommonName != "Root" || items[2].Type != PublicKey {
			t.Fatalf("got %d items, %v", len(items), err)
		}
	})
}

func TestParseErrors(t *testing.T) {
	ca := testpki.NewRoot(t, "Root")
	cert := ca.Cert.Raw
	for _, tc := range []struct {
		name, want string
		in         []byte
		is         error
	}{
		{"empty", "empty input", nil, nil},
		{"junk text", "not PEM, and not DER", []byte("hello, world\n"), nil},
		{"truncated DER", "truncated or corrupt", cert[:len(cert)/2], nil},
		{"junk PEM body", "PEM block 1: certificate:", block("CERTIFICATE", []byte("junk")), nil},
		{"truncated PEM", "malformed PEM block", block("CERTIFICATE", cert)[:200], nil},
		{"second block malformed", "PEM block 2: malformed", append(block("CERTIFICATE", cert), block("CERTIFICATE", cert)[:100]...), nil},
		{"malformed block before a good one", "PEM block 1: malformed", append(block("CERTIFICATE", cert)[:100], block("CERTIFICATE", cert)...), nil},
		{"bad base64 before a good one", "PEM block 2: malformed", append(append(block("CERTIFICATE", cert), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"...), block("CERTIFICATE", cert)...), nil},
		{"unknown type", `unsupported PEM block type "X509 CRL"`, block("X509 CRL", []byte{0x30, 0}), nil},
		{"encrypted PKCS#8", "encrypted private key", block("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), ErrEncrypted},
		{"encrypted legacy", "encrypted private key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{0x30, 0}}), ErrEncrypted},
		{"only EC PARAMETERS", "no certificate, key or certificate request found", block("EC PARAMETERS", []byte{6, 1, 0}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

// FuzzParse: no panic; failures are *Error; every item found carries a
// SubjectPublicKeyInfo that parses, consistent with its key.
func FuzzParse(f *testing.F) {
	ca := testpki.NewRoot(f, "Root")
	leaf := ca.Issue(f, testpki.LeafOptions{})
	f.Add(testpki.CertPEM(leaf.Cert, ca.Cert))
	f.Add(leaf.Cert.Raw)
	f.Add(testpki.KeyPEM(f, leaf.Key))
	f.Add(testpki.CSR(f, leaf.Key, "x.test").Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *Error", err)
			}
			return
		}
		if len(items) == 0 {
			t.Fatal("no items and no error")
		}
		for _, it := range items {
			switch it.Type {
			case Certificate, PublicKey, PrivateKey, CSR:
			default:
				t.Fatalf("item of type %q", it.Type)
			}
			if len(it.SPKI) == 0 {
				t.Fatalf("%s item without SPKI", it.Type)
			}
			if it.Type != Certificate && it.Type != CSR {
				k, err := x509.ParsePKIXPublicKey(it.SPKI)
				if err != nil {
					t.Fatalf("%s item with an unparsable SPKI: %v", it.Type, err)
				}
				if DescribeKey(k) != DescribeKey(it.Key) {
					t.Fatalf("SPKI holds a %s, item a %s", DescribeKey(k), DescribeKey(it.Key))
				}
			}
		}
	})
}
