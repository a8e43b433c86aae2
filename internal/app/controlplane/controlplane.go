// Package controlplane assembles what rampart serve runs: the store, the
// master key, the admin token, the TLS certificate, the OAuth2
// authorization server and API keys, the internal CA's renewal endpoint
// and the control plane's handler (internal/controlplane/server), on one listener. It
// also owns rampart serve's configuration file (File, Source) and the
// rules for what SIGHUP may change (Reload).
//
// rampart serve builds a ControlPlane from its flags and file; rampart
// demo builds one from demo options. Neither wires the parts itself.
//
//	cp, err := controlplane.New(ctx, controlplane.Options{Source: src})
//	go cp.Serve()
//	... cp.Reload() on SIGHUP ...
//	cp.Shutdown(ctx); cp.Close()
package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/controlplane/ctwatch"
	"github.com/rampartsec/rampart/internal/controlplane/server"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/token/authserver"
)

// RenewPath is where the internal CA's renewal endpoint is mounted.
const RenewPath = "/v1/certificates/renew"

// DefaultScopes is the scope catalogue of a payment API, and the scope
// that lets a resource server introspect tokens.
var DefaultScopes = []string{"payment.read", "payment.write", "payment.withdraw", authserver.IntrospectScope}

// Options are what New builds a ControlPlane from. Source is required;
// every other zero value is a default.
type Options struct {
	// Source is the configuration: a file and the flags over it. Reload
	// reads it again.
	Source *Source
	// Stderr receives the logs. If nil, os.Stderr.
	Stderr io.Writer
	// Listener, if set, is where the control plane serves, instead of
	// the configuration's listen address. The ControlPlane closes it.
	Listener net.Listener
	// CADir is the internal CA's directory (OpenCA), whose certificates
	// renew here: relative to the data directory unless absolute;
	// rampart serve's is CADirName. If empty, or if it holds no CA, there
	// is no renewal endpoint, unless CA is set.
	CADir string
	// CA, if set, is the internal CA whose certificates renew here
	// (rampart demo's); CADir is then not read.
	CA *mtls.CA
	// RenewMaxLifetime bounds a renewed certificate's lifetime. If 0,
	// mtls.MaxTTL (30 days).
	RenewMaxLifetime time.Duration
	// BundleCacheTTL is how long a bundle read from the store is served
	// from memory. If 0, the server's default (2 s).
	BundleCacheTTL time.Duration
}

// StartError is an error of New that is not the configuration's: a
// database that does not open, a listener that cannot listen, keys that
// cannot be read. Other errors of New are the configuration's (a setting,
// or a file it names). Its message is Err's.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

func startErr(err error) error { return &StartError{err} }

// ControlPlane is rampart serve: the control plane's handler, its
// listener and what it was built with. Build it with New, then Serve;
// Reload applies the configuration anew; Shutdown, then Close, stop it.
type ControlPlane struct {
	log    *slog.Logger
	o      Options
	cfg    *File // as loaded, for Reload to compare with
	issuer string
	base   string // the URL clients use
	dsn    string

	st       store.Store
	master   *secrets.Master
	manager  *apikey.Manager
	verifier *apikey.Verifier
	oauth    *authserver.Server
	cert     *mtls.Reloader
	srv      *server.Server
	reloads  *prometheus.CounterVec
	hs       *http.Server
	ln       net.Listener
	tls      bool

	mu      sync.Mutex // serializes Reload and Close
	closers []func()   // in the order of opening
	closed  bool
}

