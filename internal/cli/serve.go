package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/keygen"
	"github.com/rampartsec/rampart/internal/masterkey"
	"github.com/rampartsec/rampart/internal/server"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// serveConfig is the file of rampart serve --config: the same settings as
// the flags, which override it.
type serveConfig struct {
	Listen             string   `yaml:"listen"`
	DataDir            string   `yaml:"data_dir"`
	DB                 string   `yaml:"db"`
	TLSCert            string   `yaml:"tls_cert"`
	TLSKey             string   `yaml:"tls_key"`
	AdminTokenFile     string   `yaml:"admin_token_file"`
	BundleKeys         []string `yaml:"bundle_keys"`
	TrustedProxies     []string `yaml:"trusted_proxies"`
	BundleCacheControl string   `yaml:"bundle_cache_control"`
	Reports            struct {
		Rate  *int `yaml:"rate"`  // per second per client address; 0 disables
		Burst *int `yaml:"burst"` // default 100
	} `yaml:"reports"`
	LogFormat string `yaml:"log_format"` // text | json
	Retention string `yaml:"retention"`  // e.g. 90d, 720h; 0 keeps reports forever
	// SecureCookies marks the dashboard cookie Secure when TLS ends in a
	// proxy in front (with --tls-cert it always is).
	SecureCookies bool `yaml:"secure_cookies"`
	// The OAuth2 authorization server and API keys.
	Issuer       string              `yaml:"issuer"`
	Audience     string              `yaml:"audience"`
	ClientCA     string              `yaml:"client_ca"`
	Scopes       []string            `yaml:"scopes"`
	ScopeImplies map[string][]string `yaml:"scope_implies"`
	KeyGrace     string              `yaml:"key_grace"`
}

