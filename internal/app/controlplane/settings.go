package controlplane

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/server"
	"github.com/rampartsec/rampart/pin/bundle"
	"github.com/rampartsec/rampart/ratelimit"
)

// reloadable is what SIGHUP can change: the server.Settings made from a
// configuration, and the fields they come from.
func reloadable(cfg *File, org *Origins, logger *slog.Logger) (server.Settings, error) {
	var st server.Settings
	limit := ratelimit.PerSecond(*cfg.Reports.Rate, *cfg.Reports.Burst)
	switch {
	case *cfg.Reports.Rate == 0:
		limit = ratelimit.Limit{Rate: -1}
	case *cfg.Reports.Rate < 0:
		return st, fmt.Errorf("%s %d: want 0 (no limit) or more", org.Of("reports.rate", "report-rate"), *cfg.Reports.Rate)
	default:
		if err := limit.Validate(); err != nil {
			return st, fmt.Errorf("%s, %s: %v", org.Of("reports.rate", "report-rate"), org.Of("reports.burst", "report-burst"), err)
		}
	}
	st.ReportLimit = limit
	keys, err := LoadKeys(cfg.BundleKeys)
	if err != nil {
		return st, (fmt.Errorf("%s: %w", org.Of("bundle_keys", "bundle-key"), err))
	}
	st.BundleKeys = keys
	if st.Retention, err = parseRetention(cfg.Retention); err != nil {
		return st, fmt.Errorf("%s %v", org.Of("retention", "retention"), err)
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
			return st, fmt.Errorf("%s %v", org.Of(q.field, q.flag), err)
		}
		*q.dst = n
	}
	st.BundleCacheControl = cfg.BundleCacheControl
	if *cfg.AccessLog {
		st.AccessLog = logger
	}
	return st, nil
}

// fields are the settings SIGHUP compares: those it applies, and
// those that need a restart.
var fields = []struct {
	name   string
	reload bool
	get    func(*File) any
}{
	{"bundle_keys", true, func(c *File) any { return c.BundleKeys }},
	{"reports.rate", true, func(c *File) any { return *c.Reports.Rate }},
	{"reports.burst", true, func(c *File) any { return *c.Reports.Burst }},
	{"reports.max_storage", true, func(c *File) any { return c.Reports.MaxStorage }},
	{"reports.per_host_per_day", true, func(c *File) any { return c.Reports.PerHostPerDay }},
	{"reports.min_free", true, func(c *File) any { return c.Reports.MinFree }},
	{"retention", true, func(c *File) any { return c.Retention }},
	{"bundle_cache_control", true, func(c *File) any { return c.BundleCacheControl }},
	{"access_log", true, func(c *File) any { return *c.AccessLog }},
	{"listen", false, func(c *File) any { return c.Listen }},
	{"data_dir", false, func(c *File) any { return c.DataDir }},
	{"db", false, func(c *File) any { return c.DB }},
	{"tls_cert", false, func(c *File) any { return c.TLSCert }},
	{"tls_key", false, func(c *File) any { return c.TLSKey }},
	{"admin_token_file", false, func(c *File) any { return c.AdminTokenFile }},
	{"trusted_proxies", false, func(c *File) any { return c.TrustedProxies }},
	{"log_format", false, func(c *File) any { return c.LogFormat }},
	{"pid_file", false, func(c *File) any { return c.PIDFile }},
	{"secure_cookies", false, func(c *File) any { return c.SecureCookies }},
	{"issuer", false, func(c *File) any { return c.Issuer }},
	{"audience", false, func(c *File) any { return c.Audience }},
	{"client_ca", false, func(c *File) any { return c.ClientCA }},
	{"scopes", false, func(c *File) any { return c.Scopes }},
	{"scope_implies", false, func(c *File) any { return c.ScopeImplies }},
	{"key_grace", false, func(c *File) any { return c.KeyGrace }},
	{"ca_max_lineage", false, func(c *File) any { return c.CAMaxLineage }},
	// The monitor reads ct.policy and ct.expect again every poll interval,
	// and the bundles it judges by as they are published; the rest of the
	// section applies at start.
	{"ct", false, func(c *File) any { return c.CT }},
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

// LoadKeys reads the bundle public keys of files (PEM or JWKS, as
// bundle.ParseKeys takes them) into one set; nil for no files.
func LoadKeys(files []string) (*bundle.Keys, error) {
	var all *bundle.Keys
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := bundle.ParseKeys(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if all == nil {
			all = k
		} else if err := all.Merge(k); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return all, nil
}
