package cli

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/edge"
)

// authzLong is the help of rampart authz.
const authzLong = `Serve Rampart's decisions to the edge engines in front of the services:
Envoy and Istio (external authorization and the global rate limit
service, gRPC), nginx (auth_request), Caddy (forward_auth), Traefik
(ForwardAuth) and Envoy's HTTP ext_authz. Each request is decided as
rampart gateway decides it (the same routes, API keys, tokens, scopes,
limits and refusals), and the engine applies the answer: the caller's
identity headers to the service, or the gateway's refusal to the client.

The configuration is rampart gateway's file (docs/gateway.md), whose
routes need no upstream, with an authz section (docs/edge.md):

  authz:
    grpc: {listen: 127.0.0.1:9191}         # Envoy: ext_authz, rate limit service
    http: {listen: 127.0.0.1:9192}         # nginx, Caddy, Traefik, Envoy HTTP
    ratelimit_service:
      configs: [ratelimit/config]          # envoyproxy/ratelimit's files

--print-config ENGINE writes the engine's configuration for the file's
routes (nginx, caddy, envoy or istio) and exits. SIGHUP reloads the
routes, hosts, CORS policy and limits; SIGTERM or Ctrl-C stops.`

func newAuthzCmd(stdio Stdio) *cobra.Command {
	var f authzFlags
	c := &cobra.Command{
		Use:   "authz --config FILE",
		Short: "Serve Rampart's decisions to Envoy, Istio, nginx, Caddy and Traefik",
		Long:  authzLong,
		Example: `  rampart authz --config authz.yaml
  rampart authz --config authz.yaml --print-config nginx --listen 0.0.0.0:443 \
      --cert /etc/ssl/api.pem --key /etc/ssl/api.key --upstream http://127.0.0.1:9000 > rampart.conf`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if f.config == "" {
				return usagef("authz needs --config FILE")
			}
			if f.print != "" {
				return printEngineConfig(stdio, f)
			}
			if f.engine != (edge.EngineOptions{}) {
				return usagef("--listen, --cert, --key, --upstream and --domain go with --print-config")
			}
			return runAuthz(c.Context(), stdio, f)
		},
	}
	c.Flags().StringVar(&f.config, "config", "", "configuration `FILE` (YAML)")
	c.Flags().StringVar(&f.logFormat, "log-format", "json", "log `FORMAT`: text or json")
	c.Flags().StringVar(&f.pidFile, "pid-file", "", "write the process ID to `FILE` while serving (for kill -HUP)")
	c.Flags().StringVar(&f.print, "print-config", "", "write the configuration of `ENGINE` (nginx, caddy, envoy, istio) and exit")
	c.Flags().StringVar(&f.engine.Listen, "listen", "", "with --print-config: where the engine listens, `HOST:PORT` (default 127.0.0.1:8080)")
	c.Flags().StringVar(&f.engine.Cert, "cert", "", "with --print-config: the engine's TLS certificate `FILE`")
	c.Flags().StringVar(&f.engine.Key, "key", "", "with --print-config: the engine's TLS key `FILE`")
	c.Flags().StringVar(&f.engine.Upstream, "upstream", "", "with --print-config: the service, `URL` (default http://127.0.0.1:9000)")
	c.Flags().StringVar(&f.engine.Domain, "domain", "", "with --print-config envoy|istio: the rate limit `DOMAIN` (default edge)")
	return c
}

type authzFlags struct {
	config, logFormat, pidFile, print string
	engine                            edge.EngineOptions
}

func printEngineConfig(stdio Stdio, f authzFlags) error {
	if !slices.Contains(edge.Engines, f.print) {
		return usagef("--print-config %q: want one of %s", f.print, strings.Join(edge.Engines, ", "))
	}
	file, err := edge.LoadAuthz(f.config)
	if err != nil {
		return fail(ExitUsage, err)
	}
	out, err := file.EngineConfig(f.print, f.engine)
	if err != nil {
		return fail(ExitUsage, err)
	}
	_, err = fmt.Fprint(stdio.Out, out)
	return err
}

// runAuthz builds rampart authz of the file and serves it until a
// signal stops it.
func runAuthz(ctx context.Context, stdio Stdio, f authzFlags) error {
	if f.logFormat != "text" && f.logFormat != "json" {
		return usagef("--log-format %q: want text or json", f.logFormat)
	}
	stop, hup, release := catchSignals()
	defer release()

	file, err := edge.LoadAuthz(f.config)
	if err != nil {
		return fail(ExitUsage, err)
	}
	logger := edge.NewLogger(f.logFormat, stdio.Err)
	slog.SetDefault(logger)
	a, err := edge.NewAuthz(ctx, edge.AuthzOptions{Options: edge.Options{
		File: file, Logger: logger, LogFormat: f.logFormat, Stdout: stdio.Out, Stderr: stdio.Err,
		Warn:    func(msg string) { fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", msg) },
		DataDir: func() (string, error) { return dataDir("") },
		PIDFile: f.pidFile,
	}})
	if err != nil {
		return startFailure(err)
	}
	defer a.Close()
	for _, r := range a.Service().Routes() {
		fmt.Fprintf(stdio.Err, "rampart: route %s\n", r)
	}
	if ad := a.GRPCAddr(); ad != nil {
		fmt.Fprintf(stdio.Err, "rampart: authz gRPC (Envoy ext_authz%s) on %s\n", map[bool]string{true: ", rate limit service", false: ""}[file.Authz.RateLimitService != nil], ad)
	}
	if ad := a.HTTPAddr(); ad != nil {
		fmt.Fprintf(stdio.Err, "rampart: authz forward auth on %s (/nginx, /caddy, /traefik, /envoy/)\n", ad)
	}
	return serveUntilStopped(ctx, stdio, server{a.Serve, a.Reload, a.Shutdown}, logger, stop, hup, 10*time.Second)
}
