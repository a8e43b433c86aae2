package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/masterkey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
	"github.com/rampartsec/rampart/token"
)

func newGatewayCmd(stdio Stdio) *cobra.Command {
	var (
		configFile string
		logFormat  string
	)
	c := &cobra.Command{
		Use:   "gateway --config FILE",
		Short: "Run the edge gateway in front of payment services",
		Long: `Run the edge gateway: a reverse proxy that terminates TLS (HTTP/2 and
HTTP/1.1) and makes every request pass CORS, edge rate limits, a size
limit and a timeout, and authentication by API key or bearer token before
it reaches a service, over mutual TLS with the gateway's own service
certificate.

The configuration (YAML, unknown fields are errors) is described in
docs/gateway.md. The TLS certificate and the service certificate are
reloaded when their files change; SIGHUP reloads the configuration
(a configuration that does not load is logged and the old one kept);
SIGTERM or Ctrl-C stops accepting connections and lets requests in
flight finish.

API keys are checked in the control plane's database (auth.api_keys),
with the master key of rampart serve ($RAMPART_MASTER_KEY or
DATA/master.key). Bearer tokens are checked against the issuer's JWKS
(auth.tokens). Metrics are at admin_listen/metrics.`,
		Example: `  rampart gateway --config gateway.yaml
  kill -HUP $(pidof rampart)    # reload gateway.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if configFile == "" {
				return usagef("gateway needs --config FILE")
			}
			return runGateway(c.Context(), stdio, configFile, logFormat)
		},
	}
	c.Flags().StringVar(&configFile, "config", "", "configuration `FILE` (YAML)")
	c.Flags().StringVar(&logFormat, "log-format", "json", "log format: text or `json`")
	return c
}

func runGateway(ctx context.Context, stdio Stdio, configFile, logFormat string) error {
	if logFormat != "text" && logFormat != "json" {
		return usagef("--log-format %q: want text or json", logFormat)
	}
	// Signals are caught before anything listens: a supervisor that sees
	// the port open or the banner and sends SIGHUP (a reload right after
	// a deploy) must not kill the gateway with the default action. They
	// wait in the channels until the gateway serves.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := gateway.LoadConfig(configFile)
	if err != nil {
		return fail(ExitUsage, err)
	}
	newLogger := func(w io.Writer) *slog.Logger {
		if logFormat == "text" {
			return slog.New(slog.NewTextHandler(w, nil))
		}
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	logger := newLogger(stdio.Err)
	// Libraries that log to the default logger (the token Validator's
	// configuration errors) log in the same format, to the same place.
	slog.SetDefault(logger)
	accessLog := logger
	var logFile *reopenFile
	switch cfg.AccessLog {
	case "stdout":
		accessLog = newLogger(stdio.Out)
	case "stderr", "off":
	default:
		logFile = &reopenFile{path: cfg.AccessLog}
		if err := logFile.reopen(); err != nil {
			return fail(ExitUsage, fmt.Errorf("access_log: %w", err))
		}
		defer logFile.Close()
		accessLog = newLogger(logFile)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deps := gateway.Deps{Logger: logger, AccessLog: accessLog}
	var st store.Store
	if a := cfg.Auth.APIKeys; a != nil {
		var secrets *masterkey.Keys
		if st, secrets, err = openKeyStore(ctx, a.DataDir, a.DB); err != nil {
			return err
		}
		defer st.Close()
		deps.APIKeys = &apikey.Verifier{Store: st.APIKeys(), Pepper: secrets.Pepper, Logger: logger}
		defer deps.APIKeys.Close()
	}
	if t := cfg.Auth.Tokens; t != nil {
		v := &token.Validator{Issuer: t.Issuer, Audience: t.Audience, JWKSURL: t.JWKSURL}
		if t.JWKSRoots != "" {
			pool, err := loadPool("auth.tokens.jwks_roots", t.JWKSRoots)
			if err != nil {
				return err
			}
			v.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			}}
		}
		if st != nil {
			// The control plane's revocations (RFC 7009) apply at once.
			v.Revoked = st.RevokedTokens().TokenRevoked
		} else {
			fmt.Fprintln(stdio.Err, "rampart: warning: auth.tokens without auth.api_keys: revoked tokens are accepted until they expire; give auth.api_keys the control plane's database to check revocations")
		}
		// A misconfigured Validator returns a plain error, not a
		// *token.Error: refuse to start rather than answer 500 later.
		var te *token.Error
		if _, err := v.Validate(ctx, "", nil); err != nil && !errors.As(err, &te) {
			return fail(ExitUsage, fmt.Errorf("auth.tokens: %w", err))
		}
		deps.Tokens = v
	}
	if s := cfg.LimitStore; s != nil {
		opts, err := redis.ParseURL(s.Redis)
		if err != nil {
			return fail(ExitUsage, fmt.Errorf("ratelimit_store.redis: %w", err))
		}
		// Fail fast: a decision waits at most one round trip on a
		// Redis that is down, then the rule's failure mode applies.
		opts.MaxRetries, opts.DialerRetries = -1, 1
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		prefix := s.Prefix
		if prefix == "" {
			prefix = "rampart:rl:gateway"
		}
		deps.RateLimitStore = redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	}
	g, err := gateway.New(cfg, deps)
	if err != nil {
		return fail(ExitUsage, err)
	}
	defer g.Close()

	var tlsConfig *tls.Config
	if cfg.TLS != nil {
		cert := &mtls.Reloader{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key, Logger: logger}
		if err := cert.Start(ctx); err != nil {
			return fail(ExitUsage, fmt.Errorf("tls: %w", err))
		}
		tlsConfig = &tls.Config{
			GetCertificate: cert.GetCertificate,
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(ExitFailure, err)
	}
	defer ln.Close()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	} else if a, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !a.Addr().IsLoopback() {
		fmt.Fprintf(stdio.Err, "rampart: warning: serving plain http on %s; credentials cross the network in the clear: configure tls\n", ln.Addr())
	}
	hs := &http.Server{
		Handler:           g.Handler(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	servers := []*http.Server{hs}
	errc := make(chan error, 2)
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fail(ExitFailure, fmt.Errorf("admin_listen: %w", err))
		}
		admin := &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, admin)
		go func() { errc <- admin.Serve(aln) }()
		fmt.Fprintf(stdio.Err, "rampart: gateway metrics at http://%s/metrics\n", aln.Addr())
	}
	for _, r := range cfg.Routes {
		fmt.Fprintf(stdio.Err, "rampart: route %s -> %s (auth %s)\n", r.Prefix, r.Upstream, r.Auth)
	}
	fmt.Fprintf(stdio.Err, "rampart: gateway listening on %s://%s\n", scheme, ln.Addr())
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()

	for running := true; running; {
		select {
		case err := <-errc:
			return fail(ExitFailure, err)
		case <-ctx.Done():
			running = false
		case <-stop:
			running = false
		case <-hup:
			// logrotate renames the access log, then sends SIGHUP.
			if logFile != nil {
				if err := logFile.reopen(); err != nil {
					logger.Error("access_log: reopening failed; still writing to the old file", "err", err)
				}
			}
			next, err := gateway.LoadConfig(configFile)
			if err == nil {
				err = startOnly(configFile, cfg, next)
			}
			if err == nil {
				err = g.Reload(next)
			}
			if err != nil {
				logger.Error("reload failed; keeping the configuration in use", "err", err)
				continue
			}
			logger.Info("configuration reloaded", "file", configFile)
		}
	}
	fmt.Fprintf(stdio.Err, "rampart: shutting down\n")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	go func() {
		select {
		case <-stop: // a second signal: do not wait for requests in flight
			scancel()
		case <-sctx.Done():
		}
	}()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			logger.Warn("shutdown: closing connections still open", "err", err)
			s.Close()
		}
	}
	return nil
}

// reopenFile is the access log file, reopened on SIGHUP so that log
// rotation by renaming works.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopenFile) reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// startOnly refuses a reload that changes settings used only at start:
// the listeners, the TLS files (watched from the paths given at start),
// the verifiers built from auth, the rate limit store and the access log.
// Applying the rest would report success while, say, API keys a new auth
// section drops are still accepted.
func startOnly(file string, cur, next *gateway.Config) error {
	var changed []string
	for _, f := range []struct {
		name     string
		was, now any
	}{
		{"listen", cur.Listen, next.Listen},
		{"tls", cur.TLS, next.TLS},
		{"admin_listen", cur.AdminListen, next.AdminListen},
		{"auth", cur.Auth, next.Auth},
		{"ratelimit_store", cur.LimitStore, next.LimitStore},
		{"access_log", cur.AccessLog, next.AccessLog},
	} {
		if !reflect.DeepEqual(f.was, f.now) {
			changed = append(changed, f.name)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s: %s: changed, applied only at start; restart the gateway", file, strings.Join(changed, ", "))
	}
	return nil
}

// openKeyStore opens the control plane's database for checking API keys,
// with its master key (which must exist: the gateway makes none).
func openKeyStore(ctx context.Context, dir, dsn string) (store.Store, *masterkey.Keys, error) {
	// The gateway reads the control plane's directory: a name that does
	// not exist is a mistake, not a directory to make.
	if dir != "" {
		if fi, err := os.Stat(dir); err != nil {
			return nil, nil, fail(ExitUsage, fmt.Errorf("auth.api_keys: data_dir: %w", err))
		} else if !fi.IsDir() {
			return nil, nil, fail(ExitUsage, fmt.Errorf("auth.api_keys: data_dir: %s is not a directory", dir))
		}
	}
	dir, err := dataDir(dir)
	if err != nil {
		return nil, nil, fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	secrets, err := masterkey.Load(dir, false)
	if err != nil {
		return nil, nil, fail(ExitUsage, fmt.Errorf("auth.api_keys: %w", err))
	}
	if dsn == "" {
		dsn = filepath.Join(dir, "rampart.db")
	}
	// Nor is a SQLite file that does not exist one to create: every key
	// would be unknown. (sqlite: and postgres:// DSNs are taken as given.)
	if !strings.Contains(dsn, ":") {
		if _, err := os.Stat(dsn); err != nil {
			return nil, nil, fail(ExitUsage, fmt.Errorf("auth.api_keys: no database at %s: point data_dir or db at the control plane's (%w)", dsn, errors.Unwrap(err)))
		}
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		return nil, nil, fail(ExitFailure, err)
	}
	if err := masterkey.Verify(ctx, st, secrets); err != nil {
		st.Close()
		return nil, nil, fail(ExitUsage, fmt.Errorf("auth.api_keys: %w", err))
	}
	return st, secrets, nil
}
