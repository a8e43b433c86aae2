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
	"strconv"
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
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
	"github.com/rampartsec/rampart/token"
)

func newGatewayCmd(stdio Stdio) *cobra.Command {
	var (
		configFile string
		logFormat  string
		pidFile    string
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
docs/gateway.md. The TLS certificate is reloaded when its files change;
the service certificate too, or it is renewed at the control plane
(identity.renew). SIGHUP reloads the configuration (a configuration that
does not load is logged and the old one kept); send it to this process
only: --pid-file writes its PID, or let systemd do it (ExecReload=kill
-HUP $MAINPID). SIGTERM or Ctrl-C stops accepting connections and lets
requests in flight finish.

API keys are checked in the control plane's database (auth.api_keys),
with the master key of rampart serve ($RAMPART_MASTER_KEY or
DATA/master.key). Bearer tokens are checked against the issuer's JWKS
(auth.tokens). Metrics are at admin_listen/metrics.`,
		Example: `  rampart gateway --config gateway.yaml --pid-file /run/rampart/gateway.pid
  kill -HUP "$(cat /run/rampart/gateway.pid)"    # reload gateway.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if configFile == "" {
				return usagef("gateway needs --config FILE")
			}
			return runGateway(c.Context(), stdio, configFile, logFormat, pidFile)
		},
	}
	c.Flags().StringVar(&configFile, "config", "", "configuration `FILE` (YAML)")
	c.Flags().StringVar(&logFormat, "log-format", "json", "log format: text or `json`")
	c.Flags().StringVar(&pidFile, "pid-file", "", "write the process ID to `FILE` while serving (for kill -HUP)")
	return c
}

func runGateway(ctx context.Context, stdio Stdio, configFile, logFormat, pidFile string) error {
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
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", w)
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
		// go-redis would log each failed dial on its own, in its own
		// format; the limiter logs the store's failures and recoveries.
		redis.SetLogger(redisLogger{logger})
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		prefix := s.Prefix
		if prefix == "" {
			prefix = "rampart:rl:gateway"
		}
		deps.RateLimitStore = redisstore.New(rdb, redisstore.Options{Prefix: prefix})
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		if err := rdb.Ping(pctx).Err(); err != nil {
			fmt.Fprintf(stdio.Err, "rampart: warning: ratelimit_store: redis at %s does not answer (%v); until it does, %s\n", opts.Addr, err, storeDown(cfg))
		}
		pcancel()
	}
	g, err := gateway.New(cfg, deps)
	if err != nil {
		return fail(ExitUsage, err)
	}
	defer g.Close()

	var tlsConfig *tls.Config
	if cfg.TLS != nil {
		// Its log lines say which certificate: this one is the clients'.
		cert := &mtls.Reloader{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key, Logger: logger.With("certificate", "tls")}
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
		// ParseConfig refuses a listen address that is not loopback;
		// this is a name that resolved to another.
		return fail(ExitUsage, fmt.Errorf("listen %q is %s: plain http only on loopback, or credentials cross the network in the clear: configure tls", cfg.Listen, ln.Addr()))
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
		fmt.Fprintf(stdio.Err, "rampart: route %s\n", describeRoute(r))
	}
	if pidFile != "" {
		if err := writePIDFile(pidFile); err != nil {
			return fail(ExitUsage, fmt.Errorf("--pid-file: %w", err))
		}
		defer removePIDFile(pidFile)
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
			logger.Info("configuration reloaded", "file", configFile, "changed", configChanges(cfg, next))
			for _, w := range next.Warnings() {
				logger.Warn(w)
			}
			cfg = next
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

// describeRoute is a route's start-up line: where it goes, whom it
// expects there, and what it lets through.
func describeRoute(r gateway.Route) string {
	s := r.Prefix + " -> " + r.Upstream
	var opts []string
	if r.UpstreamID != "" {
		opts = append(opts, "upstream_id "+r.UpstreamID)
	}
	opts = append(opts, "auth "+r.Auth)
	if len(r.Methods) > 0 {
		opts = append(opts, "methods "+strings.Join(r.Methods, " "))
	}
	if r.StripPrefix {
		opts = append(opts, "strip_prefix")
	}
	if r.Websocket {
		opts = append(opts, "websocket")
	}
	if r.ForwardCookies {
		opts = append(opts, "forward_cookies")
	}
	return s + " (" + strings.Join(opts, ", ") + ")"
}

// configChanges says what a reload changed: routes added (+), removed
// (-) or changed (~), and the other sections that differ.
func configChanges(cur, next *gateway.Config) string {
	var out []string
	old := map[string]gateway.Route{}
	for _, r := range cur.Routes {
		old[r.Prefix] = r
	}
	var routes []string
	for _, r := range next.Routes {
		o, ok := old[r.Prefix]
		switch {
		case !ok:
			routes = append(routes, "+"+r.Prefix)
		case !reflect.DeepEqual(o, r):
			routes = append(routes, "~"+r.Prefix)
		}
		delete(old, r.Prefix)
	}
	for _, r := range cur.Routes {
		if _, gone := old[r.Prefix]; gone {
			routes = append(routes, "-"+r.Prefix)
		}
	}
	if len(routes) > 0 {
		out = append(out, "routes "+strings.Join(routes, " "))
	}
	for _, f := range []struct {
		name     string
		was, now any
	}{
		{"hosts", cur.Hosts, next.Hosts},
		{"identity", cur.Identity, next.Identity},
		{"cors", cur.CORS, next.CORS},
		{"ratelimit", cur.Limits, next.Limits},
	} {
		if !reflect.DeepEqual(f.was, f.now) {
			out = append(out, f.name)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, "; ")
}

// storeDown says what the edge rules do while the shared store is down.
func storeDown(cfg *gateway.Config) string {
	var open, closed []string
	if cfg.Limits != nil {
		for _, r := range cfg.Limits.Rules {
			switch {
			case r.Kind == ratelimit.Business:
			case r.Failure == ratelimit.FailClosed:
				closed = append(closed, r.Name)
			default:
				open = append(open, r.Name)
			}
		}
	}
	var parts []string
	if len(open) > 0 {
		parts = append(parts, "open rules ("+strings.Join(open, ", ")+") limit on this instance alone")
	}
	if len(closed) > 0 {
		parts = append(parts, "closed rules ("+strings.Join(closed, ", ")+") refuse with 503")
	}
	if len(parts) == 0 {
		return "no rule uses it"
	}
	return strings.Join(parts, " and ")
}

// redisLogger sends go-redis's own log lines to the debug level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// writePIDFile writes this process's ID to name, by renaming a new file
// into place.
func writePIDFile(name string) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removePIDFile removes name if it still holds this process's ID (a
// second instance may have replaced it).
func removePIDFile(name string) {
	if data, err := os.ReadFile(name); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		os.Remove(name)
	}
}
