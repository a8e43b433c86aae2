// Package edge assembles what rampart gateway runs: the gateway's
// configuration file (YAML), the process around package gateway (the
// listeners, TLS, the admin listener, the access log, the API-key
// database, the token validator, Redis, the service certificate from its
// files) and what a reload may change. rampart gateway and rampart demo
// build their edge here, from [Options]; package gateway knows nothing of
// files.
//
// # The file
//
// [Load] reads a [File] (docs/gateway.md), checks it and resolves its
// relative file names; [File.Options] turns it into gateway.Options,
// given the dependencies; [File.Warnings] says what it holds that can
// never apply.
//
// # The process
//
// [New] builds an [Edge] from Options: it opens what the file names
// (databases, files, Redis), starts the certificate watchers and listens.
// [Edge.Serve] serves, [Edge.Reload] applies the file anew (refusing what
// applies only at start), [Edge.Shutdown] and [Edge.Close] stop it.
package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
)

// File is rampart gateway's configuration file (docs/gateway.md):
//
//	listen: 127.0.0.1:8443                         # without tls: loopback only
//	tls: {cert: gateway.pem, key: gateway.key}     # reloaded when the files change
//	hosts: [api.payments.example]                  # the only Host values answered (default: any)
//	admin_listen: 127.0.0.1:9443                   # /metrics and /healthz, plain http
//	identity:                                      # the gateway's service certificate,
//	  cert: gateway-svc.pem                        #   for mutual TLS to the upstreams
//	  key: gateway-svc.key
//	  roots: internal-root.pem                     # roots naming their trust domain (rampart ca, SPIRE)
//	  bundles: {bank.internal: bank-root.pem}      # optional: roots bound to a trust domain by name
//	  renew:                                       # renewed at the control plane (default: the
//	    url: https://cp.pay.internal:8443/v1/certificates/renew  #   files are watched instead)
//	    roots: cp-root.pem                         #   default: identity.roots
//	routes:
//	  - prefix: /v1/                               # /v1 would take only the path /v1
//	    upstream: https://127.0.0.1:9444
//	    upstream_id: spiffe://pay.internal/ns/prod/sa/payments
//	    auth: required                             # required | none
//	    max_body: 1MiB                             # default 1MiB
//	    timeout: 30s                               # default 30s
//	    methods: [GET, POST]                       # default GET HEAD POST PUT PATCH DELETE OPTIONS
//	    strip_prefix: false                        # true: /v1/x goes upstream as /x
//	    websocket: false                           # true: Upgrade: websocket is proxied
//	    forward_cookies: false                     # true: Cookie reaches the service (auth: required)
//	cors:                                          # the only CORS policy (none if omitted): the
//	                                               #   services' Access-Control-* headers are dropped
//	  allowed_origins: [https://app.payments.example]  # exactly as browsers send them
//	  allowed_methods: [GET, POST]
//	  allowed_headers: [Authorization, Content-Type, X-API-Key]
//	  allow_credentials: false
//	  max_age: 10m
//	ratelimit: {trusted_proxies: [...], rules: [...]}   # as in ratelimit.ParseConfig
//	ratelimit_store: {redis: redis://127.0.0.1:6379/0, prefix: rampart:rl:gw}  # default: memory
//	auth:
//	  tokens: {issuer: ..., audience: ..., jwks_url: ..., jwks_roots: root.pem}
//	  api_keys: {data_dir: ..., db: ...}               # the control plane's database
//	access_log: stderr                                 # stderr | stdout | a file | off
//
// Unknown fields are errors. Load and Parse check all of it, the gateway
// options with [gateway.Options.Check] too: a File they return makes a
// gateway, given the dependencies its sections name ([New] builds them).
// Each section is read at start only or applied by a reload (atStart and
// reloaded, in deps.go).
type File struct {
	Listen      string      `yaml:"listen"`
	TLS         *CertFiles  `yaml:"tls"`
	Hosts       []string    `yaml:"hosts"`
	AdminListen string      `yaml:"admin_listen"`
	Identity    *Identity   `yaml:"identity"`
	Routes      []Route     `yaml:"routes"`
	CORS        *CORS       `yaml:"cors"`
	RateLimit   yaml.Node   `yaml:"ratelimit"`
	LimitStore  *LimitStore `yaml:"ratelimit_store"`
	Auth        Auth        `yaml:"auth"`
	AccessLog   string      `yaml:"access_log"`
	// Authz is rampart authz's section: where it serves the engines in
	// front. rampart gateway ignores it (a warning says so).
	Authz *AuthzSection `yaml:"authz"`

	// decider is set by ParseAuthz: the file is rampart authz's, whose
	// routes need no upstream.
	decider bool
	// What Parse made of the sections for package gateway.
	limits *ratelimit.Config // nil without a ratelimit section
	routes []gateway.Route
	cors   *gateway.CORS
	// path is the file Load read, "" for Parse.
	path string
}

