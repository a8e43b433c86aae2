package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

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
		var pool *x509.CertPool // the system roots
		if from.renewRoots != "" {
			var err error
			if pool, err = loadPool(from.renewRoots); err != nil {
				cancel()
				return nil, nil, fmt.Errorf("gateway: identity.renew roots: %w", err)
			}
		}
		// Each renewal presents the certificate in use, and is written
		// to the files before it is used, so that a restart does not
		// begin from a certificate that has expired since.
		r.Renew = mtls.SaveRenewals(mtls.Renewer(from.renewURL, mtls.RenewalClient(r, pool), nil), id.Cert, id.Key)
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

// loadPool reads a PEM file of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
