// Package keygen makes the keys that backup pins refer to: it generates a
// private key of a named [Type] and makes certificate requests for it.
// Writing it to a file no one else can read, never replacing one, is
// secrets.WriteNew's.
package keygen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// Type is a kind of private key, named as rampart pin keygen --type
// names it.
type Type string

// The key types.
const (
	ECDSAP256 Type = "ecdsa-p256"
	ECDSAP384 Type = "ecdsa-p384"
	RSA2048   Type = "rsa-2048"
	RSA3072   Type = "rsa-3072"
	RSA4096   Type = "rsa-4096"
	Ed25519   Type = "ed25519"
)

// Types lists the key types Generate accepts; the first is the default.
var Types = []Type{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}

// ErrUnknownType is wrapped by the errors of ParseType and Generate for a
// name that is not one of Types.
var ErrUnknownType = errors.New("keygen: unknown key type")

// ParseType returns the key type named s (one of Types).
func ParseType(s string) (Type, error) {
	if slices.Contains(Types, Type(s)) {
		return Type(s), nil
	}
	return "", fmt.Errorf("%w %q (want one of %v)", ErrUnknownType, s, Types)
}

// Generate makes a private key of type typ (one of Types).
func Generate(typ Type) (crypto.Signer, error) {
	switch typ {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	_, err := ParseType(string(typ))
	return nil, err
}

// KeyPEM encodes a private key as a PKCS #8 "PRIVATE KEY" block.
func KeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CSRPEM makes a certificate request for k with subject common name cn and
// the given DNS names (cn alone when there are none).
func CSRPEM(k crypto.Signer, cn string, dnsNames []string) ([]byte, error) {
	if len(dnsNames) == 0 {
		dnsNames = []string{cn}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dnsNames,
	}, k)
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
