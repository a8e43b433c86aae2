package cli

import (
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
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/httpx"
	"github.com/rampartsec/rampart/internal/keygen"
	"github.com/rampartsec/rampart/internal/masterkey"
	"github.com/rampartsec/rampart/internal/secretfile"
	"github.com/rampartsec/rampart/internal/server"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/pin/bundle"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token/authserver"
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
		// Storage quotas (server.ReportQuota): sizes such as 4GiB; 0
		// for no bound.
		MaxStorage    string `yaml:"max_storage"`      // default 4GiB
		PerHostPerDay string `yaml:"per_host_per_day"` // default 64MiB
		MinFree       string `yaml:"min_free"`         // default 1GiB
	} `yaml:"reports"`
	LogFormat string `yaml:"log_format"` // text | json
	AccessLog *bool  `yaml:"access_log"` // default true
	Retention string `yaml:"retention"`  // e.g. 90d, 720h; 0 keeps reports forever
	PIDFile   string `yaml:"pid_file"`
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
	// CAMaxLineage is how long after first issuance the CA renews a
	// certificate's lineage (e.g. 90d).
	CAMaxLineage string `yaml:"ca_max_lineage"`
}

// serveOptions are rampart serve's command line: the configuration file
// and the flags, which override it. load merges them, at start and again
// on SIGHUP.
type serveOptions struct {
	file        string
	flags       serveConfig
	rate, burst int
	accessLog   bool
	changed     func(flag string) bool
}

// origins says where each setting came from, for messages that name the
// flag or the file and field the user wrote.
type origins struct {
	file    string
	inFile  map[string]bool
	changed func(flag string) bool
}

// of names a setting: "--flag" when given as a flag (or not in the file),
// else "FILE: field".
func (o *origins) of(field, flag string) string {
	if o.inFile[field] && (flag == "" || !o.changed(flag)) {
		return o.file + ": " + field
	}
	if flag == "" {
		return field
	}
	return "--" + flag
}

// load reads the file and applies the flags given.
func (o *serveOptions) load() (*serveConfig, *origins, error) {
	cfg, inFile, err := loadServeConfigKeys(o.file)
	if err != nil {
		return nil, nil, fail(ExitUsage, fmt.Errorf("--config %w", err))
	}
	org := &origins{file: o.file, inFile: inFile, changed: o.changed}
	set := func(name string, dst *string, v string) {
		if o.changed(name) || *dst == "" {
			*dst = v
		}
	}
	f := &o.flags
	set("listen", &cfg.Listen, f.Listen)
	set("data", &cfg.DataDir, f.DataDir)
	set("db", &cfg.DB, f.DB)
	set("tls-cert", &cfg.TLSCert, f.TLSCert)
	set("tls-key", &cfg.TLSKey, f.TLSKey)
	set("log-format", &cfg.LogFormat, f.LogFormat)
	set("retention", &cfg.Retention, f.Retention)
	set("issuer", &cfg.Issuer, f.Issuer)
	set("audience", &cfg.Audience, f.Audience)
	set("client-ca", &cfg.ClientCA, f.ClientCA)
	set("ca-max-lineage", &cfg.CAMaxLineage, f.CAMaxLineage)
	set("pid-file", &cfg.PIDFile, f.PIDFile)
	set("report-storage", &cfg.Reports.MaxStorage, f.Reports.MaxStorage)
	if o.changed("secure-cookies") {
		cfg.SecureCookies = f.SecureCookies
	}
	if o.changed("bundle-key") {
		cfg.BundleKeys = f.BundleKeys
	}
	if o.changed("trusted-proxy") {
		cfg.TrustedProxies = f.TrustedProxies
	}
	if o.changed("report-rate") || cfg.Reports.Rate == nil {
		cfg.Reports.Rate = &o.rate
	}
	if o.changed("report-burst") || cfg.Reports.Burst == nil {
		cfg.Reports.Burst = &o.burst
	}
	if o.changed("access-log") || cfg.AccessLog == nil {
		cfg.AccessLog = &o.accessLog
	}
	return cfg, org, nil
}

