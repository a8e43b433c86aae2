// Package pki builds throwaway public key infrastructures in memory:
// roots, intermediates, leaves, renewals on a chosen key, and the chains
// attackers build (a rogue but trusted CA, a rogue leaf with real CA
// certificates appended). rampart demo builds its simulated web PKI with
// it, and the tests through internal/testing/testpki, which stops a test where
// this package returns an error.
//
// Nothing here is fit for a production CA: that is mtls.CA.
package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/rampartsec/rampart/internal/util/keygen"
)

// KeyType selects the algorithm of generated keys: internal/util/keygen's
// types.
type KeyType = keygen.Type

// The key types tests use most.
const (
	ECDSAP256 = keygen.ECDSAP256
	ECDSAP384 = keygen.ECDSAP384
	RSA2048   = keygen.RSA2048
	Ed25519   = keygen.Ed25519
)

// NewKey generates a private key of type kt; "" means ECDSA P-256.
func NewKey(kt KeyType) (crypto.Signer, error) {
	if kt == "" {
		kt = ECDSAP256
	}
	k, err := keygen.Generate(kt)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return k, nil
}

// A CA is a root or intermediate certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is this CA's certificate followed by its issuers up to and
	// including the root.
	Chain []*x509.Certificate
}

// Root returns the self-signed root of ca's hierarchy.
func (ca *CA) Root() *x509.Certificate { return ca.Chain[len(ca.Chain)-1] }

// Pool returns a pool holding only ca's root: the trust store of a client
// that trusts this hierarchy.
func (ca *CA) Pool() *x509.CertPool { return Pool(ca) }

// Pool returns a pool holding the roots of cas.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Root())
	}
	return p
}

// nextSerial returns a random 127-bit serial number, unique in practice and
// safe to call from parallel tests.
func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// NewRoot creates a self-signed root CA named name, valid from an hour ago
// for ten years.
func NewRoot(name string) (*CA, error) {
	key, err := NewKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Rampart Test PKI"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := create(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}, nil
}

// NewIntermediate creates an intermediate CA issued by ca.
func (ca *CA) NewIntermediate(name string) (*CA, error) {
	key, err := NewKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Rampart Test PKI"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, err := create(tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, Chain: append([]*x509.Certificate{cert}, ca.Chain...)}, nil
}

// LeafOptions describe a leaf certificate. The zero value is a certificate
// for "localhost" and 127.0.0.1 with a new P-256 key, valid from an hour ago
// for a day.
type LeafOptions struct {
	DNSNames []string
	IPs      []net.IP
	URIs     []*url.URL // SPIFFE IDs of workload certificates, say
	// Subject, if set, is the DER subject as it is to be encoded (any
	// order, repeated attributes): for tests of DN matching.
	Subject   []byte
	Key       crypto.Signer // the key to certify: reuse one for a renewal on the same key
	KeyType   KeyType       // type of the new key when Key is nil
	NotBefore time.Time
	NotAfter  time.Time
	// Serial, if set, is the serial number (a new one otherwise): with
	// the same options, the same certificate to be signed (a
	// precertificate and its final certificate).
	Serial *big.Int
	// ExtraExtensions are added as they are (the CT poison, an SCT list).
	ExtraExtensions []pkix.Extension
}

// Leaf is an end-entity certificate with its key and chain.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is the leaf followed by the intermediates of its issuer, without
	// the root: what a well-configured server sends.
	Chain []*x509.Certificate
	// Issuer is the CA that issued the leaf.
	Issuer *CA
}

// Issue creates a leaf certificate signed by ca.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 && len(o.URIs) == 0 {
		o.DNSNames = []string{"localhost"}
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if o.Key == nil {
		k, err := NewKey(o.KeyType)
		if err != nil {
			return nil, err
		}
		o.Key = k
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = o.NotBefore.Add(25 * time.Hour)
	}
	cn := "leaf"
	if len(o.DNSNames) > 0 {
		cn = o.DNSNames[0]
	} else if len(o.URIs) > 0 {
		cn = o.URIs[0].String()
	}
	serial := o.Serial
	if serial == nil {
		serial = nextSerial()
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		ExtraExtensions: o.ExtraExtensions,
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       o.NotBefore,
		NotAfter:        o.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:        o.DNSNames,
		IPAddresses:     o.IPs,
		URIs:            o.URIs,
		RawSubject:      o.Subject,
	}
	if _, ok := o.Key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert, err := create(tmpl, ca.Cert, o.Key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	chain := append([]*x509.Certificate{cert}, ca.Chain[:len(ca.Chain)-1]...)
	return &Leaf{Cert: cert, Key: o.Key, Chain: chain, Issuer: ca}, nil
}

// TLS returns the leaf as a tls.Certificate serving Chain, followed by
// extra certificates, which is how an attacker appends real CA certificates
// to a rogue chain.
func (l *Leaf) TLS(extra ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, x := range l.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	for _, x := range extra {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func create(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: creating certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parsing certificate: %w", err)
	}
	return cert, nil
}

// CertPEM encodes certificates as concatenated PEM CERTIFICATE blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as a PEM PRIVATE KEY (PKCS #8) block.
func KeyPEM(key crypto.Signer) ([]byte, error) { return keygen.KeyPEM(key) }

// CSR creates a certificate request for key with the given DNS names.
func CSR(key crypto.Signer, dnsNames ...string) (*x509.CertificateRequest, error) {
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames}
	if len(dnsNames) > 0 {
		tmpl.Subject.CommonName = dnsNames[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: creating CSR: %w", err)
	}
	return x509.ParseCertificateRequest(der)
}