// New builds the control plane of o.Source: it opens the store, checks
// the master key, finds the admin token, loads the TLS certificate
// (re-read when its files change, until Close), starts the authorization
// server, loads the internal CA, builds the handler and listens. It serves
// nothing until Serve. Errors that are not the configuration's are
// [*StartError]. ctx bounds the start, not the ControlPlane.
func New(ctx context.Context, o Options) (_ *ControlPlane, err error) {
	if o.Source == nil {
		return nil, errors.New("controlplane: Options.Source is nil")
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	cfg, org, err := o.Source.Load()
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{o: o, ln: o.Listener}
	loaded := *cfg
	c.cfg = &loaded
	if o.Listener != nil {
		c.onClose(func() { o.Listener.Close() })
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var b builder
	steps := []func() error{
		func() error { return c.logger(cfg, org) },
		func() error { return b.settings(c, cfg, org) },
		func() error { return c.open(ctx, cfg) },
		func() error { return c.certificate(cfg, &b) },
		func() error { return c.listen(cfg) },
		func() error { return c.issuerOf(cfg, org, &b) },
		func() error { return c.authServer(ctx, cfg, &b) },
		func() error { return c.renewal(cfg, &b) },
		func() error { return c.ctMonitor(ctx, cfg, org, &b) },
		func() error { return c.server(cfg, &b) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// builder carries what one step of New makes for the next.
type builder struct {
	live      server.Settings
	proxies   []netip.Prefix
	scopes    []string
	grace     time.Duration
	dir       string
	tlsConfig *tls.Config
	leaf      *x509.Certificate
	adminTok  string
	tokenFrom string
	renew     http.Handler
	caExpiry  time.Time
	reg       *prometheus.Registry
	ct        *ctwatch.Watcher
}

func (c *ControlPlane) onClose(f func()) { c.closers = append(c.closers, f) }

// logger makes the one logger of the process's stream, and the PID file.
func (c *ControlPlane) logger(cfg *File, org *Origins) error {
	switch cfg.LogFormat {
	case "text", "":
		c.log = slog.New(slog.NewTextHandler(c.o.Stderr, nil))
	case "json":
		c.log = slog.New(slog.NewJSONHandler(c.o.Stderr, nil))
	default:
		return fmt.Errorf("%s %q: want text or json", org.Of("log_format", "log-format"), cfg.LogFormat)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.PIDFile != "" {
		// Early: a second instance given the same file stops here,
		// before it opens the database.
		remove, err := CreatePIDFile(cfg.PIDFile)
		if err != nil {
			return fmt.Errorf("%s: %w", org.Of("pid_file", "pid-file"), err)
		}
		c.onClose(remove)
	}
	return nil
}

// settings reads the settings that need nothing opened: proxies, the
// reloadable settings, the key grace and the scope catalogue.
func (b *builder) settings(c *ControlPlane, cfg *File, org *Origins) error {
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		b.proxies = append(b.proxies, p.Masked())
	}
	var err error
	if b.live, err = reloadable(cfg, org, c.log); err != nil {
		return err
	}
	b.grace = 72 * time.Hour
	if cfg.KeyGrace != "" {
		if b.grace, err = time.ParseDuration(cfg.KeyGrace); err != nil || b.grace < 0 || b.grace > apikey.MaxGrace {
			return fmt.Errorf("%s %q: want a duration up to %v", org.Of("key_grace", ""), cfg.KeyGrace, apikey.MaxGrace)
		}
	}
	if b.scopes = cfg.Scopes; b.scopes == nil {
		b.scopes = DefaultScopes
	}
	catalogue := &apikey.Manager{Scopes: b.scopes}
	if err := catalogue.CheckScopes(b.scopes); err != nil {
		return fmt.Errorf("%s: %v", org.Of("scopes", ""), err)
	}
	for s, implied := range cfg.ScopeImplies {
		if err := catalogue.CheckScopes(append([]string{s}, implied...)); err != nil {
			return fmt.Errorf("%s: %v", org.Of("scope_implies", ""), err)
		}
	}
	if b.dir, err = DataDir(cfg.DataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// open opens the store and checks the master key against it; the admin
// token comes after, so that a wrong key leaves no token behind.
func (c *ControlPlane) open(ctx context.Context, cfg *File) error {
	dir, _ := DataDir(cfg.DataDir)
	c.dsn = cfg.DB
	if c.dsn == "" {
		c.dsn = filepath.Join(dir, "rampart.db")
	}
	st, err := backend.Open(ctx, c.dsn)
	if err != nil {
		return startErr(err)
	}
	c.st = st
	c.onClose(func() { st.Close() })
	// The master key before anything else is written: a wrong one is
	// refused (and a master.key just made for it removed) before an
	// admin token is made next to it.
	if c.master, err = secrets.Load(dir, true); err != nil {
		return err
	}
	if err := secrets.Verify(ctx, store.MasterKeyRecords(st), c.master); err != nil {
		if errors.Is(err, secrets.ErrMismatch) {
			return err
		}
		return startErr(err)
	}
	return nil
}

// certificate finds the admin token and loads the TLS certificate and the
// client CAs.
func (c *ControlPlane) certificate(cfg *File, b *builder) error {
	var err error
	if b.adminTok, b.tokenFrom, err = AdminToken(cfg.AdminTokenFile, b.dir); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if cfg.TLSCert != "" {
		// Reloaded when the files change: a certificate from rampart ca
		// issue lives a day.
		c.cert = &mtls.Reloader{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Logger: c.log}
		rctx, cancel := context.WithCancel(context.Background())
		cert := c.cert
		c.onClose(func() { cert.Close(); cancel() }) // stops the watching and waits for it
		if err := c.cert.Start(rctx); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		b.tlsConfig = &tls.Config{GetCertificate: c.cert.GetCertificate, MinVersion: tls.VersionTLS12}
		b.leaf = c.cert.Certificate().Leaf
	}
	if cfg.ClientCA != "" {
		if b.tlsConfig == nil {
			return errors.New("--client-ca needs --tls-cert: client certificates come with TLS")
		}
		pool, err := loadPool("--client-ca", cfg.ClientCA)
		if err != nil {
			return err
		}
		// Asked for, not required: the dashboard and reports need none;
		// tls_client_auth and bound tokens use what was verified.
		b.tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		b.tlsConfig.ClientCAs = pool
	}
	return nil
}

// listen takes the listener, unless Options gave one.
func (c *ControlPlane) listen(cfg *File) error {
	if c.ln == nil {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return startErr(err)
		}
		c.ln = ln
		c.onClose(func() { ln.Close() })
	}
	return nil
}

// issuerOf sets the URL clients use, and the OAuth2 issuer: a name the
// TLS certificate covers, which the issuer, the metadata's endpoints and
// the start-up lines all use.
func (c *ControlPlane) issuerOf(cfg *File, org *Origins, b *builder) error {
	scheme := "http"
	if b.tlsConfig != nil {
		scheme, c.tls = "https", true
	}
	host, port, _ := net.SplitHostPort(c.ln.Addr().String())
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		// Listening on every address: no one of them is the name
		// clients use.
		host = "localhost"
	}
	public, covered := publicHost(host, b.leaf)
	c.base = scheme + "://" + net.JoinHostPort(public, port)
	c.issuer = cfg.Issuer
	if c.issuer == "" {
		c.issuer = c.base
		switch {
		case !covered:
			c.log.Warn("no --issuer, and --tls-cert covers neither the listen address nor a host name to use instead: set --issuer to the URL clients use",
				"issuer", c.issuer, "certificate_names", certNames(b.leaf))
		case public != host:
			c.log.Info("no --issuer: using a name of --tls-cert, which clients can verify; set --issuer to the URL clients use", "issuer", c.issuer)
		case host == "localhost" && b.leaf == nil:
			c.log.Warn("no --issuer: using "+c.issuer+"; set it to the URL clients use", "issuer", c.issuer)
		}
		return nil
	}
	u, err := url.Parse(c.issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s %q: want an https:// URL", org.Of("issuer", "issuer"), c.issuer)
	}
	if b.leaf != nil && b.leaf.VerifyHostname(u.Hostname()) != nil {
		c.log.Warn("the issuer's host is not a name of --tls-cert: clients that follow the metadata will fail to verify it; set --issuer to a name the certificate covers",
			"issuer", c.issuer, "certificate_names", certNames(b.leaf))
	}
	return nil
}

// authServer starts the API-key verifier and the OAuth2 authorization
// server.
func (c *ControlPlane) authServer(ctx context.Context, cfg *File, b *builder) error {
	pepper := c.master.Key(secrets.APIKeyPepper)
	c.verifier = &apikey.Verifier{Store: c.st.APIKeys(), Pepper: pepper, Logger: c.log}
	c.onClose(func() { c.verifier.Close() })
	c.manager = &apikey.Manager{Store: c.st.APIKeys(), Pepper: pepper, Scopes: b.scopes}
	c.oauth = &authserver.Server{
		Issuer: c.issuer, Audience: cfg.Audience,
		Keys: c.st.SigningKeys(), Revocations: c.st.RevokedTokens(),
		Clients: c.st.APIKeys(), APIKeys: c.verifier, KeyEncryptionKey: c.master.Key(secrets.SigningKeyKEK),
		Scopes: b.scopes, ScopeImplies: cfg.ScopeImplies, TrustedProxies: b.proxies, Logger: c.log,
		// tls_client_auth and bound tokens only with --client-ca.
		MutualTLS: cfg.ClientCA != "",
	}
	if err := c.oauth.Start(ctx); err != nil {
		return startErr(err)
	}
	return nil
}

// renewal mounts the internal CA's renewal endpoint, when there is a CA
// and TLS to ask for client certificates with.
func (c *ControlPlane) renewal(cfg *File, b *builder) error {
	maxLineage, err := parseCAMaxLineage(cfg.CAMaxLineage)
	if err != nil {
		return err
	}
	caDir := c.o.CADir
	if caDir != "" && !filepath.IsAbs(caDir) {
		caDir = filepath.Join(b.dir, caDir)
	}
	ca := c.o.CA
	if ca == nil && caDir != "" && CAExists(caDir) {
		if ca, err = OpenCA(caDir, c.master); err != nil {
			return fmt.Errorf("CA: %w", err)
		}
	}
	if ca == nil {
		return nil
	}
	if caDir == "" {
		caDir = filepath.Join(b.dir, CADirName)
	}
	if w := CAExpiryNote(ca, time.Now()); w != "" {
		c.log.Warn(w)
	}
	if w := CARootKeyWarning(caDir); w != "" {
		c.log.Warn(w)
	}
	if b.tlsConfig == nil {
		c.log.Warn("the CA in " + caDir + " renews certificates only over TLS: give rampart serve --tls-cert and --tls-key")
		return nil
	}
	p := mtls.RenewPolicy{MaxLineage: maxLineage, MaxLifetime: c.o.RenewMaxLifetime, Logger: c.log}
	if err := p.Check(); err != nil {
		return err
	}
	b.renew, b.caExpiry = mtls.RenewHandler(ca, p), ca.Issuing.NotAfter
	// Asked for, not required, as for --client-ca: the renewal handler
	// refuses requests without one. tls_client_auth keeps to
	// --client-ca's roots (none without it): the internal CA's
	// certificates renew, they do not log in as OAuth clients.
	clientCAs := x509.NewCertPool()
	if b.tlsConfig.ClientCAs != nil {
		clientCAs = b.tlsConfig.ClientCAs
	}
	c.oauth.ClientCAs = clientCAs
	b.tlsConfig.ClientCAs = clientCAs.Clone()
	b.tlsConfig.ClientCAs.AddCert(ca.Root)
	b.tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
	c.log.Info("certificate renewal at "+c.base+RenewPath, "ca", caDir)
	return nil
}

// server builds the control plane's handler and its http.Server.
func (c *ControlPlane) server(cfg *File, b *builder) error {
	reg := b.registry()
	c.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_config_reloads_total",
		Help: "SIGHUP reloads of rampart serve's configuration, by result: applied or refused (the running configuration stays).",
	}, []string{"result"})
	reg.MustRegister(c.reloads)
	c.reloads.WithLabelValues("applied")
	c.reloads.WithLabelValues("refused")
	srv, err := server.New(server.Config{
		Registry:           reg,
		CertRenewal:        b.renew,
		CAExpiry:           b.caExpiry,
		OAuth:              c.oauth,
		APIKeyRotation:     c.oauth.LimitFailedAuth(c.manager.RotateHandler(c.verifier, b.grace)),
		Store:              c.st,
		AdminToken:         b.adminTok,
		AdminTokenHint:     adminTokenHint(b.tokenFrom, cfg.AdminTokenFile),
		BundleKeys:         b.live.BundleKeys,
		ReportLimit:        b.live.ReportLimit,
		ReportQuota:        b.live.ReportQuota,
		TrustedProxies:     b.proxies,
		BundleCacheControl: b.live.BundleCacheControl,
		BundleCacheTTL:     c.o.BundleCacheTTL,
		SecureCookies:      b.tlsConfig != nil || cfg.SecureCookies,
		Retention:          b.live.Retention,
		Logger:             c.log,
		AccessLog:          b.live.AccessLog,
		CT:                 ctView(b.ct),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	c.onClose(func() { srv.Close(context.Background()) }) // after Shutdown's, it returns at once
	c.srv = srv
	if b.ct != nil {
		b.ct.Start(context.Background())
		c.onClose(b.ct.Close)
		c.log.Info("watching Certificate Transparency logs for the pinned domains", "log_list", cfg.CT.Logs, "dashboard", c.base+"/ct")
	}
	c.hs = &http.Server{
		Handler:           httpx.Framing(srv), // ambiguous request framing: answered and closed (RFC 9112 §6.1)
		TLSConfig:         b.tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	c.started(cfg, b)
	return nil
}

// started logs what a start-up says: where, with what, and warnings.
func (c *ControlPlane) started(cfg *File, b *builder) {
	if a, err := netip.ParseAddrPort(c.ln.Addr().String()); !c.tls && err == nil && !a.Addr().IsLoopback() {
		c.log.Warn("serving plain http on " + c.ln.Addr().String() + "; clients fetch pins from here, so give it --tls-cert and --tls-key or put it behind TLS")
	}
	scheme := "http"
	if c.tls {
		scheme = "https"
	}
	c.log.Info("control plane listening on "+scheme+"://"+c.ln.Addr().String(), "database", backend.Describe(c.dsn), "pid", os.Getpid())
	c.log.Info("dashboard at "+c.base+"/", "admin_token", b.tokenFrom)
	c.log.Info("OAuth2 issuer "+c.issuer, "token_endpoint", strings.TrimSuffix(c.issuer, "/")+"/oauth2/token", "master_key", c.master.Source)
	c.log.Info("report storage", "quota", c.srv.Settings().ReportQuota.String(), "retention", cfg.Retention)
	if b.live.BundleKeys == nil {
		c.log.Warn("no --bundle-key: publishing bundles is refused")
	}
}

// Serve serves until Shutdown; its error is http.ErrServerClosed then.
func (c *ControlPlane) Serve() error {
	if c.tls {
		return c.hs.ServeTLS(c.ln, "", "")
	}
	return c.hs.Serve(c.ln)
}

// Shutdown stops serving: requests in flight finish (within ctx), then
// the reports acknowledged are committed.
func (c *ControlPlane) Shutdown(ctx context.Context) error {
	c.log.Info("shutting down")
	if err := c.hs.Shutdown(ctx); err != nil {
		c.log.Warn("shutdown: connections still open", "err", err)
	}
	if err := c.srv.Close(ctx); err != nil {
		return fmt.Errorf("committing the last reports: %w", err)
	}
	return nil
}

// Close releases what New opened, in the reverse order. Call it after
// Shutdown (or instead of Serve, when New's caller gives up).
func (c *ControlPlane) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	return nil
}

// Logger is the control plane's logger: the one stream of the process.
func (c *ControlPlane) Logger() *slog.Logger { return c.log }

// Addr is the address it listens on.
func (c *ControlPlane) Addr() net.Addr { return c.ln.Addr() }

// URL is the control plane's URL as clients use it (no trailing slash).
func (c *ControlPlane) URL() string { return c.base }

// Issuer is the OAuth2 issuer of its tokens.
func (c *ControlPlane) Issuer() string { return c.issuer }

// Handler is the control plane's handler, with the framing guard: what
// Serve serves.
func (c *ControlPlane) Handler() http.Handler { return c.hs.Handler }

// Store is the store it opened, for in-process tools (rampart demo, tests)
// that act as rampart client and apikey do.
func (c *ControlPlane) Store() store.Store { return c.st }

// APIKeys is the client and API-key manager over the store, with the
// master key's pepper.
func (c *ControlPlane) APIKeys() *apikey.Manager { return c.manager }

// loadPool reads a PEM file of CA certificates given with flag.
func loadPool(flag, file string) (*x509.CertPool, error) {
	items, err := certfile.ReadFile(file, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, file, err)
	}
	pool := x509.NewCertPool()
	for _, it := range items {
		if it.Cert == nil {
			return nil, fmt.Errorf("%s %s: holds a %s; want certificates only", flag, file, it.Type)
		}
		pool.AddCert(it.Cert)
	}
	return pool, nil
}