func loadServeConfig(path string) (*serveConfig, error) {
	var c serveConfig
	if path == "" {
		return &c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return &c, nil
}

func newServeCmd(stdio Stdio) *cobra.Command {
	var (
		configFile string
		flags      serveConfig
		rate       int
		burst      int
	)
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--listen ADDR] [--db DSN]",
		Short: "Run the control plane: failure reports, pin bundles, dashboard",
		Long: `Run the control plane.

Endpoints:
  POST /v1/reports          pin failure reports (RFC 7469 and TrustKit JSON)
  GET  /v1/bundles/{name}   the latest signed pin bundle (ETag, Cache-Control)
  /v1/admin/...             publish bundles, list and summarize reports (admin token)
  GET  /                    the dashboard (sign in with the admin token)
  GET  /metrics, /healthz   Prometheus metrics, health

With no flags it keeps everything in SQLite under the data directory
($RAMPART_DATA, else ~/.local/share/rampart) and needs no other service.
--db postgres://... shares one PostgreSQL database between instances.

The admin token is $RAMPART_ADMIN_TOKEN, else the file admin_token_file
names, else DATA/admin-token, made with 256 random bits on first start.

Bundles are accepted only if signed by a key given with --bundle-key (the
public half; the control plane never holds a signing key).

SIGTERM or Ctrl-C stops it gracefully: requests in flight finish and every
acknowledged report is committed.

The config file (YAML, unknown fields are errors) takes the flags' names with
underscores: listen, data_dir, db, tls_cert, tls_key, admin_token_file,
bundle_keys, trusted_proxies, bundle_cache_control, reports: {rate, burst},
log_format, retention, secure_cookies, issuer, audience, client_ca, scopes,
scope_implies (e.g. {payment.write: [payment.read]}), key_grace.

The OAuth2 authorization server (client credentials, RFC 6749 §4.4) is at
/oauth2/token, its metadata at /.well-known/oauth-authorization-server.
Clients authenticate with an API key as client secret, or with a client
certificate chaining to --client-ca (tls_client_auth). API-key hashes and
token signing keys are protected by the master key: $RAMPART_MASTER_KEY or
DATA/master.key (made on first start). Every instance sharing a database
needs the same one.`,
		Example: `  rampart serve
  rampart serve --listen :8443 --tls-cert cp.pem --tls-key cp.key --bundle-key bundle.pub
  rampart serve --db 'postgres://rampart@db.internal/rampart' --trusted-proxy 10.0.0.0/8`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(configFile)
			if err != nil {
				return fail(ExitUsage, fmt.Errorf("--config %w", err))
			}
			// Flags override the file.
			set := func(name string, dst *string, v string) {
				if c.Flags().Changed(name) || *dst == "" {
					*dst = v
				}
			}
			set("listen", &cfg.Listen, flags.Listen)
			set("data", &cfg.DataDir, flags.DataDir)
			set("db", &cfg.DB, flags.DB)
			set("tls-cert", &cfg.TLSCert, flags.TLSCert)
			set("tls-key", &cfg.TLSKey, flags.TLSKey)
			set("log-format", &cfg.LogFormat, flags.LogFormat)
			set("retention", &cfg.Retention, flags.Retention)
			set("issuer", &cfg.Issuer, flags.Issuer)
			set("audience", &cfg.Audience, flags.Audience)
			set("client-ca", &cfg.ClientCA, flags.ClientCA)
			if c.Flags().Changed("secure-cookies") {
				cfg.SecureCookies = flags.SecureCookies
			}
			if c.Flags().Changed("bundle-key") {
				cfg.BundleKeys = flags.BundleKeys
			}
			if c.Flags().Changed("trusted-proxy") {
				cfg.TrustedProxies = flags.TrustedProxies
			}
			if c.Flags().Changed("report-rate") || cfg.Reports.Rate == nil {
				cfg.Reports.Rate = &rate
			}
			if c.Flags().Changed("report-burst") || cfg.Reports.Burst == nil {
				cfg.Reports.Burst = &burst
			}
			return runServe(c.Context(), stdio, cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&configFile, "config", "", "configuration `FILE` (YAML)")
	f.StringVar(&flags.Listen, "listen", "127.0.0.1:8080", "listen on `ADDR`")
	f.StringVar(&flags.DataDir, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	f.StringVar(&flags.DB, "db", "", "database `DSN`: postgres://... or a SQLite file (default DATA/rampart.db)")
	f.StringVar(&flags.TLSCert, "tls-cert", "", "serve https with this certificate chain `FILE` (PEM)")
	f.StringVar(&flags.TLSKey, "tls-key", "", "the private key `FILE` of --tls-cert")
	f.StringArrayVar(&flags.BundleKeys, "bundle-key", nil, "public key `FILE` bundles must be signed with (repeat for rotation)")
	f.StringArrayVar(&flags.TrustedProxies, "trusted-proxy", nil, "`CIDR` of a proxy whose X-Forwarded-For is believed (repeatable)")
	f.IntVar(&rate, "report-rate", 10, "reports accepted per second per client address (`N`; 0: no limit)")
	f.IntVar(&burst, "report-burst", 100, "burst of --report-rate (`N`)")
	f.StringVar(&flags.LogFormat, "log-format", "text", "log format: `text` or json")
	f.StringVar(&flags.Issuer, "issuer", "", "the OAuth2 issuer `URL` (default: this server's URL)")
	f.StringVar(&flags.Audience, "audience", "rampart", "the `aud` of access tokens: the resource servers' identifier")
	f.StringVar(&flags.ClientCA, "client-ca", "", "CA certificates (`FILE`, PEM) that client certificates must chain to (tls_client_auth, bound tokens)")
	f.BoolVar(&flags.SecureCookies, "secure-cookies", false, "mark the dashboard cookie Secure (https ends in a proxy in front)")
	f.StringVar(&flags.Retention, "retention", "90d", "delete reports older than this (`90d`, 720h; 0 keeps them)")
	return c
}

// dataDir returns the data directory, created 0700.
func dataDir(dir string) (string, error) {
	dir, err := dataDirPath(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// dataDirPath returns the data directory's path: dir, else $RAMPART_DATA,
// else $XDG_DATA_HOME/rampart or ~/.local/share/rampart.
func dataDirPath(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("RAMPART_DATA")
	}
	if dir == "" {
		base := os.Getenv("XDG_DATA_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no data directory: set --data or $RAMPART_DATA (%w)", err)
			}
			base = filepath.Join(home, ".local", "share")
		}
		dir = filepath.Join(base, "rampart")
	}
	return dir, nil
}

