// Package testpki builds throwaway public key infrastructures for tests:
// roots, intermediates, leaves, renewals on a chosen key, and the chains
// attackers build (a rogue but trusted CA, a rogue leaf with real CA
// certificates appended).
//
// Everything is generated in memory; nothing here is fit for production.
// Functions take a [TB] and stop the test on failure.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"time"
)

// TB is the part of testing.TB that testpki needs; testscript's TestScript
// provides it too.
type TB interface {
	Fatalf(format string, args ...any)
}

// KeyType selects the algorithm of generated keys.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	Ed25519   KeyType = "ed25519"
)

// NewKey generates a private key of type kt.
func NewKey(t TB, kt KeyType) crypto.Signer {
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case ECDSAP256, "":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testpki: unknown key type %q", kt)
	}
	if err != nil {
		t.Fatalf("testpki: generating %s key: %v", kt, err)
	}
	return k
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
func NewRoot(t TB, name string) *CA {
	key := NewKey(t, ECDSAP256)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Rampart Test PKI"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert := create(t, tmpl, tmpl, key.Public(), key)
	return &CA{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}
}

// NewIntermediate creates an intermediate CA issued by ca.
func (ca *CA) NewIntermediate(t TB, name string) *CA {
	key := NewKey(t, ECDSAP256)
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
	cert := create(t, tmpl, ca.Cert, key.Public(), ca.Key)
	return &CA{Cert: cert, Key: key, Chain: append([]*x509.Certificate{cert}, ca.Chain...)}
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
func (ca *CA) Issue(t TB, o LeafOptions) *Leaf {
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 && len(o.URIs) == 0 {
		o.DNSNames = []string{"localhost"}
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if o.Key == nil {
		o.Key = NewKey(t, o.KeyType)
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
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		URIs:         o.URIs,
		RawSubject:   o.Subject,
	}
	if _, ok := o.Key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert := create(t, tmpl, ca.Cert, o.Key.Public(), ca.Key)
	chain := append([]*x509.Certificate{cert}, ca.Chain[:len(ca.Chain)-1]...)
	return &Leaf{Cert: cert, Key: o.Key, Chain: chain, Issuer: ca}
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

func create(t TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("testpki: creating certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parsing certificate: %v", err)
	}
	return cert
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
func KeyPEM(t TB, key crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testpki: marshaling key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CSR creates a certificate request for key with the given DNS names.
func CSR(t TB, key crypto.Signer, dnsNames ...string) *x509.CertificateRequest {
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames}
	if len(dnsNames) > 0 {
		tmpl.Subject.CommonName = dnsNames[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("testpki: creating CSR: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("testpki: parsing CSR: %v", err)
	}
	return csr
}