func newServeCmd(stdio Stdio) *cobra.Command {
	var o serveOptions
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
ca_max_lineage.

The OAuth2 authorization server (client credentials, RFC 6749 §4.4) is at
/oauth2/token, its metadata at /.well-known/oauth-authorization-server.
Its issuer is --issuer, else https:// and the name of --tls-cert that
clients can verify (http:// and the listen address without TLS).
Clients authenticate with an API key as client secret, or with a client
certificate chaining to --client-ca (tls_client_auth). API-key hashes and
token signing keys are protected by the master key: $RAMPART_MASTER_KEY or
DATA/master.key (made on first start). Every instance sharing a database
needs the same one; the database remembers it, and refuses another.`,
		Example: `  rampart serve
  rampart serve --listen :8443 --tls-cert cp.pem --tls-key cp.key --bundle-key bundle.pub
  rampart serve --db 'postgres://rampart@db.internal/rampart' --trusted-proxy 10.0.0.0/8
  rampart serve --config serve.yaml --pid-file /run/rampart/serve.pid
  kill -HUP "$(cat /run/rampart/serve.pid)"   # re-read serve.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			o.changed = c.Flags().Changed
			return runServe(c.Context(), stdio, &o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.file, "config", "", "configuration `FILE` (YAML)")
	f.StringVar(&o.flags.Listen, "listen", "127.0.0.1:8080", "listen on `ADDR`")
	f.StringVar(&o.flags.DataDir, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	f.StringVar(&o.flags.DB, "db", "", "database `DSN`: postgres://... or a SQLite file (default DATA/rampart.db)")
	f.StringVar(&o.flags.TLSCert, "tls-cert", "", "serve https with this certificate chain `FILE` (PEM)")
	f.StringVar(&o.flags.TLSKey, "tls-key", "", "the private key `FILE` of --tls-cert")
	f.StringArrayVar(&o.flags.BundleKeys, "bundle-key", nil, "public key `FILE` bundles must be signed with (repeat for rotation)")
	f.StringArrayVar(&o.flags.TrustedProxies, "trusted-proxy", nil, "`CIDR` of a proxy whose X-Forwarded-For is believed (repeatable)")
	f.IntVar(&o.rate, "report-rate", 10, "reports accepted per second per client address (`N`; 0: no limit)")
	f.IntVar(&o.burst, "report-burst", 100, "burst of --report-rate (`N`)")
	f.StringVar(&o.flags.Reports.MaxStorage, "report-storage", "", "at most this much stored report data (`SIZE`, default 4GiB; 0: no bound)")
	f.StringVar(&o.flags.LogFormat, "log-format", "text", "log `FORMAT`: text or json")
	f.BoolVar(&o.accessLog, "access-log", true, "log a line per request (method, path, status, duration_ms, remote)")
	f.StringVar(&o.flags.Issuer, "issuer", "", "the OAuth2 issuer `URL` (default: https:// and --tls-cert's name, with the listen port)")
	f.StringVar(&o.flags.Audience, "audience", "rampart", "the `aud` of access tokens: the resource servers' identifier")
	f.StringVar(&o.flags.ClientCA, "client-ca", "", "CA certificates (`FILE`, PEM) that client certificates must chain to (tls_client_auth, bound tokens)")
	f.BoolVar(&o.flags.SecureCookies, "secure-cookies", false, "mark the dashboard cookie Secure (https ends in a proxy in front)")
	f.StringVar(&o.flags.Retention, "retention", "90d", "delete reports older than this (`90d`, 720h; 0 keeps them)")
	f.StringVar(&o.flags.CAMaxLineage, "ca-max-lineage", "90d", "renew certificates of the CA in DATA/ca for this long after first issuance (`DURATION`: 90d, 2160h)")
	f.StringVar(&o.flags.PIDFile, "pid-file", "", "write the process ID to `FILE` (for kill -HUP), removed at exit")
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
	data, err := secretfile.Read(file)
	if err != nil {
		return "", "", err
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", "", fmt.Errorf("%s is empty", file)
	}
	return t, file, nil
}

// reloadable is what SIGHUP can change: the server.Settings made from a
// configuration, and the fields they come from.
func reloadable(cfg *serveConfig, org *origins, logger *slog.Logger) (server.Settings, error) {
	var st server.Settings
	limit := ratelimit.PerSecond(*cfg.Reports.Rate, *cfg.Reports.Burst)
	switch {
	case *cfg.Reports.Rate == 0:
		limit = ratelimit.Limit{Rate: -1}
	case *cfg.Reports.Rate < 0:
		return st, usagef("%s %d: want 0 (no limit) or more", org.of("reports.rate", "report-rate"), *cfg.Reports.Rate)
	default:
		if err := limit.Validate(); err != nil {
			return st, usagef("%s, %s: %v", org.of("reports.rate", "report-rate"), org.of("reports.burst", "report-burst"), err)
		}
	}
	st.ReportLimit = limit
	keys, err := loadKeys(cfg.BundleKeys)
	if err != nil {
		return st, fail(ExitUsage, fmt.Errorf("%s: %w", org.of("bundle_keys", "bundle-key"), err))
	}
	st.BundleKeys = keys
	if st.Retention, err = parseRetention(cfg.Retention); err != nil {
		return st, usagef("%s %v", org.of("retention", "retention"), err)
	}
	for _, q := range []struct {
		field, flag, v string
		dst            *int64
	}{
		{"reports.max_storage", "report-storage", cfg.Reports.MaxStorage, &st.ReportQuota.MaxBytes},
		{"reports.per_host_per_day", "", cfg.Reports.PerHostPerDay, &st.ReportQuota.PerHostPerDay},
		{"reports.min_free", "", cfg.Reports.MinFree, &st.ReportQuota.MinFree},
	} {
		n, err := parseQuota(q.v)
		if err != nil {
			return st, usagef("%s %v", org.of(q.field, q.flag), err)
		}
		*q.dst = n
	}
	st.BundleCacheControl = cfg.BundleCacheControl
	if *cfg.AccessLog {
		st.AccessLog = logger
	}
	return st, nil
}

// serveFields are the settings SIGHUP compares: those it applies, and
// those that need a restart.
var serveFields = []struct {
	name   string
	reload bool
	get    func(*serveConfig) any
}{
	{"bundle_keys", true, func(c *serveConfig) any { return c.BundleKeys }},
	{"reports.rate", true, func(c *serveConfig) any { return *c.Reports.Rate }},
	{"reports.burst", true, func(c *serveConfig) any { return *c.Reports.Burst }},
	{"reports.max_storage", true, func(c *serveConfig) any { return c.Reports.MaxStorage }},
	{"reports.per_host_per_day", true, func(c *serveConfig) any { return c.Reports.PerHostPerDay }},
	{"reports.min_free", true, func(c *serveConfig) any { return c.Reports.MinFree }},
	{"retention", true, func(c *serveConfig) any { return c.Retention }},
	{"bundle_cache_control", true, func(c *serveConfig) any { return c.BundleCacheControl }},
	{"access_log", true, func(c *serveConfig) any { return *c.AccessLog }},
	{"listen", false, func(c *serveConfig) any { return c.Listen }},
	{"data_dir", false, func(c *serveConfig) any { return c.DataDir }},
	{"db", false, func(c *serveConfig) any { return c.DB }},
	{"tls_cert", false, func(c *serveConfig) any { return c.TLSCert }},
	{"tls_key", false, func(c *serveConfig) any { return c.TLSKey }},
	{"admin_token_file", false, func(c *serveConfig) any { return c.AdminTokenFile }},
	{"trusted_proxies", false, func(c *serveConfig) any { return c.TrustedProxies }},
	{"log_format", false, func(c *serveConfig) any { return c.LogFormat }},
	{"pid_file", false, func(c *serveConfig) any { return c.PIDFile }},
	{"secure_cookies", false, func(c *serveConfig) any { return c.SecureCookies }},
	{"issuer", false, func(c *serveConfig) any { return c.Issuer }},
	{"audience", false, func(c *serveConfig) any { return c.Audience }},
	{"client_ca", false, func(c *serveConfig) any { return c.ClientCA }},
	{"scopes", false, func(c *serveConfig) any { return c.Scopes }},
	{"scope_implies", false, func(c *serveConfig) any { return c.ScopeImplies }},
	{"key_grace", false, func(c *serveConfig) any { return c.KeyGrace }},
	{"ca_max_lineage", false, func(c *serveConfig) any { return c.CAMaxLineage }},
}

// reloader applies SIGHUP to a running control plane.
type reloader struct {
	opts    *serveOptions
	cur     *serveConfig
	srv     *server.Server
	cert    *mtls.Reloader
	logger  *slog.Logger
	reloads *prometheus.CounterVec // by result: applied, refused
}

// reload re-reads the configuration and applies what it can, logging
// what was done and what needs a restart. A configuration that does not
// load or is invalid changes nothing.
func (r *reloader) reload() {
	log := r.logger
	if r.cert != nil {
		if c := r.cert.Certificate(); c != nil && c.Leaf != nil {
			log.Info("SIGHUP: the TLS certificate files are re-read whenever they change; serving this one",
				"not_after", c.Leaf.NotAfter.UTC(), "serial", fmt.Sprintf("%x", c.Leaf.SerialNumber))
		}
	}
	if r.opts.file == "" {
		r.reloads.WithLabelValues("applied").Inc()
		log.Info("SIGHUP: no --config file, nothing else to reload (flags apply at start only)")
		return
	}
	next, org, err := r.opts.load()
	if err != nil {
		r.reloads.WithLabelValues("refused").Inc()
		log.Error("SIGHUP: configuration not reloaded; the running one stays", "err", errors.Unwrap(err))
		return
	}
	oldKeys := keyIDs(r.srv.Settings().BundleKeys)
	st, err := reloadable(next, org, log)
	if err == nil {
		err = r.srv.Update(st)
	}
	if err != nil {
		r.reloads.WithLabelValues("refused").Inc()
		log.Error("SIGHUP: configuration not reloaded; the running one stays", "config", r.opts.file, "err", err)
		return
	}
	r.reloads.WithLabelValues("applied").Inc()
	var changed, restart, overridden []string
	for _, f := range serveFields {
		if !reflect.DeepEqual(f.get(r.cur), f.get(next)) {
			if f.reload {
				changed = append(changed, f.name)
			} else {
				restart = append(restart, f.name)
			}
		}
	}
	if !slices.Contains(changed, "bundle_keys") && !slices.Equal(oldKeys, keyIDs(st.BundleKeys)) {
		changed = append(changed, "bundle_keys (the files' keys)")
	}
	for field := range org.inFile {
		if strings.HasPrefix(org.of(field, flagOf(field)), "--") && flagOf(field) != "" {
			overridden = append(overridden, "--"+flagOf(field))
		}
	}
	slices.Sort(overridden)
	switch {
	case len(changed) > 0:
		log.Info("SIGHUP: configuration reloaded", "config", r.opts.file, "changed", strings.Join(changed, ", "))
	default:
		log.Info("SIGHUP: configuration reloaded; no setting that applies while serving changed", "config", r.opts.file)
	}
	if len(restart) > 0 {
		// The running value stays, so that the next SIGHUP reports them
		// again until the restart.
		log.Warn("SIGHUP: changed, but applied only at start: restart rampart serve for these", "config", r.opts.file, "fields", strings.Join(restart, ", "))
	}
	if len(overridden) > 0 {
		log.Info("SIGHUP: flags given at start override the file", "flags", strings.Join(slices.Compact(overridden), ", "))
	}
	keep := *next
	for _, f := range serveFields {
		if !f.reload {
			// Compare the next file with what runs, not with itself.
			reflect.ValueOf(&keep).Elem().FieldByName(fieldName(f.name)).Set(reflect.ValueOf(r.cur).Elem().FieldByName(fieldName(f.name)))
		}
	}
	r.cur = &keep
}

// serveFlags maps the config file's fields to their flags.
var serveFlags = map[string]string{
	"listen": "listen", "data_dir": "data", "db": "db", "tls_cert": "tls-cert", "tls_key": "tls-key",
	"log_format": "log-format", "retention": "retention", "issuer": "issuer", "audience": "audience",
	"client_ca": "client-ca", "pid_file": "pid-file", "secure_cookies": "secure-cookies",
	"bundle_keys": "bundle-key", "trusted_proxies": "trusted-proxy", "reports.rate": "report-rate",
	"reports.burst": "report-burst", "reports.max_storage": "report-storage", "access_log": "access-log",
}

func flagOf(field string) string { return serveFlags[field] }

// fieldName is the Go name of a top-level serveConfig field.
func fieldName(yamlName string) string {
	t := reflect.TypeOf(serveConfig{})
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == yamlName {
			return t.Field(i).Name
		}
	}
	panic("serve: no field " + yamlName)
}

func keyIDs(k *bundle.Keys) []string {
	if k == nil {
		return nil
	}
	ids := k.IDs()
	slices.Sort(ids)
	return ids
}

// parseQuota reads a storage bound: "" (the default), "0" (none) or a
// size such as 4GiB or 512MiB.
func parseQuota(s string) (int64, error) {
	switch s {
	case "":
		return 0, nil
	case "0":
		return -1, nil
	}
	n, err := parseByteSize(s)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// parseByteSize reads a size: a whole number with B, KiB, MiB, GiB or
// TiB (KB, MB, GB and TB are powers of 1000).
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n <= 0 || n > (1<<62)/u.mult {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q: want 0 (no bound) or a size such as 4GiB or 512MiB", s)
}

// createServePIDFile writes the process ID to path (0644, written then
// renamed into place) and returns a function that removes it if it still
// holds this process's ID. It refuses a file naming a process that is
// running: another instance.
func createServePIDFile(path string) (func(), error) {
	me := os.Getpid()
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != me && processRunning(pid) {
			return nil, fmt.Errorf("%s names process %d, which is running (another rampart serve?): stop it, or remove the file if that process is not rampart", path, pid)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(tmp, "%d\n", me)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	return func() {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(me) {
			os.Remove(path)
		}
	}, nil
}

// processRunning reports whether a process with that ID exists (signal 0
// tests it without sending anything; EPERM means it exists, under
// another user).
func processRunning(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// publicHost picks the host name clients should use for this server: the
// listen address when the certificate covers it, else the certificate's
// first DNS name that is not a wildcard. ok is false when no name of the
// certificate can be used.
func publicHost(listen string, leaf *x509.Certificate) (host string, ok bool) {
	if leaf == nil {
		return listen, true
	}
	if leaf.VerifyHostname(listen) == nil {
		return listen, true
	}
	for _, n := range leaf.DNSNames {
		if !strings.Contains(n, "*") {
			return n, true
		}
	}
	return listen, false
}

// certNames lists the names a certificate covers, for messages.
func certNames(leaf *x509.Certificate) string {
	var names []string
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func runServe(ctx context.Context, stdio Stdio, o *serveOptions) error {
	// SIGHUP's default action kills the process: take it over before
	// anything else, and act on it once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, org, err := o.load()
	if err != nil {
		return err
	}
	// As loaded, for SIGHUP to compare with: cfg gets defaults filled in.
	loaded := *cfg
	var logger *slog.Logger
	switch cfg.LogFormat {
	case "text", "":
		logger = slog.New(slog.NewTextHandler(stdio.Err, nil))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stdio.Err, nil))
	default:
		return usagef("%s %q: want text or json", org.of("log_format", "log-format"), cfg.LogFormat)
	}
	// The CA's renewal log (mtls.RenewHandler) and other library logs
	// in the same format and place: one logger for the whole stream.
	slog.SetDefault(logger)
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if cfg.PIDFile != "" {
		// Early: a second instance given the same file stops here,
		// before it opens the database.
		remove, err := createServePIDFile(cfg.PIDFile)
		if err != nil {
			return fail(ExitUsage, fmt.Errorf("%s: %w", org.of("pid_file", "pid-file"), err))
		}
		defer remove()
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
	live, err := reloadable(cfg, org, logger)
	if err != nil {
		return err
	}
	grace := 72 * time.Hour
	if cfg.KeyGrace != "" {
		if grace, err = time.ParseDuration(cfg.KeyGrace); err != nil || grace < 0 || grace > apikey.MaxGrace {
			return usagef("%s %q: want a duration up to %v", org.of("key_grace", ""), cfg.KeyGrace, apikey.MaxGrace)
		}
	}
	scopes := cfg.Scopes
	if scopes == nil {
		scopes = defaultScopes
	}
	catalogue := &apikey.Manager{Scopes: scopes}
	if err := catalogue.CheckScopes(scopes); err != nil {
		return usagef("%s: %v", org.of("scopes", ""), err)
	}
	for s, implied := range cfg.ScopeImplies {
		if err := catalogue.CheckScopes(append([]string{s}, implied...)); err != nil {
			return usagef("%s: %v", org.of("scope_implies", ""), err)
		}
	}

	dir, err := dataDir(cfg.DataDir)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("data directory: %w", err))
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
	// The master key before anything else is written: a wrong one is
	// refused (and a master.key just made for it removed) before an
	// admin token is made next to it.
	secrets, err := masterkey.Load(dir, true)
	if err != nil {
		return fail(ExitUsage, err)
	}
	if err := masterkey.Verify(ctx, st, secrets); err != nil {
		if errors.Is(err, masterkey.ErrMismatch) {
			return fail(ExitUsage, err)
		}
		return fail(ExitFailure, err)
	}
	adminTok, tokenSource, err := adminToken(cfg.AdminTokenFile, dir)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("admin token: %w", err))
	}

	var tlsConfig *tls.Config
	var cert *mtls.Reloader
	if cfg.TLSCert != "" {
		// Reloaded when the files change: a certificate from rampart ca
		// issue lives a day.
		cert = &mtls.Reloader{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Logger: logger}
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
	// The URL clients use: a name the TLS certificate covers, which the
	// issuer, the metadata's endpoints and the lines below all use.
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		// Listening on every address: no one of them is the name
		// clients use.
		host = "localhost"
	}
	var leaf *x509.Certificate
	if cert != nil {
		leaf = cert.Certificate().Leaf
	}
	public, covered := publicHost(host, leaf)
	base := scheme + "://" + net.JoinHostPort(public, port)
	if cfg.Issuer == "" {
		cfg.Issuer = base
		switch {
		case !covered:
			logger.Warn("no --issuer, and --tls-cert covers neither the listen address nor a host name to use instead: set --issuer to the URL clients use",
				"issuer", cfg.Issuer, "certificate_names", certNames(leaf))
		case public != host:
			logger.Info("no --issuer: using a name of --tls-cert, which clients can verify; set --issuer to the URL clients use", "issuer", cfg.Issuer)
		case host == "localhost" && leaf == nil:
			logger.Warn("no --issuer: using "+cfg.Issuer+"; set it to the URL clients use", "issuer", cfg.Issuer)
		}
	} else if u, err := url.Parse(cfg.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return usagef("%s %q: want an https:// URL", org.of("issuer", "issuer"), cfg.Issuer)
	} else if leaf != nil && leaf.VerifyHostname(u.Hostname()) != nil {
		logger.Warn("the issuer's host is not a name of --tls-cert: clients that follow the metadata will fail to verify it; set --issuer to a name the certificate covers",
			"issuer", cfg.Issuer, "certificate_names", certNames(leaf))
	}
	verifier := &apikey.Verifier{Store: st.APIKeys(), Pepper: secrets.Pepper, Logger: logger}
	defer verifier.Close()
	keyManager := &apikey.Manager{Store: st.APIKeys(), Pepper: secrets.Pepper, Scopes: scopes}
	oauth := &authserver.Server{
		Issuer: cfg.Issuer, Audience: cfg.Audience,
		Keys: st.SigningKeys(), Revocations: st.RevokedTokens(),
		Clients: st.APIKeys(), APIKeys: verifier, KeyEncryptionKey: secrets.SigningKeyKEK,
		Scopes: scopes, ScopeImplies: cfg.ScopeImplies, TrustedProxies: proxies, Logger: logger,
		// tls_client_auth and bound tokens only with --client-ca.
		MutualTLS: cfg.ClientCA != "",
	}
	if err := oauth.Start(ctx); err != nil {
		return fail(ExitFailure, err)
	}
	maxLineage, err := parseCAMaxLineage(cfg.CAMaxLineage)
	if err != nil {
		return usagef("%v", err)
	}
	renew, ca, err := caRenewal(dir, secrets, mtls.RenewPolicy{MaxLineage: maxLineage})
	if err != nil {
		return fail(ExitUsage, err)
	}
	if ca != nil {
		if w := caExpiryNote(ca, time.Now()); w != "" {
			logger.Warn(w)
		}
		if w := caRootKeyWarning(dir); w != "" {
			logger.Warn(w)
		}
	}
	if renew != nil {
		if tlsConfig == nil {
			logger.Warn("the CA in " + filepath.Join(dir, caDirName) + " renews certificates only over TLS: give rampart serve --tls-cert and --tls-key")
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
			logger.Info("certificate renewal at "+base+caRenewPath, "ca", filepath.Join(dir, caDirName))
		}
	}
	var caExpiry time.Time
	if renew != nil {
		caExpiry = ca.Issuing.NotAfter
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_config_reloads_total",
		Help: "SIGHUP reloads of rampart serve's configuration, by result: applied or refused (the running configuration stays).",
	}, []string{"result"})
	reg.MustRegister(reloads)
	reloads.WithLabelValues("applied")
	reloads.WithLabelValues("refused")
	srv, err := server.New(server.Config{
		Registry:           reg,
		CertRenewal:        renew,
		CAExpiry:           caExpiry,
		OAuth:              oauth,
		APIKeyRotation:     oauth.LimitFailedAuth(keyManager.RotateHandler(verifier, grace)),
		Store:              st,
		AdminToken:         adminTok,
		AdminTokenHint:     adminTokenHint(tokenSource, cfg.AdminTokenFile),
		BundleKeys:         live.BundleKeys,
		ReportLimit:        live.ReportLimit,
		ReportQuota:        live.ReportQuota,
		TrustedProxies:     proxies,
		BundleCacheControl: live.BundleCacheControl,
		SecureCookies:      tlsConfig != nil || cfg.SecureCookies,
		Retention:          live.Retention,
		Logger:             logger,
		AccessLog:          live.AccessLog,
	})
	if err != nil {
		return fail(ExitUsage, err)
	}
	hs := &http.Server{
		Handler:           httpx.Framing(srv), // ambiguous request framing: answered and closed (RFC 9112 §6.1)
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if a, err := netip.ParseAddrPort(ln.Addr().String()); tlsConfig == nil && err == nil && !a.Addr().IsLoopback() {
		logger.Warn("serving plain http on " + ln.Addr().String() + "; clients fetch pins from here, so give it --tls-cert and --tls-key or put it behind TLS")
	}
	logger.Info("control plane listening on "+scheme+"://"+ln.Addr().String(), "database", backend.Describe(dsn), "pid", os.Getpid())
	logger.Info("dashboard at "+base+"/", "admin_token", tokenSource)
	logger.Info("OAuth2 issuer "+cfg.Issuer, "token_endpoint", strings.TrimSuffix(cfg.Issuer, "/")+"/oauth2/token", "master_key", secrets.Source)
	logger.Info("report storage", "quota", srv.Settings().ReportQuota.String(), "retention", cfg.Retention)
	if live.BundleKeys == nil {
		logger.Warn("no --bundle-key: publishing bundles is refused")
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
	rl := &reloader{opts: o, cur: &loaded, srv: srv, cert: cert, logger: logger, reloads: reloads}
serve:
	for {
		select {
		case err := <-errc:
			return fail(ExitFailure, err)
		case <-hup:
			rl.reload()
		case <-ctx.Done():
			break serve
		}
	}
	logger.Info("shutting down")
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

// adminTokenHint says on the login page where the admin token is, without
// a path of this machine (the page is public): the admin_token_file
// setting, the environment, or the data directory.
func adminTokenHint(source, file string) string {
	switch {
	case source == "$RAMPART_ADMIN_TOKEN":
		return "in $RAMPART_ADMIN_TOKEN of the rampart serve process"
	case file != "":
		return "in the file that admin_token_file names in rampart serve's configuration"
	}
	return "in the file admin-token in rampart serve's data directory ($RAMPART_DATA, else ~/.local/share/rampart)"
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
	return 0, fmt.Errorf("%q: want 0 (keep forever), days (90d) or a duration of at least 1h (720h)", s)
}
