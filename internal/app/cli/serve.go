package cli

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/controlplane"
)

// serveLong is the help of rampart serve.
const serveLong = `Run the control plane.

Endpoints:
  POST /v1/reports          pin failure reports (RFC 7469 and TrustKit JSON)
  GET  /v1/bundles/{name}   the latest signed pin bundle (ETag, Cache-Control)
  /v1/admin/...             publish bundles, list and summarize reports (admin token)
  GET  /                    the dashboard (sign in with the admin token)
  GET  /ct                  the Certificate Transparency view (with --ct-logs)
  GET  /metrics, /healthz   Prometheus metrics, health

With no flags it keeps everything in SQLite under the data directory
($RAMPART_DATA, else ~/.local/share/rampart) and needs no other service.
--db postgres://... shares one PostgreSQL database between instances.

The admin token is $RAMPART_ADMIN_TOKEN, else the file admin_token_file
names, else DATA/admin-token, made with 256 random bits on first start.

Bundles are accepted only if signed by a key given with --bundle-key (the
public half; the control plane never holds a signing key).

Reports are bounded in storage: at most --report-storage of them (4GiB),
64MiB a day of distinct reports per host name, and none while the disk
holding a SQLite database has less than 1GiB free (reports: max_storage,
per_host_per_day, min_free in the config file; 0 for no bound).

Signals: SIGTERM or Ctrl-C stops it gracefully (requests in flight finish
and every acknowledged report is committed). SIGHUP re-reads the --config
file and applies what can change while serving: bundle_keys, reports
(rate, burst, max_storage, per_host_per_day, min_free), retention,
bundle_cache_control, access_log; it logs what changed and which changed
settings need a restart. The TLS certificate files are re-read whenever
they change, SIGHUP or not. Send it to this process only: --pid-file FILE
writes its PID (kill -HUP "$(cat FILE)"), or under systemd
ExecReload=kill -HUP $MAINPID.

The config file (YAML, unknown fields are errors) takes the flags' names with
underscores: listen, data_dir, db, tls_cert, tls_key, admin_token_file,
bundle_keys, trusted_proxies, bundle_cache_control, reports: {rate, burst,
max_storage, per_host_per_day, min_free}, log_format, access_log,
retention, pid_file, secure_cookies, issuer, audience, client_ca, scopes,
scope_implies (e.g. {payment.write: [payment.read]}), key_grace,
ca_max_lineage, and ct: {logs, policy, watch, expect, poll, start,
webhook: {url, secret_file}}.

--ct-logs (ct.logs) follows the Certificate Transparency logs of a v3 log
list and judges every certificate logged for the pinned domains by its
key: by default the pins of the bundles this control plane serves, or
ct.policy. It alerts ct.webhook (HMAC-signed) on a rogue certificate, an
unannounced rollover or an unreadable one, and shows them at /ct
(docs/ct.md).

The OAuth2 authorization server (client credentials, RFC 6749 §4.4) is at
/oauth2/token, its metadata at /.well-known/oauth-authorization-server.
Its issuer is --issuer, else https:// and the name of --tls-cert that
clients can verify (http:// and the listen address without TLS).
Clients authenticate with an API key as client secret, or with a client
certificate chaining to --client-ca (tls_client_auth). API-key hashes and
token signing keys are protected by the master key: $RAMPART_MASTER_KEY or
DATA/master.key (made on first start). Every instance sharing a database
needs the same one; the database remembers it, and refuses another.`

