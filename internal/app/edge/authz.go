package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/authz/envoy"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// checkAuthz checks rampart authz's section.
func (c *File) checkAuthz() error {
	a := c.Authz
	if a == nil || (a.GRPC == nil && a.HTTP == nil) {
		return errors.New("gateway: authz needs grpc: {listen: ...} (Envoy) or http: {listen: ...} (nginx, Caddy, Traefik), or both")
	}
	for name, l := range map[string]*AuthzListener{"authz.grpc": a.GRPC, "authz.http": a.HTTP} {
		if l == nil {
			continue
		}
		if err := l.check(); err != nil {
			return fmt.Errorf("gateway: %s: %w", name, err)
		}
	}
	if a.EnvoyPathPrefix != "" && !strings.HasPrefix(a.EnvoyPathPrefix, "/") {
		return fmt.Errorf("gateway: authz.envoy_path_prefix %q: want a path", a.EnvoyPathPrefix)
	}
	if r := a.RateLimitService; r != nil {
		if a.GRPC == nil {
			return errors.New("gateway: authz.ratelimit_service is served over gRPC: configure authz.grpc")
		}
		if len(r.Configs) == 0 {
			return errors.New("gateway: authz.ratelimit_service needs configs: [files or directories of envoyproxy/ratelimit's format]")
		}
		switch r.Failure {
		case "":
			r.Failure = string(ratelimit.FailOpen)
		case string(ratelimit.FailOpen), string(ratelimit.FailClosed):
		default:
			return fmt.Errorf("gateway: authz.ratelimit_service.failure %q: want open or closed", r.Failure)
		}
	}
	return nil
}

func (l *AuthzListener) check() error {
	if l.TLS != nil && (l.TLS.Cert == "" || l.TLS.Key == "") {
		return errors.New("tls needs cert and key")
	}
	if l.ClientRoots != "" && l.TLS == nil {
		return errors.New("client_roots needs tls: mutual TLS")
	}
	if p, ok := strings.CutPrefix(l.Listen, "unix:"); ok {
		if p == "" || l.TLS != nil {
			return fmt.Errorf("listen %q: want unix:/path, without tls", l.Listen)
		}
		if l.Mode == "" {
			l.Mode = "0660"
		}
		if m, err := strconv.ParseUint(l.Mode, 8, 32); err != nil || m > 0o777 {
			return fmt.Errorf("mode %q: want permissions in octal, such as 0660", l.Mode)
		}
		return nil
	}
	if l.Mode != "" {
		return errors.New("mode is a unix socket's: listen on unix:/path")
	}
	host, _, err := net.SplitHostPort(l.Listen)
	if err != nil {
		return fmt.Errorf("listen %q: want host:port or unix:/path", l.Listen)
	}
	if l.TLS == nil && !httpx.IsLoopbackHost(host) {
		return fmt.Errorf("listen %q: plain text only on loopback or a unix socket: credentials cross the network to the decision; configure tls", l.Listen)
	}
	return nil
}

// Authz is rampart authz: the decision service behind Envoy, nginx,
// Caddy and Traefik, its listeners and what it was built with. Build it
// with NewAuthz, then Serve; Reload applies the file anew.
type Authz struct {
	e       *Edge
	svc     *authz.Service
	limits  *authz.Limits
	grpc    *grpc.Server
	grpcLn  net.Listener
	http    *http.Server
	httpLn  net.Listener
	grpcTLS bool
	httpTLS bool
}

// AuthzOptions are NewAuthz's.
type AuthzOptions struct {
	// Options are the edge's: File (LoadAuthz), Logger, Warn, DataDir,
	// PIDFile, PollInterval. Listener is the HTTP listener's and
	// AdminListener unused.
	Options
	// GRPCListener, if set, is where the gRPC services serve instead of
	// authz.grpc.listen.
	GRPCListener net.Listener
}