// CertFiles names a certificate chain and its key, PEM.
type CertFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Identity is the gateway's service certificate and the roots of the
// upstreams' certificates, by trust domain: an upstream's certificate
// verifies against the roots of its SPIFFE ID's trust domain alone.
// Roots is a PEM file of roots that each name their one trust domain
// (spiffe://TRUST-DOMAIN, as rampart ca init's and SPIRE's do), one root
// per trust domain (mtls.LoadBundles); Bundles binds PEM files to trust
// domains by name, for roots that name none, several roots of one trust
// domain, or partners (mtls.LoadBundle: a root naming another trust
// domain is refused). A trust domain is in one or the other.
type Identity struct {
	Cert    string            `yaml:"cert"`
	Key     string            `yaml:"key"`
	Roots   string            `yaml:"roots"`
	Bundles map[string]string `yaml:"bundles"`
	// Renew, if set, renews the certificate at the control plane (an
	// mtls.RenewHandler, rampart serve's /v1/certificates/renew) while
	// the gateway serves, and writes each new one to Cert and Key; the
	// files are then not watched.
	Renew *Renewal `yaml:"renew"`
}

// Renewal names the control plane's renewal endpoint.
type Renewal struct {
	// URL is the endpoint, https.
	URL string `yaml:"url"`
	// Roots are the roots trusted for the control plane's TLS
	// certificate; default the identity's roots.
	Roots string `yaml:"roots"`
}

// Route sends requests under Prefix to Upstream (gateway.Route).
type Route struct {
	Prefix   string `yaml:"prefix"`
	Upstream string `yaml:"upstream"`
	// UpstreamID is the SPIFFE ID the upstream must present (mutual TLS);
	// required for https upstreams.
	UpstreamID string `yaml:"upstream_id"`
	// Auth is "required" (an API key or a bearer token; the default) or
	// "none".
	Auth string `yaml:"auth"`
	// MaxBody is a size such as 1MiB (the default), 512KiB or 100
	// (bytes).
	MaxBody string `yaml:"max_body"`
	// Timeout is a duration such as 30s (the default).
	Timeout string `yaml:"timeout"`
	// Methods are the methods the route takes (others: 405); default
	// gateway.DefaultMethods. HEAD comes with GET.
	Methods []string `yaml:"methods"`
	// StripPrefix sends the path without the prefix upstream (/v1/x as
	// /x), and X-Forwarded-Prefix with it.
	StripPrefix bool `yaml:"strip_prefix"`
	// Websocket lets a GET with Upgrade: websocket through (after
	// authentication and limits); the connection then lives at most the
	// route's timeout. Without it any Upgrade but h2c is refused.
	Websocket bool `yaml:"websocket"`
	// ForwardCookies lets the client's Cookie reach the service on a
	// route with auth: required; without it only the credential the
	// gateway checked does.
	ForwardCookies bool `yaml:"forward_cookies"`
	// Scopes are the scopes a caller's credential must carry, all of
	// them (auth: required only).
	Scopes []string `yaml:"scopes"`
}

