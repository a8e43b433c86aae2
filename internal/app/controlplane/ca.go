package controlplane

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/util/days"
	"github.com/rampartsec/rampart/internal/util/keygen"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/mtls"
)

// CADirName is the internal CA's directory in the data directory
// (rampart ca init makes it).
const CADirName = "ca"

// The CA's files, in its directory (DATA/ca). Only the issuing key is
// secret and online; it is sealed with the master key's CA key KEK
// (secrets.CAKeyKEK), bound to the trust domain. The root key is written
// once, by InitCA, to be moved offline.
const (
	CARootCert    = "root.pem"
	CARootKey     = "root.key"
	CAIssuingCert = "issuing.pem"
	CAIssuingKey  = "issuing.key"
	// CARetired holds the certificates of issuing CAs RotateCA replaced.
	CARetired = "retired"
)

const (
	// caSealedKeyType is the PEM type of the sealed issuing key.
	caSealedKeyType = "RAMPART SEALED PRIVATE KEY"
	// caKeyLabel, with the trust domain's name, is what the issuing key
	// is sealed to.
	caKeyLabel = "rampart ca issuing key v1"
)

// ErrCAExists is returned by InitCA for a directory that holds a CA's
// file already.
var ErrCAExists = errors.New("a CA exists already")

// caExpiryWarning is how long before the issuing CA expires rampart serve
// and rampart ca say to rotate it.
const caExpiryWarning = 30 * 24 * time.Hour

// CAExpiryNote says when the issuing CA expires soon (or has), with what
// to do; "" when it has more than 30 days left.
func CAExpiryNote(ca *mtls.CA, now time.Time) string {
	end := ca.Issuing.NotAfter
	switch {
	case !now.Before(end):
		return fmt.Sprintf("the issuing CA expired on %s: no certificate can be issued or renewed; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	case end.Sub(now) < caExpiryWarning:
		return fmt.Sprintf("the issuing CA expires on %s, and certificates are cut short at that time; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	}
	return ""
}

// CARootKeyWarning is rampart serve's warning while the CA's root key is
// in the CA directory dir, online ("" when it is not): whoever reads it
// can make issuing CAs for the trust domain.
func CARootKeyWarning(dir string) string {
	f := filepath.Join(dir, CARootKey)
	if _, err := os.Lstat(f); err != nil {
		return ""
	}
	return fmt.Sprintf("the CA's root key %s is online, next to the control plane: whoever reads it can make issuing CAs for the trust domain; move it offline (rampart ca rotate --root-key FILE brings it back once a year)", f)
}

// parseCAMaxLineage reads --ca-max-lineage: days ("90d") or a Go
// duration; "" is the default.
func parseCAMaxLineage(s string) (time.Duration, error) {
	if s == "" {
		return mtls.DefaultMaxLineage, nil
	}
	d, err := days.Parse(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--ca-max-lineage %q: want days (90d) or a duration (2160h), more than 0", s)
	}
	return d, nil
}

// CAExists reports whether the CA directory dir holds an issuing CA.
func CAExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CAIssuingCert))
	return err == nil
}

// InitCA writes a new CA to the CA directory dir (made, mode 0700, if
// need be): its root certificate and key, its issuing certificate, and
// its issuing key sealed with m. It overwrites nothing: a directory that
// holds any of the files is ErrCAExists.
func InitCA(dir string, m *secrets.Master, ca *mtls.CA, rootKey crypto.Signer) error {
	if err := CheckNoCA(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	rootKeyPEM, err := keygen.KeyPEM(rootKey)
	if err != nil {
		return err
	}
	issuingKeyPEM, err := sealCAKey(m, ca.TrustDomain, ca.Key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{CARootKey, rootKeyPEM},
		{CARootCert, CertPEM(ca.Root)},
		{CAIssuingKey, issuingKeyPEM},
		{CAIssuingCert, CertPEM(ca.Issuing)},
	} {
		if err := secrets.WriteNew(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// CheckNoCA returns an error wrapping ErrCAExists when the CA directory
// dir holds any of a CA's files.
func CheckNoCA(dir string) error {
	for _, name := range []string{CARootCert, CARootKey, CAIssuingCert, CAIssuingKey} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w (%s); refusing to overwrite it", dir, ErrCAExists, name)
		}
	}
	return nil
}

// CertPEM encodes certificates as PEM CERTIFICATE blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func caSealLabel(td spiffeid.TrustDomain) string { return caKeyLabel + " " + td.Name() }

func sealCAKey(m *secrets.Master, td spiffeid.TrustDomain, k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	s, err := secrets.Seal(m.Key(secrets.CAKeyKEK), caSealLabel(td), der)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: caSealedKeyType, Headers: map[string]string{
		"Sealed-With": "rampart master key, AES-256-GCM", "Trust-Domain": td.Name(),
	}, Bytes: s}), nil
}

