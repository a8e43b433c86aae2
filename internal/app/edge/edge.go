package edge

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
	"strings"
	"sync"
	"time"

	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/mtls"
)

// Options are what New builds an Edge from: the configuration file and
// the process around it. File is required; every other zero value is a
// default.
type Options struct {
	// File is the configuration (Load). Reload reads its file again.
	// Required.
	File *File
	// Logger receives the logs, and the access log with access_log:
	// stderr. If nil, NewLogger(LogFormat, Stderr).
	Logger *slog.Logger
	// LogFormat is the format of the access log written to stdout or to
	// a file (access_log: stdout, or FILE): "json" (if empty) or "text".
	// Give Logger's.
	LogFormat string
	// Stdout receives the access log with access_log: stdout; Stderr the
	// logs when Logger is nil. If nil, os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Warn receives, at start, what is allowed but probably not meant:
	// rules that never apply, a Redis that does not answer, tokens whose
	// revocations cannot be checked. If nil, they are logged at
	// slog.LevelWarn.
	Warn func(msg string)
	// DataDir returns the control plane's data directory for an
	// auth.api_keys section without data_dir (rampart's default
	// directory). If nil, such a section is refused.
	DataDir func() (string, error)
	// Listener and AdminListener, if set, are where the gateway and its
	// admin handler serve, instead of the file's listen and admin_listen
	// (which Reload still refuses to change). The Edge closes them.
	Listener, AdminListener net.Listener
	// PollInterval is how often the certificate files are checked for
	// changes. If 0, mtls.DefaultPollInterval.
	PollInterval time.Duration
	// PIDFile, if set, receives the process ID once the edge listens
	// (rampart gateway --pid-file); Close removes it if it still holds
	// it.
	PIDFile string
}

// StartError is an error of New that is not the configuration's: a
// listener that cannot listen, a database that does not open. Other
// errors of New are the configuration's (a setting, or a file it names).
// Its message is Err's.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Edge is rampart gateway: the gateway, its listeners and what it was
// built with. Build it with New, then Serve; Reload applies the file
// anew; Shutdown, then Close, stop it.
type Edge struct {
	log   *slog.Logger
	warn  func(string)
	fresh context.Context // lives until Close: the certificate watchers'
	stop  context.CancelFunc

	mu   sync.Mutex // serializes Reload and Close
	file *File      // in use
	deps gateway.Options
	ids  identities
	gw   *gateway.Gateway

	logFile     *reopenFile
	ln, adminLn net.Listener
	srv, admin  *http.Server
	tls         bool
	pidFile     string
	closers     []func() // in the order of opening
	closed      bool
}

