// Package testpki builds throwaway public key infrastructures for tests:
// roots, intermediates, leaves, renewals on a chosen key, and the chains
// attackers build (a rogue but trusted CA, a rogue leaf with real CA
// certificates appended). It is internal/util/pki with a [TB]: a function stops
// the test where pki returns an error.
//
// Everything is generated in memory; nothing here is fit for production.
package testpki

import (
	"crypto"
	"crypto/x509"

	"github.com/rampartsec/rampart/internal/util/pki"
)

// TB is the part of testing.TB that testpki needs; testscript's TestScript
// provides it too.
type TB interface {
	Fatalf(format string, args ...any)
}

// KeyType selects the algorithm of generated keys.
type KeyType = pki.KeyType

// The key types.
const (
	ECDSAP256 = pki.ECDSAP256
	ECDSAP384 = pki.ECDSAP384
	RSA2048   = pki.RSA2048
	Ed25519   = pki.Ed25519
)

// LeafOptions describe a leaf certificate; see [pki.LeafOptions].
type LeafOptions = pki.LeafOptions

func check(t TB, err error) {
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
}

// NewKey generates a private key of type kt.
func NewKey(t TB, kt KeyType) crypto.Signer {
	k, err := pki.NewKey(kt)
	check(t, err)
	return k
}

// A CA is a root or intermediate certificate authority: a [pki.CA] whose
// methods take a [TB].
type CA struct{ *pki.CA }

// Pool returns a pool holding the roots of cas.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Root())
	}
	return p
}

// NewRoot creates a self-signed root CA named name, valid from an hour ago
// for ten years.
func NewRoot(t TB, name string) *CA {
	ca, err := pki.NewRoot(name)
	check(t, err)
	return &CA{ca}
}

// NewIntermediate creates an intermediate CA issued by ca.
func (ca *CA) NewIntermediate(t TB, name string) *CA {
	inter, err := ca.CA.NewIntermediate(name)
	check(t, err)
	return &CA{inter}
}

// Leaf is an end-entity certificate with its key and chain.
type Leaf struct {
	*pki.Leaf
	// Issuer is the CA that issued the leaf.
	Issuer *CA
}

// Issue creates a leaf certificate signed by ca.
func (ca *CA) Issue(t TB, o LeafOptions) *Leaf {
	l, err := ca.CA.Issue(o)
	check(t, err)
	return &Leaf{Leaf: l, Issuer: ca}
}

// CertPEM encodes certificates as concatenated PEM CERTIFICATE blocks.
func CertPEM(certs ...*x509.Certificate) []byte { return pki.CertPEM(certs...) }

// KeyPEM encodes a private key as a PEM PRIVATE KEY (PKCS #8) block.
func KeyPEM(t TB, key crypto.Signer) []byte {
	b, err := pki.KeyPEM(key)
	check(t, err)
	return b
}

// CSR creates a certificate request for key with the given DNS names.
func CSR(t TB, key crypto.Signer, dnsNames ...string) *x509.CertificateRequest {
	csr, err := pki.CSR(key, dnsNames...)
	check(t, err)
	return csr
}