func newServeCmd(stdio Stdio) *cobra.Command {
	var o controlplane.Source
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--listen ADDR] [--db DSN]",
		Short: "Run the control plane: failure reports, pin bundles, dashboard",
		Long:  serveLong,
		Example: `  rampart serve
  rampart serve --listen :8443 --tls-cert cp.pem --tls-key cp.key --bundle-key bundle.pub
  rampart serve --db 'postgres://rampart@db.internal/rampart' --trusted-proxy 10.0.0.0/8
  rampart serve --config serve.yaml --pid-file /run/rampart/serve.pid
  kill -HUP "$(cat /run/rampart/serve.pid)"   # re-read serve.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			o.Changed = c.Flags().Changed
			return runServe(c.Context(), stdio, &o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Path, "config", "", "configuration `FILE` (YAML)")
	f.StringVar(&o.Flags.Listen, "listen", "127.0.0.1:8080", "listen on `ADDR`")
	f.StringVar(&o.Flags.DataDir, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	f.StringVar(&o.Flags.DB, "db", "", "database `DSN`: postgres://... or a SQLite file (default DATA/rampart.db)")
	f.StringVar(&o.Flags.TLSCert, "tls-cert", "", "serve https with this certificate chain `FILE` (PEM)")
	f.StringVar(&o.Flags.TLSKey, "tls-key", "", "the private key `FILE` of --tls-cert")
	f.StringArrayVar(&o.Flags.BundleKeys, "bundle-key", nil, "public key `FILE` bundles must be signed with (repeat for rotation)")
	f.StringArrayVar(&o.Flags.TrustedProxies, "trusted-proxy", nil, "`CIDR` of a proxy whose X-Forwarded-For is believed (repeatable)")
	f.IntVar(&o.Rate, "report-rate", 10, "reports accepted per second per client address (`N`; 0: no limit)")
	f.IntVar(&o.Burst, "report-burst", 100, "burst of --report-rate (`N`)")
	f.StringVar(&o.Flags.Reports.MaxStorage, "report-storage", "", "at most this much stored report data (`SIZE`, default 4GiB; 0: no bound)")
	f.StringVar(&o.Flags.LogFormat, "log-format", "text", "log `FORMAT`: text or json")
	f.BoolVar(&o.AccessLog, "access-log", true, "log a line per request (method, path, status, duration_ms, remote)")
	f.StringVar(&o.Flags.Issuer, "issuer", "", "the OAuth2 issuer `URL` (default: https:// and --tls-cert's name, with the listen port)")
	f.StringVar(&o.Flags.Audience, "audience", "rampart", "the `aud` of access tokens: the resource servers' identifier")
	f.StringVar(&o.Flags.ClientCA, "client-ca", "", "CA certificates (`FILE`, PEM) that client certificates must chain to (tls_client_auth, bound tokens)")
	f.BoolVar(&o.Flags.SecureCookies, "secure-cookies", false, "mark the dashboard cookie Secure (https ends in a proxy in front)")
	f.StringVar(&o.Flags.Retention, "retention", "90d", "delete reports older than this (`90d`, 720h; 0 keeps them)")
	f.StringVar(&o.Flags.CAMaxLineage, "ca-max-lineage", "90d", "renew certificates of the CA in DATA/ca for this long after first issuance (`DURATION`: 90d, 2160h)")
	f.StringVar(&o.Flags.PIDFile, "pid-file", "", "write the process ID to `FILE` (for kill -HUP), removed at exit")
	f.StringVar(&o.Flags.CT.Logs, "ct-logs", "", "watch the Certificate Transparency logs of this log list (v3 JSON, `FILE or URL`) for certificates of the pinned domains")
	return c
}

// dataDir returns the data directory, created 0700
// (controlplane.DataDir).
func dataDir(dir string) (string, error) { return controlplane.DataDir(dir) }

// dataDirPath returns the data directory's path
// (controlplane.DataDirPath).
func dataDirPath(dir string) (string, error) { return controlplane.DataDirPath(dir) }

// runServe is rampart serve: the control plane of o, served until a
// signal, reloaded on SIGHUP.
func runServe(ctx context.Context, stdio Stdio, o *controlplane.Source) error {
	// SIGHUP's default action kills the process: take it over before
	// anything else, and act on it once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cp, err := controlplane.New(ctx, controlplane.Options{Source: o, Stderr: stdio.Err, CADir: controlplane.CADirName})
	if err != nil {
		var se *controlplane.StartError
		if errors.As(err, &se) {
			return fail(ExitFailure, err)
		}
		return fail(ExitUsage, err)
	}
	defer cp.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- cp.Serve() }()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fail(ExitFailure, err)
		case <-hup:
			cp.Reload()
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cp.Shutdown(sctx); err != nil {
				return fail(ExitFailure, err)
			}
			return nil
		}
	}
}
