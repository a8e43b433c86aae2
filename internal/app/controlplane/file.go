package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/internal/util/suggest"
)

// File is the file of rampart serve --config: the same settings as
// the flags, which override it.
type File struct {
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
	// CT is the Certificate Transparency monitor; it runs when Logs is
	// set (--ct-logs).
	CT CTFile `yaml:"ct"`
}

// CTFile is the ct section of rampart serve's file.
type CTFile struct {
	// Logs is the log list (v3 JSON), a file or an http(s) URL.
	Logs string `yaml:"logs"`
	// Policy is the pin policy to judge by; empty: the policies of the
	// bundles this control plane serves (verified with bundle_keys).
	Policy string `yaml:"policy"`
	// Watch are the organisation's other domains (unpinned names).
	Watch []string `yaml:"watch"`
	// Expect is a file of announced keys and certificates (ct.ParseAnnouncements).
	Expect string `yaml:"expect"`
	// Poll is the interval between looks at each log (default 60s).
	Poll string `yaml:"poll"`
	// Start is where a log first met starts: end (default), beginning,
	// or a date (YYYY-MM-DD).
	Start   string `yaml:"start"`
	Webhook struct {
		URL        string `yaml:"url"`
		SecretFile string `yaml:"secret_file"`
	} `yaml:"webhook"`
}

// Source are rampart serve's command line: the configuration file
// and the flags, which override it. load merges them, at start and again
// on SIGHUP.
type Source struct {
	// Path is the configuration file; "" for none.
	Path string
	// Flags are the settings given on the command line, and their
	// defaults; Changed says which were given.
	Flags File
	// Rate, Burst and AccessLog are the flags of the settings File
	// holds as pointers (reports.rate, reports.burst, access_log).
	Rate, Burst int
	AccessLog   bool
	// Changed reports whether a flag was given; nil means none was.
	Changed func(flag string) bool
}

// origins says where each setting came from, for messages that name the
// flag or the file and field the user wrote.
type Origins struct {
	file    string
	inFile  map[string]bool
	changed func(flag string) bool
}

// Of names a setting: "--flag" when given as a flag (or not in the file),
// else "FILE: field".
func (o *Origins) Of(field, flag string) string {
	if o.inFile[field] && (flag == "" || !o.changed(flag)) {
		return o.file + ": " + field
	}
	if flag == "" {
		return field
	}
	return "--" + flag
}

// Load reads the file and applies the flags given over it.
func (o *Source) Load() (*File, *Origins, error) {
	if o.Changed == nil {
		o.Changed = func(string) bool { return false }
	}
	cfg, inFile, err := loadFileKeys(o.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("--config %w", err)
	}
	org := &Origins{file: o.Path, inFile: inFile, changed: o.Changed}
	set := func(name string, dst *string, v string) {
		if o.Changed(name) || *dst == "" {
			*dst = v
		}
	}
	f := &o.Flags
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
	set("ct-logs", &cfg.CT.Logs, f.CT.Logs)
	if o.Changed("secure-cookies") {
		cfg.SecureCookies = f.SecureCookies
	}
	if o.Changed("bundle-key") {
		cfg.BundleKeys = f.BundleKeys
	}
	if o.Changed("trusted-proxy") {
		cfg.TrustedProxies = f.TrustedProxies
	}
	if o.Changed("report-rate") || cfg.Reports.Rate == nil {
		cfg.Reports.Rate = &o.Rate
	}
	if o.Changed("report-burst") || cfg.Reports.Burst == nil {
		cfg.Reports.Burst = &o.Burst
	}
	if o.Changed("access-log") || cfg.AccessLog == nil {
		cfg.AccessLog = &o.AccessLog
	}
	return cfg, org, nil
}

// serveFlags maps the config file's fields to their flags.
var serveFlags = map[string]string{
	"listen": "listen", "data_dir": "data", "db": "db", "tls_cert": "tls-cert", "tls_key": "tls-key",
	"log_format": "log-format", "retention": "retention", "issuer": "issuer", "audience": "audience",
	"client_ca": "client-ca", "pid_file": "pid-file", "secure_cookies": "secure-cookies",
	"bundle_keys": "bundle-key", "trusted_proxies": "trusted-proxy", "reports.rate": "report-rate",
	"reports.burst": "report-burst", "reports.max_storage": "report-storage", "access_log": "access-log",
	"ct.logs": "ct-logs",
}

