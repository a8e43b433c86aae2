package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/edge"
)

// gatewayLong is the help of rampart gateway.
const gatewayLong = `Run the edge gateway: a reverse proxy that terminates TLS (HTTP/2 and
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
(auth.tokens). Metrics are at admin_listen/metrics.`

func newGatewayCmd(stdio Stdio) *cobra.Command {
	var f gatewayFlags
	c := &cobra.Command{
		Use:   "gateway --config FILE",
		Short: "Run the edge gateway in front of payment services",
		Long:  gatewayLong,
		Example: `  rampart gateway --config gateway.yaml --pid-file /run/rampart/gateway.pid
  kill -HUP "$(cat /run/rampart/gateway.pid)"    # reload gateway.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if f.config == "" {
				return usagef("gateway needs --config FILE")
			}
			return runGateway(c.Context(), stdio, f)
		},
	}
	c.Flags().StringVar(&f.config, "config", "", "configuration `FILE` (YAML)")
	c.Flags().StringVar(&f.logFormat, "log-format", "json", "log `FORMAT`: text or json")
	c.Flags().StringVar(&f.pidFile, "pid-file", "", "write the process ID to `FILE` while serving (for kill -HUP)")
	return c
}

// gatewayFlags are rampart gateway's flags.
type gatewayFlags struct {
	config, logFormat, pidFile string
}

// runGateway builds the edge of the configuration file (internal/app/edge)
// and serves it until a signal stops it.
func runGateway(ctx context.Context, stdio Stdio, f gatewayFlags) error {
	if f.logFormat != "text" && f.logFormat != "json" {
		return usagef("--log-format %q: want text or json", f.logFormat)
	}
	// Signals are caught before anything listens: a supervisor that sees
	// the port open or the banner and sends SIGHUP (a reload right after
	// a deploy) must not kill the gateway with the default action. They
	// wait in the channels until the gateway serves.
	stop, hup, release := catchSignals()
	defer release()

	file, err := edge.Load(f.config)
	if err != nil {
		return fail(ExitUsage, err)
	}
	logger := edge.NewLogger(f.logFormat, stdio.Err)
	// The edge gives every library it builds this logger; the default
	// logger is set too, here in the process's wiring, for any line a
	// dependency writes there (go-redis goes through edge's redisLogger).
	slog.SetDefault(logger)
	e, err := edge.New(ctx, edge.Options{
		File: file, Logger: logger, LogFormat: f.logFormat, Stdout: stdio.Out, Stderr: stdio.Err,
		Warn:    func(msg string) { fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", msg) },
		DataDir: func() (string, error) { return dataDir("") },
		PIDFile: f.pidFile,
	})
	if err != nil {
		return startFailure(err)
	}
	defer e.Close()
	if a := e.AdminAddr(); a != nil {
		fmt.Fprintf(stdio.Err, "rampart: gateway metrics at http://%s/metrics\n", a)
	}
	for _, r := range e.Routes() {
		fmt.Fprintf(stdio.Err, "rampart: route %s\n", r)
	}
	fmt.Fprintf(stdio.Err, "rampart: gateway listening on %s\n", e.URL())
	return serveGateway(ctx, stdio, e, logger, stop, hup)
}

// catchSignals catches SIGINT and SIGTERM (stop) and SIGHUP (hup) until
// release.
func catchSignals() (stop, hup chan os.Signal, release func()) {
	stop = make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return stop, hup, func() { signal.Stop(stop); signal.Stop(hup) }
}

// startFailure is the exit of an error of edge.New or edge.NewAuthz: 1
// when it is not the configuration's (a listener, a database), else 2.
func startFailure(err error) error {
	if se := (*edge.StartError)(nil); errors.As(err, &se) {
		return fail(ExitFailure, err)
	}
	return fail(ExitUsage, err)
}

// serveGateway serves e until ctx is done or stop receives a signal,
// reloading it on hup, then shuts it down; a second stop signal does not
// wait for the requests in flight.
func serveGateway(ctx context.Context, stdio Stdio, e *edge.Edge, logger *slog.Logger, stop, hup <-chan os.Signal) error {
	return serveUntilStopped(ctx, stdio, server{e.Serve, e.Reload, e.Shutdown}, logger, stop, hup, 30*time.Second)
}

// server is what serveUntilStopped runs: rampart gateway's edge or
// rampart authz.
type server struct {
	serve    func() error
	reload   func() error
	shutdown func(context.Context) error
}

// serveUntilStopped serves s until ctx is done or stop receives a
// signal, reloading it on hup, then shuts it down within grace; a second
// stop signal does not wait for the requests in flight.
func serveUntilStopped(ctx context.Context, stdio Stdio, s server, logger *slog.Logger, stop, hup <-chan os.Signal, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.serve() }()
	for running := true; running; {
		select {
		case err := <-errc:
			return fail(ExitFailure, err)
		case <-ctx.Done():
			running = false
		case <-stop:
			running = false
		case <-hup:
			if err := s.reload(); err != nil {
				logger.Error("reload failed; keeping the configuration in use", "err", err)
			}
		}
	}
	fmt.Fprintf(stdio.Err, "rampart: shutting down\n")
	sctx, scancel := context.WithTimeout(context.Background(), grace)
	defer scancel()
	go func() {
		select {
		case <-stop: // a second signal: do not wait for requests in flight
			scancel()
		case <-sctx.Done():
		}
	}()
	if err := s.shutdown(sctx); err != nil {
		logger.Warn("shutdown: closing connections still open", "err", err)
	}
	return nil
}