// AuthzSection is where rampart authz serves (docs/edge.md): Envoy's
// gRPC services (ext_authz and the rate limit service) and HTTP forward
// authentication, each on its own listener.
type AuthzSection struct {
	// GRPC serves envoy.service.auth.v3.Authorization and, with
	// RateLimitService, envoy.service.ratelimit.v3.RateLimitService.
	GRPC *AuthzListener `yaml:"grpc"`
	// HTTP serves forward authentication at /nginx, /caddy, /traefik and
	// /envoy/.
	HTTP *AuthzListener `yaml:"http"`
	// EnvoyPathPrefix is the path_prefix of Envoy's HTTP ext_authz
	// http_service, removed from its requests' paths.
	EnvoyPathPrefix string `yaml:"envoy_path_prefix"`
	// RateLimitService is the global rate limit service: files (or
	// directories of *.yaml files) of envoyproxy/ratelimit's format.
	RateLimitService *RLSSection `yaml:"ratelimit_service"`
}

// AuthzListener is a listener of rampart authz: TCP (with TLS, or plain
// on loopback only) or a unix socket (unix:/path).
type AuthzListener struct {
	Listen string     `yaml:"listen"`
	TLS    *CertFiles `yaml:"tls"`
	// ClientRoots, with TLS, require the engines to present a
	// certificate of these roots (mutual TLS).
	ClientRoots string `yaml:"client_roots"`
	// Mode is a unix socket's permissions, octal: who may connect (the
	// engine's user). Default "0660": the owner and its group.
	Mode string `yaml:"mode"`
}

// RLSSection configures the rate limit service.
type RLSSection struct {
	Configs []string `yaml:"configs"`
	// Failure is what a Redis outage does: open (the default: this
	// instance decides alone meanwhile) or closed (UNAVAILABLE; Envoy's
	// failure_mode_deny then refuses).
	Failure string `yaml:"failure"`
}

// CORS is the cross-origin policy (gateway.CORS); MaxAge is a duration
// such as 10m.
type CORS struct {
	AllowedOrigins   []string `yaml:"allowed_origins"`
	AllowedMethods   []string `yaml:"allowed_methods"`
	AllowedHeaders   []string `yaml:"allowed_headers"`
	ExposedHeaders   []string `yaml:"exposed_headers"`
	AllowCredentials bool     `yaml:"allow_credentials"`
	MaxAge           string   `yaml:"max_age"`
}

// LimitStore is where rate limits are kept when they are shared between
// instances: a Redis URL (redis://host:port/db or rediss://) and a key
// prefix. New makes the store (ratelimit/redisstore).
type LimitStore struct {
	Redis  string `yaml:"redis"`
	Prefix string `yaml:"prefix"`
}

// Auth says how requests authenticate.
type Auth struct {
	Tokens  *TokenAuth  `yaml:"tokens"`
	APIKeys *APIKeyAuth `yaml:"api_keys"`
}

// TokenAuth configures bearer-token validation (token.Validator).
type TokenAuth struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	JWKSURL  string `yaml:"jwks_url"`
	// JWKSRoots, if set, are the only roots trusted for the JWKS
	// connection (a private control plane).
	JWKSRoots string `yaml:"jwks_roots"`
}

// APIKeyAuth names the control plane's database, where API keys are
// checked; the master key comes from the environment or the data
// directory, as for rampart serve.
type APIKeyAuth struct {
	DataDir string `yaml:"data_dir"`
	DB      string `yaml:"db"`
}

// Load reads and checks a configuration file. Relative file names in it
// are relative to the file's directory.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.resolve(filepath.Dir(path))
	f.path = path
	return f, nil
}

// Path is the file Load read, "" for a File from Parse.
func (c *File) Path() string { return c.path }

