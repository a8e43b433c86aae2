// Package certfile reads the files operators feed to `rampart pin`:
// certificates, public keys, private keys and certificate requests, as PEM
// (any number of blocks) or as a single DER object, and describes their
// keys ("RSA 2048", "ECDSA P-256").
package certfile

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Type is the kind of object an [Item] holds.
type Type string

const (
	Certificate Type = "certificate"
	PublicKey   Type = "public-key"
	PrivateKey  Type = "private-key"
	CSR         Type = "csr"
)

// Item is one certificate, key or request found in a file.
type Item struct {
	Type Type
	Cert *x509.Certificate        // for Certificate
	CSR  *x509.CertificateRequest // for CSR
	Key  crypto.PublicKey         // the public key (of the private key, for PrivateKey); nil if of an unknown algorithm
	SPKI []byte                   // DER SubjectPublicKeyInfo of the public key
	Priv crypto.PrivateKey        // for PrivateKey
}

// Subject returns the subject of a certificate or request in RFC 2253 form,
// "" for keys.
func (it *Item) Subject() string {
	switch {
	case it.Cert != nil:
		return it.Cert.Subject.String()
	case it.CSR != nil:
		return it.CSR.Subject.String()
	}
	return ""
}

// Error reports input that is not a certificate, key or request. Block is
// the 1-based PEM block number, 0 for the file as a whole.
type Error struct {
	Block int
	Err   error
}

func (e *Error) Error() string {
	if e.Block > 0 {
		return fmt.Sprintf("PEM block %d: %v", e.Block, e.Err)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrEncrypted is wrapped by the error for an encrypted private key.
var ErrEncrypted = errors.New("encrypted private key: pin its certificate or public key instead, or decrypt it first (openssl pkey -in KEY -out plain.key)")

// MaxSize bounds what ReadFile reads: certificate files are kilobytes.
const MaxSize = 4 << 20

// ReadFile reads and parses a file; "-" reads standard input from stdin.
func ReadFile(name string, stdin io.Reader) ([]Item, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, &Error{Err: fmt.Errorf("larger than %d bytes; not a certificate file", MaxSize)}
	}
	return Parse(data)
}

// Parse parses PEM with any number of CERTIFICATE, PUBLIC KEY, RSA PUBLIC
// KEY, PRIVATE KEY (PKCS #8), RSA PRIVATE KEY, EC PRIVATE KEY and
// CERTIFICATE REQUEST blocks (text around the blocks is ignored, EC
// PARAMETERS blocks are skipped), or a single DER object of one of those
// kinds. Errors are [*Error].
func Parse(data []byte) ([]Item, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		it, err := parseDER(data)
		if err != nil {
			return nil, &Error{Err: err}
		}
		return []Item{it}, nil
	}
	var items []Item
	rest := data
	begin := []byte("-----BEGIN")
	for n := 1; ; n++ {
		start := bytes.Index(rest, begin)
		if start < 0 {
			break
		}
		b, after := pem.Decode(rest[start:])
		// pem.Decode skips a malformed block and returns the next good one;
		// a second BEGIN in what it consumed means it did.
		if b == nil || bytes.Count(rest[start:len(rest)-len(after)], begin) > 1 {
			return nil, &Error{Block: n, Err: fmt.Errorf("malformed PEM block starting %q", firstLine(rest[start:]))}
		}
		rest = after
		if b.Type == "EC PARAMETERS" {
			continue
		}
		it, err := parseBlock(b)
		if err != nil {
			return nil, &Error{Block: n, Err: err}
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil, &Error{Err: errors.New("no certificate, key or certificate request found")}
	}
	return items, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func parseBlock(b *pem.Block) (Item, error) {
	if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
		return Item{}, ErrEncrypted
	}
	switch b.Type {
	case "CERTIFICATE":
		return certItem(b.Bytes)
	case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		return csrItem(b.Bytes)
	case "PUBLIC KEY":
		return pkixItem(b.Bytes)
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(b.Bytes)
		if err != nil {
			return Item{}, fmt.Errorf("RSA PUBLIC KEY: %w", err)
		}
		return publicItem(k)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return Item{}, fmt.Errorf("PRIVATE KEY: %w", err)
		}
		return privateItem(k)
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return Item{}, fmt.Errorf("RSA PRIVATE KEY: %w", err)
		}
		return privateItem(k)
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return Item{}, fmt.Errorf("EC PRIVATE KEY: %w", err)
		}
		return privateItem(k)
	}
	return Item{}, fmt.Errorf("unsupported PEM block type %q (want CERTIFICATE, PUBLIC KEY, PRIVATE KEY, RSA/EC PRIVATE KEY or CERTIFICATE REQUEST)", b.Type)
}

func certItem(der []byte) (Item, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return Item{}, fmt.Errorf("certificate: %w", err)
	}
	return Item{Type: Certificate, Cert: c, Key: c.PublicKey, SPKI: c.RawSubjectPublicKeyInfo}, nil
}

func csrItem(der []byte) (Item, error) {
	c, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return Item{}, fmt.Errorf("certificate request: %w", err)
	}
	return Item{Type: CSR, CSR: c, Key: c.PublicKey, SPKI: c.RawSubjectPublicKeyInfo}, nil
}

func pkixItem(der []byte) (Item, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return Item{}, fmt.Errorf("public key: %w", err)
	}
	return Item{Type: PublicKey, Key: k, SPKI: der}, nil
}

func publicItem(k crypto.PublicKey) (Item, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return Item{}, fmt.Errorf("public key: %w", err)
	}
	return Item{Type: PublicKey, Key: k, SPKI: der}, nil
}

func privateItem(k crypto.PrivateKey) (Item, error) {
	s, ok := k.(crypto.Signer)
	if !ok {
		// PKCS #8 may hold an X25519 (*ecdh.PrivateKey), which is no signer.
		e, ok := k.(*ecdh.PrivateKey)
		if !ok {
			return Item{}, fmt.Errorf("private key of type %T is not supported", k)
		}
		it, err := publicItem(e.PublicKey())
		it.Type, it.Priv = PrivateKey, k
		return it, err
	}
	it, err := publicItem(s.Public())
	it.Type, it.Priv = PrivateKey, k
	return it, err
}

// parseDER recognizes a single DER object of any supported kind.
func parseDER(der []byte) (Item, error) {
	if len(bytes.TrimSpace(der)) == 0 {
		return Item{}, errors.New("empty input")
	}
	it, certErr := certItem(der)
	if certErr == nil {
		return it, nil
	}
	if der[0] != 0x30 {
		return Item{}, errors.New("not PEM, and not DER (a DER object starts with a SEQUENCE)")
	}
	if it, err := csrItem(der); err == nil {
		return it, nil
	}
	if it, err := pkixItem(der); err == nil {
		return it, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return privateItem(k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return privateItem(k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return privateItem(k)
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return publicItem(k)
	}
	return Item{}, fmt.Errorf("DER input is not a certificate, key or certificate request (truncated or corrupt?): %v", certErr)
}

// DescribeKey names a public key's algorithm and size: "RSA 2048",
// "ECDSA P-256", "Ed25519", "X25519"; "unknown" for nil.
func DescribeKey(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdh.PublicKey:
		if k.Curve() == ecdh.X25519() {
			return "X25519"
		}
		return fmt.Sprintf("ECDH %v", k.Curve())
	case nil:
		return "unknown"
	}
	return fmt.Sprintf("%T", k)
}