// adminToken finds the admin token, making one on first start. It returns
// the token and where it came from (never the token in a message).
func adminToken(file, dir string) (string, string, error) {
	if t := os.Getenv("RAMPART_ADMIN_TOKEN"); t != "" {
		return t, "$RAMPART_ADMIN_TOKEN", nil
	}
	if file == "" {
		file = filepath.Join(dir, "admin-token")
		var raw [32]byte
		rand.Read(raw[:])
		err := keygen.WriteNew(file, []byte(base64.RawURLEncoding.EncodeToString(raw[:])+"\n"))
		if err != nil && !errors.Is(err, keygen.ErrExists) {
			return "", "", err
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		return "", "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", "", fmt.Errorf("%s is readable by others (mode %04o); chmod 600 it", file, fi.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", "", err
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", "", fmt.Errorf("%s is empty", file)
	}
	return t, file, nil
}

func runServe(ctx context.Context, stdio Stdio, cfg *serveConfig) error {
	var logger *slog.Logger
	switch cfg.LogFormat {
	case "text", "":
		logger = slog.New(slog.NewTextHandler(stdio.Err, nil))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stdio.Err, nil))
	default:
		return usagef("--log-format %q: want text or json", cfg.LogFormat)
	}
	// The CA's renewal log (mtls.RenewHandler) and other library logs
	// in the same format and place.
	slog.SetDefault(logger)
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	var proxies []netip.Prefix
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return usagef("trusted proxy %q: want a CIDR such as 10.0.0.0/8", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		proxies = append(proxies, p.Masked())
	}
	limit := ratelimit.PerSecond(*cfg.Reports.Rate, *cfg.Reports.Burst)
	switch {
	case *cfg.Reports.Rate == 0:
		limit = ratelimit.Limit{Rate: -1}
	case *cfg.Reports.Rate < 0:
		return usagef("report rate %d: want 0 (no limit) or more", *cfg.Reports.Rate)
	default:
		if err := limit.Validate(); err != nil {
			return usagef("%v", err)
		}
	}
	keys, err := loadKeys(cfg.BundleKeys)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("bundle key: %w", err))
	}

	retention, err := parseRetention(cfg.Retention)
	if err != nil {
		return usagef("%v", err)
	}
	dir, err := dataDir(cfg.DataDir)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	adminTok, tokenSource, err := adminToken(cfg.AdminTokenFile, dir)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("admin token: %w", err))
	}
	dsn := cfg.DB
	if dsn == "" {
		dsn = filepath.Join(dir, "rampart.db")
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		return fail(ExitFailure, err)
	}
	defer st.Close()

	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		// Reloaded when the files change: a certificate from rampart ca
		// issue lives a day.
		cert := &mtls.Reloader{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Logger: logger}
		if err := cert.Start(ctx); err != nil {
			return fail(ExitUsage, fmt.Errorf("TLS certificate: %w", err))
		}
		tlsConfig = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if cfg.ClientCA != "" {
		if tlsConfig == nil {
			return usagef("--client-ca needs --tls-cert: client certificates come with TLS")
		}
		pool, err := loadPool("--client-ca", cfg.ClientCA)
		if err != nil {
			return err
		}
		// Asked for, not required: the dashboard and reports need none;
		// tls_client_auth and bound tokens use what was verified.
		tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		tlsConfig.ClientCAs = pool
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(ExitFailure, err)
	}
	defer ln.Close()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	if cfg.Issuer == "" {
		host := ln.Addr().String()
		if a, err := netip.ParseAddrPort(host); err == nil && a.Addr().IsUnspecified() {
			// Listening on every address: no one of them is the name
			// clients use.
			host = net.JoinHostPort("localhost", strconv.Itoa(int(a.Port())))
			fmt.Fprintf(stdio.Err, "rampart: warning: no --issuer: using %s://%s; set it to the URL clients use\n", scheme, host)
		}
		cfg.Issuer = scheme + "://" + host
	}
	secrets, err := masterkey.Load(dir, true)
	if err != nil {
		return fail(ExitUsage, err)
	}
	grace := 72 * time.Hour
	if cfg.KeyGrace != "" {
		if grace, err = time.ParseDuration(cfg.KeyGrace); err != nil || grace < 0 || grace > apikey.MaxGrace {
			return usagef("key_grace %q: want a duration up to %v", cfg.KeyGrace, apikey.MaxGrace)
		}
	}
	scopes := cfg.Scopes
	if scopes == nil {
		scopes = defaultScopes
	}
	catalogue := &apikey.Manager{Scopes: scopes}
	if err := catalogue.CheckScopes(scopes); err != nil {
		return usagef("scopes: %v", err)
	}
	for s, implied := range cfg.ScopeImplies {
		if err := catalogue.CheckScopes(append([]string{s}, implied...)); err != nil {
			return usagef("scope_implies: %v", err)
		}
	}
	verifier := &apikey.Verifier{Store: st.APIKeys(), Pepper: secrets.Pepper, Logger: logger}
	defer verifier.Close()
	keyManager := &apikey.Manager{Store: st.APIKeys(), Pepper: secrets.Pepper, Scopes: scopes}
	oauth := &token.Server{
		Issuer: cfg.Issuer, Audience: cfg.Audience,
		Keys: st.SigningKeys(), Revocations: st.RevokedTokens(),
		Clients: st.APIKeys(), APIKeys: verifier, KeyEncryptionKey: secrets.SigningKeyKEK,
		Scopes: scopes, ScopeImplies: cfg.ScopeImplies, TrustedProxies: proxies, Logger: logger,
	}
	if err := oauth.Start(ctx); err != nil {
		return fail(ExitFailure, err)
	}
	renew, ca, err := caRenewal(dir, secrets, mtls.DefaultTTL)
	if err != nil {
		return fail(ExitUsage, err)
	}
	if ca != nil {
		if w := caExpiryNote(ca, time.Now()); w != "" {
			fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", w)
		}
	}
	if renew != nil {
		if tlsConfig == nil {
			fmt.Fprintf(stdio.Err, "rampart: warning: the CA in %s renews certificates only over TLS: give rampart serve --tls-cert and --tls-key\n", filepath.Join(dir, caDirName))
			renew = nil
		} else {
			// Asked for, not required, as for --client-ca: the renewal
			// handler refuses requests without one.
			// tls_client_auth keeps to --client-ca's roots (none without
			// it): the internal CA's certificates renew, they do not log
			// in as OAuth clients.
			clientCAs := x509.NewCertPool()
			if tlsConfig.ClientCAs != nil {
				clientCAs = tlsConfig.ClientCAs
			}
			oauth.ClientCAs = clientCAs
			tlsConfig.ClientCAs = clientCAs.Clone()
			tlsConfig.ClientCAs.AddCert(ca.Root)
			tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
			fmt.Fprintf(stdio.Err, "rampart: certificate renewal for the CA in %s at %s://%s%s\n", filepath.Join(dir, caDirName), scheme, ln.Addr(), caRenewPath)
		}
	}
	var caExpiry time.Time
	if renew != nil {
		caExpiry = ca.Issuing.NotAfter
	}
	srv, err := server.New(server.Config{
		CertRenewal:        renew,
		CAExpiry:           caExpiry,
		OAuth:              oauth,
		APIKeyRotation:     keyManager.RotateHandler(verifier, grace),
		Store:              st,
		AdminToken:         adminTok,
		BundleKeys:         keys,
		ReportLimit:        limit,
		TrustedProxies:     proxies,
		BundleCacheControl: cfg.BundleCacheControl,
		SecureCookies:      tlsConfig != nil || cfg.SecureCookies,
		Retention:          retention,
		Logger:             logger,
	})
	if err != nil {
		return fail(ExitUsage, err)
	}
	hs := &http.Server{
		Handler:           srv,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if a, err := netip.ParseAddrPort(ln.Addr().String()); tlsConfig == nil && err == nil && !a.Addr().IsLoopback() {
		fmt.Fprintf(stdio.Err, "rampart: warning: serving plain http on %s; clients fetch pins from here, so give it --tls-cert and --tls-key or put it behind TLS\n", ln.Addr())
	}
	db := dsn
	if strings.Contains(dsn, "://") {
		db = "postgres"
	}
	fmt.Fprintf(stdio.Err, "rampart: control plane listening on %s://%s (database %s)\n", scheme, ln.Addr(), db)
	fmt.Fprintf(stdio.Err, "rampart: admin token from %s; dashboard at %s://%s/\n", tokenSource, scheme, ln.Addr())
	fmt.Fprintf(stdio.Err, "rampart: OAuth2 issuer %s (token endpoint %s/oauth2/token); master key from %s\n", cfg.Issuer, strings.TrimSuffix(cfg.Issuer, "/"), secrets.Source)
	if keys == nil {
		fmt.Fprintf(stdio.Err, "rampart: no --bundle-key: publishing bundles is refused\n")
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fail(ExitFailure, err)
	case <-ctx.Done():
	}
	fmt.Fprintf(stdio.Err, "rampart: shutting down\n")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("shutdown: connections still open", "err", err)
	}
	if err := srv.Close(sctx); err != nil {
		return fail(ExitFailure, fmt.Errorf("committing the last reports: %w", err))
	}
	return nil
}

// parseRetention reads --retention: "0", a number of days ("90d") or a Go
// duration ("720h").
func parseRetention(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= time.Hour {
		return d, nil
	}
	return 0, fmt.Errorf("--retention %q: want 0 (keep forever), days (90d) or a duration of at least 1h (720h)", s)
}