// resolve makes the relative file names of the configuration relative to
// dir, the configuration file's directory, so that the gateway reads the
// same files whatever its working directory.
func (c *File) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.TLS != nil {
		abs(&c.TLS.Cert)
		abs(&c.TLS.Key)
	}
	if c.Identity != nil {
		abs(&c.Identity.Cert)
		abs(&c.Identity.Key)
		abs(&c.Identity.Roots)
		for td, f := range c.Identity.Bundles {
			abs(&f)
			c.Identity.Bundles[td] = f
		}
		if r := c.Identity.Renew; r != nil {
			abs(&r.Roots)
		}
	}
	switch c.AccessLog {
	case "stderr", "stdout", "off":
	default:
		abs(&c.AccessLog)
	}
	if t := c.Auth.Tokens; t != nil {
		abs(&t.JWKSRoots)
	}
	if a := c.Authz; a != nil {
		for _, l := range []*AuthzListener{a.GRPC, a.HTTP} {
			if l == nil {
				continue
			}
			if l.TLS != nil {
				abs(&l.TLS.Cert)
				abs(&l.TLS.Key)
			}
			abs(&l.ClientRoots)
			if p, ok := strings.CutPrefix(l.Listen, "unix:"); ok && !filepath.IsAbs(p) {
				l.Listen = "unix:" + filepath.Join(dir, p)
			}
		}
		if r := a.RateLimitService; r != nil {
			for i := range r.Configs {
				abs(&r.Configs[i])
			}
		}
	}
	if k := c.Auth.APIKeys; k != nil {
		abs(&k.DataDir)
		// A DSN with a scheme (postgres://, sqlite:) is left alone.
		if !strings.Contains(k.DB, ":") {
			abs(&k.DB)
		}
	}
}

// yamlError turns a YAML decoding error into one line without Go type
// names, and says what an unknown field might have been: "line 3: field
// listne not found; did you mean listen? (the top level takes listen,
// tls, ...)".
func yamlError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			typ := ""
			if j := strings.Index(m, " in type "); j >= 0 {
				m, typ = m[:j], m[j+len(" in type "):]
			}
			if _, f, ok := strings.Cut(m, ": field "); ok && strings.HasSuffix(f, " not found") {
				m += knownFields(strings.TrimSuffix(f, " not found"), typ)
			}
			msgs[i] = m
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// sections are the types of the configuration file by the name yaml
// gives them in errors, and what the file calls them.
var sections = map[string]struct {
	name string
	t    reflect.Type
}{
	"edge.File":          {"the top level", reflect.TypeFor[File]()},
	"edge.CertFiles":     {"tls", reflect.TypeFor[CertFiles]()},
	"edge.Identity":      {"identity", reflect.TypeFor[Identity]()},
	"edge.Renewal":       {"identity.renew", reflect.TypeFor[Renewal]()},
	"edge.Route":         {"a route", reflect.TypeFor[Route]()},
	"edge.CORS":          {"cors", reflect.TypeFor[CORS]()},
	"edge.LimitStore":    {"ratelimit_store", reflect.TypeFor[LimitStore]()},
	"edge.Auth":          {"auth", reflect.TypeFor[Auth]()},
	"edge.TokenAuth":     {"auth.tokens", reflect.TypeFor[TokenAuth]()},
	"edge.APIKeyAuth":    {"auth.api_keys", reflect.TypeFor[APIKeyAuth]()},
	"edge.AuthzSection":  {"authz", reflect.TypeFor[AuthzSection]()},
	"edge.AuthzListener": {"authz.grpc and authz.http", reflect.TypeFor[AuthzListener]()},
	"edge.RLSSection":    {"authz.ratelimit_service", reflect.TypeFor[RLSSection]()},
}

