package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/rampartsec/rampart/mtls"
)

// identitySource is where an identity loaded from the configuration
// comes from: the same source reuses the Reloader across reloads.
type identitySource struct {
	cert, key, renewURL, renewRoots string
}

func sourceOf(id *Identity) identitySource {
	s := identitySource{cert: id.Cert, key: id.Key}
	if r := id.Renew; r != nil {
		s.renewURL, s.renewRoots = r.URL, r.Roots
		if s.renewRoots == "" {
			s.renewRoots = id.Roots
		}
	}
	return s
}

// loadIdentity returns the identity of the configuration, reusing the one
// in use if it comes from the same source. Without renew, its files are
// watched; with it, the certificate is renewed at the control plane and
// each new one is written to the files.
func (g *Gateway) loadIdentity(id *Identity) (*mtls.Reloader, func(), error) {
	from := sourceOf(id)
	if g.identity != nil && g.identityFrom == from {
		return g.identity, func() {}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &mtls.Reloader{CertFile: id.Cert, KeyFile: id.Key, Logger: g.log.With("certificate", "identity")}
	if from.renewURL != "" {
		pool, err := loadPool(from.renewRoots)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("gateway: identity.renew roots: %w", err)
		}
		// Renewer uses a new connection each time, presenting the
		// certificate in use.
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil,
			TLSClientConfig: &tls.Config{
				RootCAs:              pool,
				GetClientCertificate: r.GetClientCertificate,
				MinVersion:           tls.VersionTLS12,
			},
		}}
		renew := mtls.Renewer(from.renewURL, client, nil)
		r.Renew = func(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
			next, err := renew(ctx, cur)
			if err != nil {
				return nil, err
			}
			// A restart starts from the files: they get the new
			// certificate, so that a restart does not start from one
			// that has expired.
			if err := writeIdentity(id.Cert, id.Key, next, time.Now()); err != nil {
				g.log.Warn("gateway: identity renewed, but its files not updated: a restart would start from the old certificate",
					"cert", id.Cert, "err", err)
			}
			return next, nil
		}
	}
	if err := r.Start(ctx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("gateway: identity: %w", err)
	}
	// commit is called once the configuration using r is in place.
	commit := func() {
		if g.stopIdentity != nil {
			g.stopIdentity()
		}
		g.identity, g.identityFrom, g.stopIdentity = r, from, cancel
	}
	return r, commit, nil
}

// writeIdentity replaces certFile and keyFile with c (PEM, the key
// PKCS #8, 0600), each by renaming a new file into place; a certificate
// that is not valid at now is not written.
func writeIdentity(certFile, keyFile string, c *tls.Certificate, now time.Time) error {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return err
		}
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return errors.New("the renewed certificate is not valid now")
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	var chain []byte
	for _, b := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	// The key first: a certificate without its key would not load, and
	// neither would a new key with the old certificate; the window
	// between the two renames is what is left of that.
	if err := replaceFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return replaceFile(certFile, chain, 0o644)
}

// replaceFile writes data to a new file next to name, then renames it
// into place.
func replaceFile(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
