package edge

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/mtls"
)

// identitySource is where an identity loaded from the file comes from:
// the same source reuses the Reloader across reloads.
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

// identities keeps the gateway's service certificate, loaded from the
// file's identity section, across reloads: a reload that names the same
// files (and renewal) keeps the Reloader in use; one that names others
// starts a new one, and stops the old one once the gateway uses the new.
type identities struct {
	log          *slog.Logger
	pollInterval time.Duration

	current *mtls.Reloader
	from    identitySource
	stop    context.CancelFunc
}

// load returns the identity and the upstreams' roots the file's https
// routes need (none without one), and done, to call with whether the
// gateway took them: true makes a new identity the one in use (and stops
// the one before), false stops it.
func (ids *identities) load(f *File) (*mtls.Reloader, x509bundle.Source, func(ok bool), error) {
	done := func(bool) {}
	var https []gateway.Route
	for _, r := range f.routes {
		if r.Upstream.Scheme == "https" {
			https = append(https, r)
		}
	}
	if len(https) == 0 {
		return nil, nil, done, nil
	}
	// The files are all there is: every upstream's trust domain needs
	// roots in them.
	set, err := loadBundles(f.Identity)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("gateway: identity: %w", err)
	}
	for _, rt := range https {
		if td := rt.UpstreamID.TrustDomain(); !set.Has(td) {
			return nil, nil, nil, fmt.Errorf("gateway: route %q: upstream_id %s: no roots for trust domain %s: add identity.bundles: {%s: FILE}", rt.Prefix, rt.UpstreamID, td.Name(), td.Name())
		}
	}
	from := sourceOf(f.Identity)
	if ids.current != nil && ids.from == from {
		return ids.current, set, done, nil
	}
	r, stop, err := ids.start(f.Identity, from)
	if err != nil {
		return nil, nil, nil, err
	}
	done = func(ok bool) {
		if !ok {
			stop()
			return
		}
		if ids.stop != nil {
			ids.stop()
		}
		ids.current, ids.from, ids.stop = r, from, stop
	}
	return r, set, done, nil
}

// start starts the identity of the file. Without renew, its files are
// watched; with it, the certificate is renewed at the control plane and
// each new one is written to the files.
func (ids *identities) start(id *Identity, from identitySource) (*mtls.Reloader, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &mtls.Reloader{CertFile: id.Cert, KeyFile: id.Key, PollInterval: ids.pollInterval, Logger: ids.log.With("certificate", "identity")}
	if from.renewURL != "" {
		var pool *x509.CertPool // the system roots
		if from.renewRoots != "" {
			var err error
			if pool, err = loadPool("identity.renew roots", from.renewRoots); err != nil {
				cancel()
				return nil, nil, fmt.Errorf("gateway: %w", err)
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
	// Close stops the watching or renewing and waits for it to end.
	return r, func() { r.Close(); cancel() }, nil
}

// close stops the identity in use.
func (ids *identities) close() {
	if ids.stop != nil {
		ids.stop()
		ids.stop = nil
	}
}

// loadBundles loads the upstreams' roots: those of id.Roots, each bound
// to the trust domain it names, and id.Bundles', bound by name.
func loadBundles(id *Identity) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	if id.Roots != "" {
		s, err := mtls.LoadBundles(id.Roots)
		if err != nil {
			return nil, fmt.Errorf("roots: %w (to bind roots to a trust domain by name: identity.bundles: {TRUST-DOMAIN: FILE})", err)
		}
		set = s
	}
	for name, file := range id.Bundles {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("bundles: %q: %w", name, err)
		}
		if set.Has(td) {
			return nil, fmt.Errorf("bundles: %s: %s has roots in identity.roots too; keep its roots in one place", name, name)
		}
		b, err := mtls.LoadBundle(td, file)
		if err != nil {
			return nil, fmt.Errorf("bundles: %w", err)
		}
		set.Add(b)
	}
	return set, nil
}

// loadPool reads CA certificates (PEM or DER) into a pool; errors
// start with setting, which names the file.
func loadPool(setting, file string) (*x509.CertPool, error) {
	items, err := certfile.ReadFile(file, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", setting, file, err)
	}
	pool := x509.NewCertPool()
	for _, it := range items {
		if it.Cert == nil {
			return nil, fmt.Errorf("%s %s: holds a %s; want certificates only", setting, file, it.Type)
		}
		pool.AddCert(it.Cert)
	}
	return pool, nil
}