// OpenCA reads the CA of the CA directory dir: the root and issuing
// certificates and the issuing key, unsealed with m (the root key is not
// needed, and may be offline).
func OpenCA(dir string, m *secrets.Master) (*mtls.CA, error) {
	root, err := readCert(filepath.Join(dir, CARootCert))
	if err != nil {
		return nil, err
	}
	issuing, err := readCert(filepath.Join(dir, CAIssuingCert))
	if err != nil {
		return nil, err
	}
	if err := issuing.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%s is not signed by %s: %w", CAIssuingCert, CARootCert, err)
	}
	var td spiffeid.TrustDomain
	if len(issuing.URIs) == 1 {
		td, err = spiffeid.TrustDomainFromURI(issuing.URIs[0])
	}
	if td.IsZero() {
		return nil, fmt.Errorf("%s names no trust domain (want a spiffe://TRUST-DOMAIN URI SAN): %v", filepath.Join(dir, CAIssuingCert), err)
	}
	// The root must speak for the same trust domain (the issuing CA's is
	// bound to the sealed key, whose label names it).
	if _, err := mtls.NewBundle(td, root); err != nil {
		return nil, fmt.Errorf("%s: %s", filepath.Join(dir, CARootCert), describe(err))
	}
	signer, err := openCAKey(dir, m, td)
	if err != nil {
		return nil, err
	}
	pub, ok := issuing.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		keyFile := filepath.Join(dir, CAIssuingKey)
		if _, err := os.Stat(filepath.Join(dir, CAIssuingCert+".new")); err == nil {
			return nil, fmt.Errorf("%s is not the key of %s: 'rampart ca rotate' stopped halfway; finish it: mv %s.new %s",
				keyFile, CAIssuingCert, filepath.Join(dir, CAIssuingCert), filepath.Join(dir, CAIssuingCert))
		}
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, CAIssuingCert)
	}
	return &mtls.CA{Root: root, Issuing: issuing, Key: signer, TrustDomain: td}, nil
}

// openCAKey unseals the issuing key of the CA directory dir, for trust
// domain td.
func openCAKey(dir string, m *secrets.Master, td spiffeid.TrustDomain) (crypto.Signer, error) {
	keyFile := filepath.Join(dir, CAIssuingKey)
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != caSealedKeyType {
		return nil, fmt.Errorf("%s: not a %s", keyFile, caSealedKeyType)
	}
	der, err := secrets.Open(m.Key(secrets.CAKeyKEK), caSealLabel(td), b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (master key from %s)", keyFile, err, m.Source)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, CAIssuingCert)
	}
	return signer, nil
}

// describe is err's text, an mtls.Error's without the package's prefix.
func describe(err error) string {
	var me *mtls.Error
	if errors.As(err, &me) {
		return me.Description
	}
	return err.Error()
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// RotateCA puts the issuing CA next in place of old in the CA directory
// dir, its key sealed with m, and returns where the old certificate
// went (dir/retired). The new key and certificate are written whole
// beside the old ones first, then renamed into place, the key first: if
// it stops in between, OpenCA finds a key that is not the certificate's
// and says which file finishes the job.
func RotateCA(dir string, m *secrets.Master, old, next *mtls.CA) (string, error) {
	retiredDir := filepath.Join(dir, CARetired)
	if err := os.MkdirAll(retiredDir, 0o700); err != nil {
		return "", err
	}
	retired := filepath.Join(retiredDir, fmt.Sprintf("issuing-%x.pem", old.Issuing.SerialNumber))
	if err := secrets.WriteNew(retired, CertPEM(old.Issuing)); errors.Is(err, secrets.ErrExists) {
		// Kept by an earlier run that failed later: the same certificate
		// (its serial names it), so this run may go on.
		if data, rerr := os.ReadFile(retired); rerr != nil || !bytes.Equal(data, CertPEM(old.Issuing)) {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	keyPEM, err := sealCAKey(m, next.TrustDomain, next.Key)
	if err != nil {
		return "", err
	}
	certFile, keyFile := filepath.Join(dir, CAIssuingCert), filepath.Join(dir, CAIssuingKey)
	for name, data := range map[string][]byte{keyFile + ".new": keyPEM, certFile + ".new": CertPEM(next.Issuing)} {
		os.Remove(name) // a leftover of an earlier run that failed before it used it
		if err := secrets.WriteNew(name, data); err != nil {
			return "", err
		}
	}
	if err := os.Rename(keyFile+".new", keyFile); err != nil {
		return "", err
	}
	if err := os.Rename(certFile+".new", certFile); err != nil {
		return "", fmt.Errorf("%w: the new key is in place: rename %s.new to %s", err, certFile, certFile)
	}
	// The renames last through a crash once the directory is on disk.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return retired, nil
}