// knownFields says which field of typ (a yaml type name) the unknown
// field was perhaps meant to be, and lists them.
func knownFields(field, typ string) string {
	sec, ok := sections[typ]
	if !ok {
		return ""
	}
	var names []string
	best, bestD := "", 3
	for i := range sec.t.NumField() {
		tag, _, _ := strings.Cut(sec.t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		names = append(names, tag)
		if d := editDistance(field, tag); d < bestD {
			best, bestD = tag, d
		}
	}
	s := ""
	if best != "" {
		s = "; did you mean " + best + "?"
	}
	return s + " (" + sec.name + " takes " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance of a and b, bytes.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Parse parses and checks a configuration. Errors start "gateway: ".
func Parse(data []byte) (*File, error) { return parse(data, false) }

// ParseAuthz parses and checks rampart authz's configuration: the
// gateway's file, whose routes need no upstream, with an authz section.
// Errors start "authz: ".
func ParseAuthz(data []byte) (*File, error) {
	f, err := parse(data, true)
	if err != nil {
		return nil, errors.New("authz: " + strings.TrimPrefix(err.Error(), "gateway: "))
	}
	return f, nil
}

// LoadAuthz is Load for rampart authz (ParseAuthz).
func LoadAuthz(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	f, err := ParseAuthz(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.resolve(filepath.Dir(path))
	f.path = path
	return f, nil
}

func parse(data []byte, decider bool) (*File, error) {
	c := File{decider: decider}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is an empty configuration, refused below for what it
	// lacks rather than as "EOF".
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("gateway: %s", yamlError(err))
	}
	checks := []func() error{c.checkListen, c.parseRoutes, c.checkIdentity, c.checkSections, c.parseRateLimit}
	if decider {
		checks = []func() error{c.parseRoutes, c.checkSections, c.parseRateLimit, c.checkAuthz}
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return nil, err
		}
	}
	// What the gateway checks of its options (prefixes, upstreams,
	// methods, hosts, origins, rules), it says in the file's words.
	o := c.Options(gateway.Options{})
	check := o.Check
	if decider {
		check = o.CheckDecider
	}
	if err := check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkListen checks listen and tls, and puts hosts in lower case.
func (c *File) checkListen() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.TLS != nil && (c.TLS.Cert == "" || c.TLS.Key == "") {
		return fmt.Errorf("gateway: tls needs cert and key")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %q: want host:port", c.Listen)
	}
	if c.TLS == nil && !httpx.IsLoopbackHost(host) {
		return fmt.Errorf("gateway: listen %q: plain http only on loopback (127.0.0.1, ::1, localhost), or credentials cross the network in the clear: configure tls", c.Listen)
	}
	for i, h := range c.Hosts {
		c.Hosts[i] = strings.ToLower(h) // checked by gateway.Options.Check
	}
	return nil
}

// parseRoutes makes the gateway's routes.
func (c *File) parseRoutes() error {
	if len(c.Routes) == 0 {
		return fmt.Errorf("gateway: no routes")
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		gr, err := r.parse(c.decider)
		if err != nil {
			return fmt.Errorf("gateway: route %q: %w", r.Prefix, err)
		}
		c.routes = append(c.routes, gr)
		if r.Auth == "required" && c.Auth.Tokens == nil && c.Auth.APIKeys == nil {
			return fmt.Errorf("gateway: route %q requires authentication, but auth configures neither tokens nor api_keys", r.Prefix)
		}
	}
	return nil
}

// checkIdentity checks the identity section, which https upstreams need.
func (c *File) checkIdentity() error {
	needIdentity := slices.ContainsFunc(c.routes, func(r gateway.Route) bool { return r.Upstream.Scheme == "https" })
	id := c.Identity
	if needIdentity && (id == nil || id.Cert == "" || id.Key == "" || (id.Roots == "" && len(id.Bundles) == 0)) {
		return fmt.Errorf("gateway: https upstreams need identity: {cert, key, roots} (mutual TLS)")
	}
	if id == nil {
		return nil
	}
	for name, file := range id.Bundles {
		if _, err := spiffeid.TrustDomainFromString(name); err != nil {
			return fmt.Errorf("gateway: identity.bundles: trust domain %q: %v", name, err)
		}
		if file == "" {
			return fmt.Errorf("gateway: identity.bundles: %s: no roots file", name)
		}
	}
	if id.Renew != nil {
		if err := id.Renew.check(); err != nil {
			return fmt.Errorf("gateway: identity.renew: %w", err)
		}
		if id.Cert == "" || id.Key == "" {
			return fmt.Errorf("gateway: identity.renew needs identity.cert and identity.key: the first certificate, and where the new ones are written")
		}
	}
	return nil
}

// checkSections checks cors, auth.tokens, ratelimit_store and access_log.
func (c *File) checkSections() error {
	if c.CORS != nil {
		var err error
		if c.cors, err = c.CORS.parse(); err != nil {
			return fmt.Errorf("gateway: cors: %w", err)
		}
	}
	if t := c.Auth.Tokens; t != nil && (t.Issuer == "" || t.Audience == "" || t.JWKSURL == "") {
		return fmt.Errorf("gateway: auth.tokens needs issuer, audience and jwks_url")
	}
	if c.LimitStore != nil && c.LimitStore.Redis == "" {
		return fmt.Errorf("gateway: ratelimit_store needs redis: URL")
	}
	if c.LimitStore != nil {
		if err := (redisstore.Options{Prefix: c.LimitStore.Prefix}).Check(); err != nil {
			return fmt.Errorf("gateway: ratelimit_store: %w", err) // New would panic
		}
	}
	switch c.AccessLog {
	case "":
		c.AccessLog = "stderr"
	case "stderr", "stdout", "off":
	default:
		if strings.ContainsAny(c.AccessLog, "\x00\n") {
			return fmt.Errorf("gateway: access_log %q: want stderr, stdout, off or a file", c.AccessLog)
		}
	}
	return nil
}

// parseRateLimit parses the ratelimit section, a rules file of its own.
func (c *File) parseRateLimit() error {
	if c.RateLimit.IsZero() {
		return nil
	}
	raw, err := yaml.Marshal(&c.RateLimit)
	if err != nil {
		return fmt.Errorf("gateway: ratelimit: %w", err)
	}
	if c.limits, err = ratelimit.ParseConfig(raw); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// Options returns deps, the dependencies a caller built (verifiers,
// stores, identity, loggers), with the fields the file holds: its routes,
// hosts, CORS policy, limits and trusted proxies.
func (c *File) Options(deps gateway.Options) gateway.Options {
	o := deps
	o.Routes = slices.Clone(c.routes)
	o.Hosts = slices.Clone(c.Hosts)
	o.CORS = c.cors
	o.Limits, o.TrustedProxies = nil, nil
	if c.limits != nil {
		o.Limits = slices.Clone(c.limits.Rules)
		o.TrustedProxies = slices.Clone(c.limits.TrustedProxies)
	}
	return o
}

// parse makes the gateway's route of r; the gateway checks the rest.
// In rampart authz's file (decider), a route needs no upstream.
func (r *Route) parse(decider bool) (gateway.Route, error) {
	gr := gateway.Route{Prefix: r.Prefix, Methods: r.Methods, Scopes: r.Scopes,
		StripPrefix: r.StripPrefix, Websocket: r.Websocket, ForwardCookies: r.ForwardCookies}
	u, err := url.Parse(r.Upstream)
	switch {
	case decider && r.Upstream == "":
		u = nil
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return gateway.Route{}, fmt.Errorf("upstream %q: want https://host:port", r.Upstream)
	}
	gr.Upstream = u
	if u != nil && u.Scheme == "https" {
		if gr.UpstreamID, err = spiffeid.FromString(r.UpstreamID); err != nil {
			return gateway.Route{}, fmt.Errorf("upstream_id %q: want the upstream's SPIFFE ID: %v", r.UpstreamID, err)
		}
	}
	switch r.Auth {
	case "":
		r.Auth = "required"
	case "required", "none":
	default:
		return gateway.Route{}, fmt.Errorf("auth %q: want required or none", r.Auth)
	}
	gr.AllowAnonymous = r.Auth == "none"
	if r.MaxBody != "" {
		if gr.MaxBody, err = parseSize(r.MaxBody); err != nil {
			return gateway.Route{}, fmt.Errorf("max_body: %w", err)
		}
	}
	if r.Timeout != "" {
		if gr.Timeout, err = time.ParseDuration(r.Timeout); err != nil || gr.Timeout <= 0 {
			return gateway.Route{}, fmt.Errorf("timeout %q: want a duration such as 30s", r.Timeout)
		}
	}
	return gr, nil
}

// parse makes the gateway's policy of c; the gateway checks the origins.
func (c *CORS) parse() (*gateway.CORS, error) {
	gc := &gateway.CORS{AllowedOrigins: c.AllowedOrigins, AllowedMethods: c.AllowedMethods, AllowedHeaders: c.AllowedHeaders,
		ExposedHeaders: c.ExposedHeaders, AllowCredentials: c.AllowCredentials}
	if c.MaxAge != "" {
		d, err := time.ParseDuration(c.MaxAge)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("max_age %q: want a duration such as 10m", c.MaxAge)
		}
		gc.MaxAge = d
	}
	return gc, nil
}

func (r *Renewal) check() error {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("url %q: want https://host:port/v1/certificates/renew (the control plane, over TLS)", r.URL)
	}
	return nil
}