// NewAuthz builds rampart authz of o.File: the API-key database, the
// token validator, Redis, the service, the rate limit service and the
// listeners. Errors that are not the configuration's are *StartError.
func NewAuthz(ctx context.Context, o AuthzOptions) (_ *Authz, err error) {
	if o.File == nil || !o.File.decider {
		return nil, errors.New("edge: AuthzOptions.File is not from LoadAuthz")
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	e := &Edge{log: o.Logger, warn: o.Warn, file: o.File}
	if e.log == nil {
		e.log = NewLogger(o.LogFormat, o.Stderr)
	}
	if e.warn == nil {
		e.warn = func(msg string) { e.log.Warn(msg) }
	}
	e.fresh, e.stop = context.WithCancel(context.Background())
	a := &Authz{e: e, grpcLn: o.GRPCListener, httpLn: o.Listener}
	for _, ln := range []net.Listener{o.GRPCListener, o.Listener} {
		if ln != nil {
			e.onClose(func() { ln.Close() })
		}
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	for _, w := range e.file.Warnings() {
		e.warn(w)
	}
	e.deps.Logger = e.log
	steps := []func() error{
		func() error { return e.auth(ctx, o.DataDir) },
		func() error { return e.limitStore(ctx) },
		a.build,
		func() error { return a.listen(o.PollInterval) },
		func() error { return e.writePID(o.PIDFile) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// build makes the service and the rate limit service.
func (a *Authz) build() error {
	var err error
	a.svc, err = authz.New(authz.Options{Gateway: a.e.file.Options(a.e.deps), Logger: a.e.log})
	if err != nil {
		return err
	}
	if r := a.e.file.Authz.RateLimitService; r != nil {
		cs, err := loadLimitConfigs(r.Configs)
		if err != nil {
			return err
		}
		a.limits, err = authz.NewLimits(authz.LimitsOptions{Store: a.e.deps.RateLimitStore,
			Failure: ratelimit.FailureMode(r.Failure), Logger: a.e.log}, cs...)
		if err != nil {
			return err
		}
	}
	return nil
}

// loadLimitConfigs reads the files, and the *.yaml and *.yml files of the
// directories, in names' order (envoyproxy/ratelimit reads a directory).
func loadLimitConfigs(names []string) ([]*authz.LimitConfig, error) {
	var files []string
	for _, n := range names {
		st, err := os.Stat(n)
		if err != nil {
			return nil, fmt.Errorf("authz.ratelimit_service: %w", err)
		}
		if !st.IsDir() {
			files = append(files, n)
			continue
		}
		des, err := os.ReadDir(n)
		if err != nil {
			return nil, fmt.Errorf("authz.ratelimit_service: %w", err)
		}
		for _, de := range des {
			if name := de.Name(); !de.IsDir() && !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				files = append(files, filepath.Join(n, name))
			}
		}
	}
	slices.Sort(files)
	var cs []*authz.LimitConfig
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("authz.ratelimit_service: %w", err)
		}
		c, err := authz.ParseLimitConfig(f, data)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("authz.ratelimit_service: no configuration file in %q", names)
	}
	return cs, nil
}

// listen listens where the file says (or on the listeners given).
func (a *Authz) listen(poll time.Duration) error {
	s := a.e.file.Authz
	if s.GRPC != nil {
		ln, tc, err := a.listener(s.GRPC, a.grpcLn, poll, "authz.grpc", []string{"h2"})
		if err != nil {
			return err
		}
		a.grpcLn, a.grpcTLS = ln, tc != nil
		opts := envoy.ServerOptions()
		if tc != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		}
		a.grpc = grpc.NewServer(opts...)
		envoy.Register(a.grpc, envoy.NewAuthorization(a.svc, a.e.log), rateLimitServer(a.limits, a))
	}
	if s.HTTP != nil {
		ln, tc, err := a.listener(s.HTTP, a.httpLn, poll, "authz.http", []string{"h2", "http/1.1"})
		if err != nil {
			return err
		}
		a.httpLn, a.httpTLS = ln, tc != nil
		a.http = &http.Server{
			Handler:           a.svc.ForwardAuth(authz.ForwardOptions{EnvoyPathPrefix: s.EnvoyPathPrefix}),
			TLSConfig:         tc,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
		}
	} else if a.httpLn != nil {
		a.httpLn.Close()
		a.httpLn = nil
	}
	return nil
}

func rateLimitServer(l *authz.Limits, a *Authz) *envoy.RateLimit {
	if l == nil {
		return nil
	}
	return envoy.NewRateLimit(l, a.e.log)
}

// listener opens l (unless ln is given) and makes its TLS configuration.
func (a *Authz) listener(l *AuthzListener, ln net.Listener, poll time.Duration, name string, protos []string) (net.Listener, *tls.Config, error) {
	var tc *tls.Config
	if l.TLS != nil {
		cert := &mtls.Reloader{CertFile: l.TLS.Cert, KeyFile: l.TLS.Key, PollInterval: poll, Logger: a.e.log.With("certificate", name)}
		if err := cert.Start(a.e.fresh); err != nil {
			return nil, nil, fmt.Errorf("%s.tls: %w", name, err)
		}
		a.e.onClose(func() { cert.Close() })
		tc = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: protos}
		if l.ClientRoots != "" {
			pool, err := loadPool(name+".client_roots", l.ClientRoots)
			if err != nil {
				return nil, nil, err
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	if ln == nil {
		network, addr := "tcp", l.Listen
		if p, ok := strings.CutPrefix(l.Listen, "unix:"); ok {
			network, addr = "unix", p
			os.Remove(p) // a socket left by a process that died
		}
		var err error
		if ln, err = net.Listen(network, addr); err != nil {
			return nil, nil, &StartError{fmt.Errorf("%s: %w", name, err)}
		}
		a.e.onClose(func() { ln.Close() })
		if network == "unix" {
			mode, _ := strconv.ParseUint(l.Mode, 8, 32) // checked by check
			if err := os.Chmod(addr, os.FileMode(mode)); err != nil {
				return nil, nil, &StartError{fmt.Errorf("%s: %w", name, err)}
			}
		}
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && tc == nil && !ap.Addr().IsLoopback() {
		return nil, nil, fmt.Errorf("%s: listen %q is %s: plain text only on loopback; configure tls", name, l.Listen, ln.Addr())
	}
	return ln, tc, nil
}

// GRPCAddr and HTTPAddr are where the listeners are, nil for none.
func (a *Authz) GRPCAddr() net.Addr { return addrOf(a.grpcLn) }

// HTTPAddr is the forward-auth listener's address, nil for none.
func (a *Authz) HTTPAddr() net.Addr { return addrOf(a.httpLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Service is the decision service.
func (a *Authz) Service() *authz.Service { return a.svc }

// Serve serves until Shutdown or Close, or until a listener fails.
func (a *Authz) Serve() error {
	errc := make(chan error, 2)
	n := 0
	if a.grpc != nil {
		n++
		go func() { errc <- a.grpc.Serve(a.grpcLn) }()
	}
	if a.http != nil {
		n++
		go func() {
			if a.httpTLS {
				errc <- a.http.ServeTLS(a.httpLn, "", "")
				return
			}
			errc <- a.http.Serve(a.httpLn)
		}()
	}
	for range n {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
	}
	return nil
}

// Shutdown stops accepting and waits for the calls in flight until ctx
// is done.
func (a *Authz) Shutdown(ctx context.Context) error {
	var err error
	if a.http != nil {
		err = a.http.Shutdown(ctx)
	}
	if a.grpc != nil {
		done := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			a.grpc.Stop()
			err = errors.Join(err, ctx.Err())
		}
	}
	return err
}

// Close stops the servers and closes what NewAuthz opened.
func (a *Authz) Close() error {
	if a.grpc != nil {
		a.grpc.Stop()
	}
	if a.http != nil {
		a.http.Close()
	}
	return a.e.Close()
}

// Reload reads the file again and applies the routes, hosts, CORS policy
// and limits; the listeners, auth, the store and the rate limit
// service's files apply at start only.
func (a *Authz) Reload() error {
	e := a.e
	e.mu.Lock()
	defer e.mu.Unlock()
	next, err := LoadAuthz(e.file.path)
	if err == nil {
		err = startOnly(e.file.path, e.file, next)
	}
	if err != nil {
		return err
	}
	if err := a.svc.Reload(next.Options(e.deps)); err != nil {
		return err
	}
	e.log.Info("configuration reloaded", "file", e.file.path, "changed", configChanges(e.file, next))
	e.file = next
	return nil
}