func flagOf(field string) string { return serveFlags[field] }

// fieldName is the Go name of a top-level File field.
func fieldName(yamlName string) string {
	t := reflect.TypeOf(File{})
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == yamlName {
			return t.Field(i).Name
		}
	}
	panic("serve: no field " + yamlName)
}

// LoadFile reads rampart serve's configuration file; "" is an empty
// configuration.
func LoadFile(path string) (*File, error) {
	c, _, err := loadFileKeys(path)
	return c, err
}

// loadFileKeys reads the file and also returns the fields it sets,
// dotted ("reports.rate"), so that messages can name the file and field a
// value came from. Errors name the file, the line and the field, with the
// closest known field for a misspelt one, and no Go type names.
func loadFileKeys(path string) (*File, map[string]bool, error) {
	var c File
	set := map[string]bool{}
	if path == "" {
		return &c, set, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %s", path, yamlText(err, nil))
	}
	if len(doc.Content) == 0 {
		return &c, set, nil // an empty file
	}
	lines := map[int]string{}
	if err := checkFields(doc.Content[0], reflect.TypeOf(c), "", set, lines); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%s: %s", path, yamlText(err, lines))
	}
	return &c, set, nil
}

// checkFields walks a mapping against the yaml fields of struct type t,
// recording the fields set and refusing unknown ones.
func checkFields(n *yaml.Node, t reflect.Type, prefix string, set map[string]bool, lines map[int]string) error {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		what := "the file"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return fmt.Errorf("line %d: %s: want a mapping of field: value", n.Line, what)
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			sort.Strings(names)
			msg := fmt.Sprintf("line %d: unknown field %s%s", k.Line, prefix, k.Value)
			if s := suggest.Closest(k.Value, names); s != "" {
				return fmt.Errorf("%s (did you mean %s%s?)", msg, prefix, s)
			}
			where := "the file"
			if prefix != "" {
				where = strings.TrimSuffix(prefix, ".")
			}
			return fmt.Errorf("%s; %s takes %s", msg, where, strings.Join(names, ", "))
		}
		set[prefix+k.Value] = true
		lines[v.Line] = prefix + k.Value
		for _, item := range v.Content {
			if _, ok := lines[item.Line]; !ok && v.Kind == yaml.SequenceNode {
				lines[item.Line] = prefix + k.Value
			}
		}
		if ft.Kind() == reflect.Struct {
			if err := checkFields(v, ft, prefix+k.Value+".", set, lines); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlFields maps the yaml names of struct type t's fields to their types
// (pointers dereferenced).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		out[name] = ft
	}
	return out
}

// typeError matches yaml.v3's type errors: the value read and the Go type
// it did not fit.
var typeError = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: (`[^`]*`|[^ ]+))? into (.+)$")

// yamlKinds says in words what a YAML tag holds.
var yamlKinds = map[string]string{"map": "a mapping", "seq": "a list", "str": "a string", "int": "a number",
	"float": "a number", "bool": "true or false", "null": "null", "binary": "binary data", "timestamp": "a time"}

// goTypeWords says in words what a Go type of File holds.
func goTypeWords(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return "a mapping of field: value"
}

// yamlText rewrites a yaml.v3 error without its "yaml: " prefix and Go
// type names, naming the field of each line where lines knows it.
func yamlText(err error, lines map[int]string) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if sm := typeError.FindStringSubmatch(m); sm != nil {
			field := ""
			var line int
			fmt.Sscan(sm[1], &line)
			if f, ok := lines[line]; ok {
				field = f + ": "
			}
			what := yamlKinds[sm[2]]
			if what == "" {
				what = "this value"
			}
			if sm[3] != "" {
				what = strconv.Quote(strings.Trim(sm[3], "`"))
			}
			m = fmt.Sprintf("line %s: %s%s is not %s", sm[1], field, what, goTypeWords(sm[4]))
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}