// parseSize reads "1MiB", "512KiB", "100" (bytes).
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			num, mult = n, m
			break
		}
	}
	// A product that overflows would be negative: a limit every request
	// is over.
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a size such as 1MiB", s)
	}
	return n * mult, nil
}

// Warnings are what in c is allowed but probably not meant: edge rate
// limits that can never apply.
func (c *File) Warnings() []string {
	var warn []string
	if c.Authz != nil && !c.decider {
		warn = append(warn, "the authz section is rampart authz's; rampart gateway ignores it")
	}
	if c.decider && (c.TLS != nil || c.Identity != nil || c.Listen != "") {
		warn = append(warn, "listen, tls and identity are rampart gateway's; rampart authz serves on authz.grpc and authz.http")
	}
	if c.limits == nil {
		return warn
	}
	routes := http.NewServeMux()
	prefixes := map[string]bool{}
	authenticates := false
	for _, r := range c.Routes {
		routes.Handle(r.Prefix, http.NotFoundHandler())
		prefixes[r.Prefix] = true
		authenticates = authenticates || r.Auth == "required"
	}
	for _, rule := range c.limits.Rules {
		if rule.Kind == ratelimit.Business {
			continue
		}
		if slices.Contains(rule.By, ratelimit.ByClient) && !authenticates {
			warn = append(warn, fmt.Sprintf("ratelimit rule %s is keyed by client, but no route authenticates: it never applies", rule.Name))
		}
		if len(rule.Routes) == 0 {
			continue
		}
		if w := ruleRoutes(rule, routes, prefixes, c.Routes); w != "" {
			warn = append(warn, fmt.Sprintf("ratelimit rule %s: %s", rule.Name, w))
		}
	}
	return warn
}