// New builds the edge of o.File: it opens the API-key database, builds
// the token validator and the Redis store the file names, loads the
// service certificate and the TLS certificate (watching or renewing them
// until Close), builds the gateway and listens. It serves nothing until
// Serve. Errors that are not the configuration's are [*StartError]. ctx
// bounds the start (the database, Redis), not the Edge.
func New(ctx context.Context, o Options) (_ *Edge, err error) {
	if o.File == nil {
		return nil, errors.New("edge: Options.File is nil")
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.LogFormat != "" && o.LogFormat != "json" && o.LogFormat != "text" {
		return nil, fmt.Errorf("edge: log format %q: want text or json", o.LogFormat)
	}
	e := &Edge{log: o.Logger, warn: o.Warn, file: o.File, ln: o.Listener, adminLn: o.AdminListener}
	if e.log == nil {
		e.log = NewLogger(o.LogFormat, o.Stderr)
	}
	if e.warn == nil {
		e.warn = func(msg string) { e.log.Warn(msg) }
	}
	e.fresh, e.stop = context.WithCancel(context.Background())
	e.ids = identities{log: e.log, pollInterval: o.PollInterval}
	for _, ln := range []net.Listener{o.Listener, o.AdminListener} {
		if ln != nil {
			e.onClose(func() { ln.Close() })
		}
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	for _, w := range e.file.Warnings() {
		e.warn(w)
	}
	steps := []func() error{
		func() error { return e.accessLog(o) },
		func() error { return e.auth(ctx, o.DataDir) },
		func() error { return e.limitStore(ctx) },
		e.gateway,
		func() error { return e.listen(o.PollInterval) },
		func() error { return e.writePID(o.PIDFile) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// NewLogger returns a logger writing to w in format: "json" (or "") or
// "text".
func NewLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// onClose adds f to what Close undoes.
func (e *Edge) onClose(f func()) { e.closers = append(e.closers, f) }

// accessLog makes the access logger the file asks for.
func (e *Edge) accessLog(o Options) error {
	e.deps.Logger, e.deps.AccessLog = e.log, e.log
	switch e.file.AccessLog {
	case "stdout":
		e.deps.AccessLog = NewLogger(o.LogFormat, o.Stdout)
	case "off":
		e.deps.AccessLog = slog.New(slog.DiscardHandler)
	case "stderr":
	default:
		f := &reopenFile{path: e.file.AccessLog}
		if err := f.reopen(); err != nil {
			return fmt.Errorf("access_log: %w", err)
		}
		e.logFile = f
		e.onClose(func() { f.Close() })
		e.deps.AccessLog = NewLogger(o.LogFormat, f)
	}
	return nil
}

// gateway loads the service certificate and builds the gateway.
func (e *Edge) gateway() error {
	identity, roots, done, err := e.ids.load(e.file)
	if err != nil {
		return err
	}
	deps := e.deps
	deps.Identity, deps.Roots = identity, roots
	e.gw, err = gateway.New(e.file.Options(deps))
	done(err == nil)
	if err != nil {
		return err
	}
	e.onClose(e.ids.close)
	e.onClose(func() { e.gw.Close() })
	return nil
}

// listen starts the TLS certificate's watcher and listens.
func (e *Edge) listen(poll time.Duration) error {
	f := e.file
	var tlsConfig *tls.Config
	if f.TLS != nil {
		// Its log lines say which certificate: this one is the clients'.
		cert := &mtls.Reloader{CertFile: f.TLS.Cert, KeyFile: f.TLS.Key, PollInterval: poll, Logger: e.log.With("certificate", "tls")}
		if err := cert.Start(e.fresh); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		e.onClose(func() { cert.Close() }) // waits for the watcher to end
		e.tls = true
		tlsConfig = &tls.Config{
			GetCertificate: cert.GetCertificate,
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	if e.ln == nil {
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			return &StartError{err}
		}
		e.ln = ln
		e.onClose(func() { ln.Close() })
	}
	ln := e.ln
	if a, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !e.tls && !a.Addr().IsLoopback() {
		// Parse refuses a listen address that is not loopback; this is a
		// name that resolved to another.
		return fmt.Errorf("listen %q is %s: plain http only on loopback, or credentials cross the network in the clear: configure tls", f.Listen, ln.Addr())
	}
	e.srv = &http.Server{
		Handler:           e.gw.Handler(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelWarn),
	}
	if e.adminLn == nil && f.AdminListen != "" {
		aln, err := net.Listen("tcp", f.AdminListen)
		if err != nil {
			return &StartError{fmt.Errorf("admin_listen: %w", err)}
		}
		e.adminLn = aln
		e.onClose(func() { aln.Close() })
	}
	if e.adminLn != nil {
		e.admin = &http.Server{Handler: e.gw.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// Addr is where the gateway listens.
func (e *Edge) Addr() net.Addr { return e.ln.Addr() }

// AdminAddr is where the admin handler (/metrics, /healthz) listens, nil
// without one.
func (e *Edge) AdminAddr() net.Addr {
	if e.adminLn == nil {
		return nil
	}
	return e.adminLn.Addr()
}

// URL is the gateway's base URL: https://ADDR with tls, else http://ADDR.
func (e *Edge) URL() string {
	if e.tls {
		return "https://" + e.ln.Addr().String()
	}
	return "http://" + e.ln.Addr().String()
}

// Identity is the gateway's service certificate in use, nil while no
// route is https.
func (e *Edge) Identity() *mtls.Reloader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ids.current
}

// Routes are the routes of the file in use.
func (e *Edge) Routes() []Route {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.file.Routes
}

// Serve serves the gateway and the admin handler until Shutdown or Close
// (then it returns nil), or until one of them fails.
func (e *Edge) Serve() error {
	errc := make(chan error, 2)
	go func() {
		if e.tls {
			errc <- e.srv.ServeTLS(e.ln, "", "")
		} else {
			errc <- e.srv.Serve(e.ln)
		}
	}()
	n := 1
	if e.admin != nil {
		n++
		go func() { errc <- e.admin.Serve(e.adminLn) }()
	}
	for range n {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// Shutdown stops accepting connections and waits for the requests in
// flight, until ctx is done: then it closes the connections still open
// and returns ctx's error.
func (e *Edge) Shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range []*http.Server{e.srv, e.admin} {
		if s == nil {
			continue
		}
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes the servers (without waiting, see Shutdown) and everything
// New opened, and removes the PID file. It may be called twice.
func (e *Edge) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	for _, s := range []*http.Server{e.srv, e.admin} {
		if s != nil {
			s.Close()
		}
	}
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.stop()
	return nil
}

// Reload reads the file again and applies it: new requests get the new
// configuration, requests in flight finish with the old. It first reopens
// the access log file (log rotation renames it, then sends SIGHUP). A
// file that does not load, changes what applies only at start
// (startOnly) or does not build is an error, and the configuration in use
// stays. What changed is logged, and the new file's warnings.
func (e *Edge) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logFile != nil {
		if err := e.logFile.reopen(); err != nil {
			e.log.Error("access_log: reopening failed; still writing to the old file", "err", err)
		}
	}
	path := e.file.path
	if path == "" {
		return errors.New("edge: the configuration was not read from a file: nothing to reload")
	}
	next, err := Load(path)
	if err == nil {
		err = startOnly(path, e.file, next)
	}
	if err != nil {
		return err
	}
	identity, roots, done, err := e.ids.load(next)
	if err != nil {
		return err
	}
	deps := e.deps
	deps.Identity, deps.Roots = identity, roots
	err = e.gw.Reload(next.Options(deps))
	done(err == nil)
	if err != nil {
		return err
	}
	e.log.Info("configuration reloaded", "file", path, "changed", configChanges(e.file, next))
	for _, w := range next.Warnings() {
		e.log.Warn(w)
	}
	e.file = next
	return nil
}

// reopenFile is the access log file, reopened on Reload so that log
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

// String is a route's start-up line: where it goes, whom it expects
// there, and what it lets through.
func (r Route) String() string {
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