// wildcard is a ServeMux pattern wildcard.
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// ruleRoutes says why rule's routes (ServeMux patterns) can match no
// request the gateway routes; "" if one can.
func ruleRoutes(rule ratelimit.Rule, routes *http.ServeMux, prefixes map[string]bool, cfgRoutes []Route) string {
	patterns := http.NewServeMux()
	for _, p := range rule.Routes {
		patterns.Handle(p, http.NotFoundHandler()) // checked by ratelimit.ParseConfig
	}
	for _, p := range rule.Routes {
		if method, _, ok := strings.Cut(p, " "); ok && strings.ToUpper(method) != method {
			return fmt.Sprintf("route %q: methods are case-sensitive (RFC 9110 §9.1) and the gateway refuses them in lower case: write %s", p, strings.ToUpper(method))
		}
	}
	for _, p := range rule.Routes {
		method, rest, ok := strings.Cut(p, " ")
		if !ok {
			method, rest = "", p
		}
		rest = strings.TrimLeft(rest, " \t")
		host, pth := "", rest
		if i := strings.IndexByte(rest, '/'); i > 0 {
			host, pth = rest[:i], rest[i:]
		}
		if method == "" {
			method = http.MethodGet
		}
		pth = strings.ReplaceAll(wildcard.ReplaceAllStringFunc(pth, func(w string) string {
			if w == "{$}" {
				return ""
			}
			return "x"
		}), "//", "/x/")
		if host == "" {
			host = "gateway.invalid"
		}
		// A request the pattern matches that a route takes...
		if _, got := routes.Handler(&http.Request{Method: method, Host: host, URL: &url.URL{Path: pth}}); prefixes[got] {
			return ""
		}
		// ...or a route whose own path the pattern matches.
		for _, r := range cfgRoutes {
			if _, got := patterns.Handler(&http.Request{Method: method, Host: host, URL: &url.URL{Path: r.Prefix}}); got != "" {
				return ""
			}
		}
	}
	return fmt.Sprintf("routes %q match no route of this gateway: it never applies", rule.Routes)
}
