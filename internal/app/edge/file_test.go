package edge

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// The configuration in testdata/full.yaml uses every field; each must
// arrive where the gateway reads it.
func TestLoadConfigFull(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:443" || c.AdminListen != "127.0.0.1:9443" || c.AccessLog != "/var/log/rampart/access.log" {
		t.Errorf("listen %q, admin_listen %q, access_log %q", c.Listen, c.AdminListen, c.AccessLog)
	}
	if c.TLS == nil || *c.TLS != (CertFiles{Cert: "/etc/rampart/gateway.pem", Key: "/etc/rampart/gateway.key"}) {
		t.Errorf("tls = %+v", c.TLS)
	}
	if c.Identity == nil || !reflect.DeepEqual(*c.Identity, Identity{Cert: "/etc/rampart/gateway-svc.pem", Key: "/etc/rampart/gateway-svc.key", Roots: "/etc/rampart/internal-root.pem",
		Bundles: map[string]string{"bank.internal": "/etc/rampart/bank-root.pem"}}) {
		t.Errorf("identity = %+v", c.Identity)
	}

	type route struct {
		prefix, upstream, id, auth string
		anonymous                  bool
		maxBody                    int64
		timeout                    time.Duration
	}
	var got []route
	for i, r := range c.Routes {
		gr := c.routes[i]
		got = append(got, route{r.Prefix, gr.Upstream.String(), gr.UpstreamID.String(), r.Auth, gr.AllowAnonymous, gr.MaxBody, gr.Timeout})
	}
	// 0: the gateway's default (gateway.DefaultMaxBody, DefaultTimeout).
	want := []route{
		{"/v1/", "https://10.0.0.5:9444", "spiffe://pay.internal/ns/prod/sa/payments", "required", false, 512 << 10, 5 * time.Second},
		{"/v1/withdrawals/", "https://payments.internal:9445/base", "spiffe://pay.internal/ns/prod/sa/withdrawals", "required", false, 100, 0},
		{"/public/", "http://127.0.0.1:8080", "", "none", true, 0, 250 * time.Millisecond},
		{"/status", "http://[::1]:8081", "", "none", true, 2 << 30, 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", got, want)
	}

	cors := c.CORS
	if cors == nil || !slices.Equal(cors.AllowedOrigins, []string{"https://app.payments.example", "https://checkout.payments.example:8443", "http://localhost:3000", "http://127.0.0.1:5173"}) ||
		!slices.Equal(cors.AllowedMethods, []string{"GET", "POST", "DELETE"}) ||
		!slices.Equal(cors.AllowedHeaders, []string{"Authorization", "Content-Type", "X-API-Key"}) ||
		!slices.Equal(cors.ExposedHeaders, []string{"RateLimit", "RateLimit-Policy", "Retry-After"}) ||
		!cors.AllowCredentials || cors.MaxAge != "10m" || c.cors.MaxAge != 10*time.Minute {
		t.Errorf("cors = %+v", cors)
	}

	if c.limits == nil {
		t.Fatal("ratelimit not parsed")
	}
	if !slices.Equal(c.limits.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")}) {
		t.Errorf("trusted proxies = %v", c.limits.TrustedProxies)
	}
	var rules []string
	for _, r := range c.limits.Rules {
		rules = append(rules, r.Name+":"+string(r.Kind)+":"+string(r.Failure))
	}
	if !slices.Equal(rules, []string{"per-address:edge:open", "token-guessing:edge:closed", "per-client:edge:open", "swap:business:closed"}) {
		t.Errorf("rules = %v", rules)
	}
	if l := c.limits.Rules[0].Limit; l != (ratelimit.Limit{Rate: 20, Period: time.Second, Burst: 40}) {
		t.Errorf("per-address limit = %+v", l)
	}
	if c.LimitStore == nil || *c.LimitStore != (LimitStore{Redis: "redis://127.0.0.1:6379/0", Prefix: "rampart:rl:gw"}) {
		t.Errorf("ratelimit_store = %+v", c.LimitStore)
	}
	if a := c.Auth.Tokens; a == nil || *a != (TokenAuth{Issuer: "https://auth.payments.example", Audience: "https://api.payments.example",
		JWKSURL: "https://auth.payments.example/oauth2/jwks", JWKSRoots: "/etc/rampart/control-plane-root.pem"}) {
		t.Errorf("auth.tokens = %+v", a)
	}
	if a := c.Auth.APIKeys; a == nil || *a != (APIKeyAuth{DataDir: "/var/lib/rampart", DB: "postgres://rampart@db.internal/rampart"}) {
		t.Errorf("auth.api_keys = %+v", a)
	}
}

// A minimal configuration gets the documented defaults: the safe ones
// (authentication required, 1 MiB bodies, 30 s).
func TestParseConfigDefaults(t *testing.T) {
	c, err := Parse([]byte(`
identity: {cert: c.pem, key: k.pem, roots: r.pem}
auth: {api_keys: {}}
routes:
  - prefix: /v1/
    upstream: https://10.0.0.5:9444
    upstream_id: spiffe://pay.internal/ns/prod/sa/payments
`))
	if err != nil {
		t.Fatal(err)
	}
	r, gr := c.Routes[0], c.routes[0]
	if c.Listen != "127.0.0.1:8443" || c.AccessLog != "stderr" || c.TLS != nil || c.CORS != nil || c.limits != nil || c.LimitStore != nil {
		t.Errorf("defaults: %+v", c)
	}
	// 0 is the gateway's default: 1 MiB, 30 s.
	if r.Auth != "required" || gr.AllowAnonymous || gr.MaxBody != 0 || gr.Timeout != 0 {
		t.Errorf("route defaults: auth %q, max_body %d, timeout %v", r.Auth, gr.MaxBody, gr.Timeout)
	}
}

// Relative file names in a configuration file are relative to the file,
// not to the working directory; absolute names, DSNs with a scheme and the
// access log's keywords are left alone.
func TestLoadConfigRelativePaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gateway.yaml")
	conf := `
tls: {cert: certs/gw.pem, key: certs/gw.key}
identity: {cert: svc.pem, key: /abs/svc.key, roots: ../roots.pem}
routes: [{prefix: /v1/, upstream: "https://127.0.0.1:9443", upstream_id: "spiffe://pay.test/payments"}]
auth:
  tokens: {issuer: "https://cp.test", audience: payments, jwks_url: "https://cp.test/jwks", jwks_roots: cp.pem}
  api_keys: {data_dir: data, db: keys.db}
access_log: logs/access.log
`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ got, want string }{
		{c.TLS.Cert, filepath.Join(dir, "certs/gw.pem")},
		{c.TLS.Key, filepath.Join(dir, "certs/gw.key")},
		{c.Identity.Cert, filepath.Join(dir, "svc.pem")},
		{c.Identity.Key, "/abs/svc.key"},
		{c.Identity.Roots, filepath.Join(filepath.Dir(dir), "roots.pem")},
		{c.Auth.Tokens.JWKSRoots, filepath.Join(dir, "cp.pem")},
		{c.Auth.APIKeys.DataDir, filepath.Join(dir, "data")},
		{c.Auth.APIKeys.DB, filepath.Join(dir, "keys.db")},
		{c.AccessLog, filepath.Join(dir, "logs/access.log")},
	} {
		if f.got != f.want {
			t.Errorf("got %s, want %s", f.got, f.want)
		}
	}

	conf = strings.Replace(conf, "db: keys.db", `db: "postgres://rampart@db/rampart"`, 1)
	conf = strings.Replace(conf, "access_log: logs/access.log", "access_log: stdout", 1)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(file); err != nil {
		t.Fatal(err)
	}
	if c.Auth.APIKeys.DB != "postgres://rampart@db/rampart" || c.AccessLog != "stdout" {
		t.Errorf("db %q, access_log %q: want them as written", c.Auth.APIKeys.DB, c.AccessLog)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := Load(missing); err == nil || !strings.HasPrefix(err.Error(), "gateway: ") || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("routes: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file's name comes first, so that the operator knows which.
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": gateway: no routes") {
		t.Errorf("bad file: %v", err)
	}
}

func TestParseConfigRefusals(t *testing.T) {
	const (
		https = "upstream: https://10.0.0.5:9444, upstream_id: spiffe://pay.internal/ns/prod/sa/payments"
		ident = "identity: {cert: c.pem, key: k.pem, roots: r.pem}\n"
		open  = "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\n"
	)
	route := func(fields string) string {
		return ident + "auth: {api_keys: {}}\nroutes: [{" + fields + "}]\n"
	}
	cors := func(fields string) string { return open + "cors: {" + fields + "}\n" }
	origin := func(o string) string { return cors("allowed_origins: ['" + o + "']") }
	limit := func(rules string) string { return open + "ratelimit: {rules: [" + rules + "]}\n" }

	for _, tc := range []struct {
		name, yaml, want string
	}{
		// The file.
		{"empty file", "", "no routes"},
		{"not yaml", "routes: [", "did not find expected"},
		{"unknown field", open + "listen_addr: 127.0.0.1:1\n", "field listen_addr not found"},
		{"unknown route field", route("prefix: /v1/, upstrem: https://x, " + https), "field upstrem not found"},
		{"unknown cors field", cors("allowed_origin: [https://a.example]"), "field allowed_origin not found"},
		{"tls without key", open + "tls: {cert: c.pem}\n", "tls needs cert and key"},
		// Plain http only on loopback (second walkthrough 9).
		{"plain http on every address", open + "listen: 0.0.0.0:8080\n", "plain http only on loopback"},
		{"plain http on every address, no host", open + "listen: ':8080'\n", "plain http only on loopback"},
		{"plain http on the network", open + "listen: 10.0.0.5:8080\n", "plain http only on loopback"},
		{"plain http on a name", open + "listen: gateway.internal:8080\n", "plain http only on loopback"},
		{"listen without port", open + "listen: 127.0.0.1\n", "want host:port"},
		{"hosts with a scheme", open + "hosts: ['https://api.example']\n", "hosts"},
		{"hosts with a path", open + "hosts: ['api.example/v1']\n", "hosts"},
		{"hosts wildcard", open + "hosts: ['*.example']\n", "hosts"},
		{"hosts trailing dot", open + "hosts: ['api.example.']\n", "trailing dot"},
		{"hosts unicode", open + "hosts: ['bücher.example']\n", "punycode"},
		{"route methods lower case", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, methods: [post]}]\n", "upper case"},
		{"route methods not a token", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, methods: ['GET /x']}]\n", "upper case"},
		{"route methods connect", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, methods: [CONNECT]}]\n", "never proxied"},
		{"renew over http", "identity: {cert: c.pem, key: k.pem, roots: r.pem, renew: {url: 'http://cp:8443/v1/certificates/renew'}}\nauth: {api_keys: {}}\nroutes: [{prefix: /v1/, " + https + "}]\n", "identity.renew: url \"http://cp:8443"},
		{"renew without url", "identity: {cert: c.pem, key: k.pem, roots: r.pem, renew: {roots: r.pem}}\nauth: {api_keys: {}}\nroutes: [{prefix: /v1/, " + https + "}]\n", "identity.renew: url"},
		{"renew without files", "identity: {roots: r.pem, renew: {url: 'https://cp:8443/v1/certificates/renew'}}\n" + open, "identity.renew needs identity.cert and identity.key"},
		{"access_log with newline", open + "access_log: \"a\\nb\"\n", "access_log"},

		// Routes.
		{"no routes", "listen: 127.0.0.1:1\n", "no routes"},
		{"empty routes", "routes: []\n", "no routes"},
		{"empty prefix", route(https), `route "": prefix`},
		{"relative prefix", route("prefix: v1/, " + https), `route "v1/": prefix`},
		{"wildcard prefix", route("prefix: '/v1/{id}/', " + https), "no wildcards"},
		{"wildcard rest", route("prefix: '/v1/{rest...}', " + https), "no wildcards"},
		{"glob prefix", route("prefix: '/v1/*', " + https), "no wildcards"},
		{"brace", route("prefix: '/v1}/', " + https), "no wildcards"},
		{"method in prefix", route("prefix: 'POST /v1/', " + https), "prefix"},
		{"double slash", route("prefix: /v1//, " + https), "clean path"},
		{"dot dot", route("prefix: /v1/../admin/, " + https), "clean path"},
		{"dot", route("prefix: /v1/./, " + https), "clean path"},
		{"escaped prefix", route("prefix: /v%31/, " + https), "prefix"},
		{"query in prefix", route("prefix: '/v1?x=1', " + https), "prefix"},
		{"duplicate prefix", ident + "auth: {api_keys: {}}\nroutes: [{prefix: /v1/, " + https + "}, {prefix: /v1/, " + https + "}]\n", `route "/v1/": listed twice`},
		{"no upstream", route("prefix: /v1/"), "upstream"},
		{"upstream without host", route("prefix: /v1/, upstream: 'https:///x', upstream_id: spiffe://pay.internal/a"), "want https://host:port"},
		{"ftp upstream", route("prefix: /v1/, upstream: 'ftp://10.0.0.5', upstream_id: spiffe://pay.internal/a"), "want https://host:port"},
		{"http upstream on the network", route("prefix: /v1/, upstream: 'http://10.0.0.5:8080'"), "plain http only to loopback"},
		{"http upstream named like loopback", route("prefix: /v1/, upstream: 'http://127.attacker.example:8080'"), "plain http only to loopback"},
		{"http upstream localhost subdomain", route("prefix: /v1/, upstream: 'http://localhost.attacker.example'"), "plain http only to loopback"},
		{"https upstream without upstream_id", route("prefix: /v1/, upstream: https://10.0.0.5:9444"), "upstream_id"},
		{"upstream_id not spiffe", route("prefix: /v1/, upstream: https://10.0.0.5:9444, upstream_id: https://payments"), "upstream_id"},
		{"https upstream without identity", "auth: {api_keys: {}}\nroutes: [{prefix: /v1/, " + https + "}]\n", "https upstreams need identity"},
		{"identity without roots", "identity: {cert: c.pem, key: k.pem}\nauth: {api_keys: {}}\nroutes: [{prefix: /v1/, " + https + "}]\n", "https upstreams need identity"},
		{"bad auth", route("prefix: /v1/, auth: optional, " + https), `auth "optional"`},
		{"auth required without auth config", ident + "routes: [{prefix: /v1/, " + https + "}]\n", `route "/v1/" requires authentication`},
		{"tokens incomplete", ident + "auth: {tokens: {issuer: https://auth.example}}\nroutes: [{prefix: /v1/, " + https + "}]\n", "auth.tokens needs issuer, audience and jwks_url"},
		{"max_body words", route("prefix: /v1/, max_body: lots, " + https), "max_body"},
		{"max_body zero", route("prefix: /v1/, max_body: '0', " + https), "max_body"},
		{"max_body negative", route("prefix: /v1/, max_body: '-1KiB', " + https), "max_body"},
		{"max_body fraction", route("prefix: /v1/, max_body: 1.5MiB, " + https), "max_body"},
		{"max_body unit", route("prefix: /v1/, max_body: 1MB, " + https), "max_body"},
		{"max_body overflow", route("prefix: /v1/, max_body: 9223372036854775807GiB, " + https), "max_body"},
		{"timeout words", route("prefix: /v1/, timeout: soon, " + https), "timeout"},
		{"timeout zero", route("prefix: /v1/, timeout: 0s, " + https), "timeout"},
		{"timeout negative", route("prefix: /v1/, timeout: -1s, " + https), "timeout"},

		// CORS: a strict allow-list of origins as browsers send them.
		{"cors without origins", cors("allowed_methods: [GET]"), "allowed_origins is empty"},
		{"cors any origin", origin("*"), "wildcards are refused"},
		{"cors wildcard subdomain", origin("https://*.example.com"), "wildcards are refused"},
		{"cors http origin", origin("http://app.example.com"), "an http origin can be impersonated"},
		{"cors http origin named like loopback", origin("http://127.attacker.example"), "an http origin can be impersonated"},
		{"cors origin with path", origin("https://app.example.com/app"), "want scheme://host[:port]"},
		{"cors origin with slash", origin("https://app.example.com/"), "want scheme://host[:port]"},
		{"cors origin with query", origin("https://app.example.com?a=b"), "want scheme://host[:port]"},
		{"cors origin with userinfo", origin("https://user@app.example.com"), "want scheme://host[:port]"},
		{"cors origin without scheme", origin("app.example.com"), "want scheme://host[:port]"},
		{"cors null origin", origin("null"), "want scheme://host[:port]"},
		{"cors upper case origin", origin("https://App.Example.com"), `as browsers send it: "https://app.example.com"`},
		{"cors default port", origin("https://app.example.com:443"), `as browsers send it: "https://app.example.com"`},
		{"cors empty port", origin("https://app.example.com:"), `as browsers send it: "https://app.example.com"`},
		{"cors unicode host", origin("https://bücher.example"), "punycode"},
		{"cors bad max_age", cors("allowed_origins: [https://a.example], max_age: forever"), "max_age"},
		{"cors negative max_age", cors("allowed_origins: [https://a.example], max_age: -1m"), "max_age"},

		// Rate limits, checked by ratelimit.ParseConfig.
		{"ratelimit unknown field", limit("{name: a, rate: 1, by: [addr], burts: 2}"), "field burts not found"},
		{"ratelimit zero rate", limit("{name: a, rate: 0, by: [addr]}"), "rate 0"},
		{"ratelimit bad by", limit("{name: a, rate: 1, by: [user]}"), `by "user"`},
		{"ratelimit bad per", limit("{name: a, rate: 1, per: fortnight, by: [addr]}"), "per"},
		{"ratelimit bad name", limit("{name: 'A B', rate: 1, by: [addr]}"), "want a name"},
		{"ratelimit twice", limit("{name: a, rate: 1, by: [addr]}, {name: a, rate: 2, by: [addr]}"), "named twice"},
		{"ratelimit bad route", limit("{name: a, rate: 1, by: [route], routes: ['/{x']}"), "routes"},
		{"ratelimit bad proxy", open + "ratelimit: {trusted_proxies: [10.0.0.0/33]}\n", "trusted proxy"},
		{"ratelimit not a map", open + "ratelimit: 5\n", "ratelimit"},
		{"ratelimit_store without redis", open + "ratelimit_store: {prefix: rl}\n", "ratelimit_store needs redis"},
		{"ratelimit_store prefix with a brace", open + "ratelimit_store: {redis: 'redis://127.0.0.1:6379/0', prefix: 'rl:{gw}'}\n", "contains a brace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s\nroutes: %+v", tc.yaml, c.Routes)
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to start with \"gateway: \" and contain %q", err, tc.want)
			}
		})
	}
}

// Things close to the refusals that are fine.
func TestParseConfigAccepts(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"root prefix", "routes: [{prefix: /, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"prefix without slash", "routes: [{prefix: /status, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"prefix with punctuation", "routes: [{prefix: '/v1/a-b_c.d~e:f@g/', upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"http localhost", "routes: [{prefix: /v1/, upstream: 'http://localhost:8080', auth: none}]"},
		{"http ipv6 loopback", "routes: [{prefix: /v1/, upstream: 'http://[::1]:8080', auth: none}]"},
		{"http 127/8", "routes: [{prefix: /v1/, upstream: 'http://127.1.2.3:8080', auth: none}]"},
		{"cors loopback http origins", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\ncors: {allowed_origins: ['http://localhost:3000', 'http://127.0.0.1:5173', 'http://[::1]:8080']}"},
		{"cors https origin with port", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\ncors: {allowed_origins: ['https://app.example.com:8443'], max_age: 0s}"},
		{"tokens alone", "auth: {tokens: {issuer: a, audience: b, jwks_url: c}}\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080'}]"},
		{"empty ratelimit", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\nratelimit: {}"},
		{"access_log off", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\naccess_log: 'off'"},
		{"plain http on localhost", "listen: 'localhost:8080'\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"plain http on ipv6 loopback", "listen: '[::1]:8080'\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"tls on every address", "listen: ':8443'\ntls: {cert: c.pem, key: k.pem}\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"hosts", "hosts: [api.example.com, 'API.example.com:8443', '[::1]:8443', 127.0.0.1]\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]"},
		{"route options", "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, methods: [GET, PROPFIND], strip_prefix: true, websocket: true, forward_cookies: true}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.yaml)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzParseConfig checks that Parse never panics, and that what it
// accepts is what the gateway relies on: every route has a parsed
// upstream, https upstreams an ID and the gateway an identity, limits are
// positive, authentication can be done, CORS origins are exact; and that
// gateway.New builds it, given the dependencies its sections name.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"full.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"routes: [{prefix: /, upstream: 'http://127.0.0.1:1', auth: none}]",
		"routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:1', auth: none}, {prefix: /v1, upstream: 'http://localhost:2', auth: none}]",
		"routes: [{prefix: /healthz, upstream: 'http://127.0.0.1:1', auth: none}]",
		"routes: [{prefix: /ab/, upstream: 'http://127.0.0.1:1', auth: none}, {prefix: /a%62/, upstream: 'http://127.0.0.1:1', auth: none}]",
		"routes: [{prefix: /a/, upstream: 'http://127.0.0.1:1', auth: none, max_body: 8GiB, timeout: 1ns}]",
		"identity: {cert: a, key: b, roots: c}\nauth: {api_keys: {}}\nroutes: [{prefix: /x/, upstream: 'https://h', upstream_id: 'spiffe://t/w'}]",
		"routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\ncors: {allowed_origins: ['https://a.example'], allow_credentials: true, max_age: 1h}",
		"routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\nratelimit: {rules: [{name: a, rate: 1, by: [addr, route], routes: ['GET /v1/{id}']}]}",
		"listen: '[::1]:1'\nhosts: [a.example]\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, methods: [GET], strip_prefix: true, websocket: true}]",
		"identity: {cert: a, key: b, roots: c, renew: {url: 'https://cp/renew'}}\nauth: {api_keys: {}}\nroutes: [{prefix: /x/, upstream: 'https://h', upstream_id: 'spiffe://t/w'}]",
	} {
		f.Add([]byte(s))
	}
	// What New builds from the sections: the tests' stand-ins.
	pki := newTestPKI(f)
	deps := gateway.Options{
		APIKeys:  &apikey.Verifier{},
		Tokens:   &token.Validator{},
		Identity: pki.static(f, gatewayID),
		Roots:    pki.roots,
		Logger:   discardLog,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("a config and an error")
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		checkConfigInvariants(t, c)
		c.Warnings() // never panics
		d := deps
		d.Registry = prometheus.NewRegistry()
		g, err := gateway.New(c.Options(d))
		if err != nil {
			t.Fatalf("accepted, but the gateway cannot be built: %v", err)
		}
		g.Close()
	})
}

func checkConfigInvariants(t *testing.T, c *File) {
	t.Helper()
	if c.Listen == "" || c.AccessLog == "" || len(c.Routes) == 0 || len(c.routes) != len(c.Routes) {
		t.Fatalf("defaults missing: %+v", c)
	}
	if host, _, err := net.SplitHostPort(c.Listen); err != nil || c.TLS == nil && !httpx.IsLoopbackHost(host) {
		t.Fatalf("listen %q without tls", c.Listen)
	}
	prefixes := map[string]bool{}
	needAuth, needIdentity := false, false
	for i, r := range c.Routes {
		gr := c.routes[i]
		if gr.Upstream == nil || gr.Upstream.Host == "" {
			t.Fatalf("route %q: no parsed upstream", r.Prefix)
		}
		switch gr.Upstream.Scheme {
		case "https":
			needIdentity = true
			if gr.UpstreamID.IsZero() {
				t.Fatalf("route %q: https upstream without an ID", r.Prefix)
			}
		case "http":
			if !httpx.IsLoopbackHost(gr.Upstream.Hostname()) {
				t.Fatalf("route %q: plain http to %q", r.Prefix, gr.Upstream.Host)
			}
		default:
			t.Fatalf("route %q: scheme %q", r.Prefix, gr.Upstream.Scheme)
		}
		if gr.Prefix != r.Prefix || !strings.HasPrefix(r.Prefix, "/") || strings.ContainsAny(r.Prefix, "{}*% \t\r\n?#") || prefixes[r.Prefix] {
			t.Fatalf("route %q: prefix accepted", r.Prefix)
		}
		prefixes[r.Prefix] = true
		if r.Auth != "required" && r.Auth != "none" || gr.AllowAnonymous != (r.Auth == "none") {
			t.Fatalf("route %q: auth %q", r.Prefix, r.Auth)
		}
		needAuth = needAuth || r.Auth == "required"
		if gr.MaxBody < 0 || gr.Timeout < 0 {
			t.Fatalf("route %q: max_body %d, timeout %v", r.Prefix, gr.MaxBody, gr.Timeout)
		}
		for _, m := range gr.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") || m == "CONNECT" || m == "TRACE" {
				t.Fatalf("route %q: method %q", r.Prefix, m)
			}
		}
	}
	if needAuth && c.Auth.Tokens == nil && c.Auth.APIKeys == nil {
		t.Fatal("authentication required, but no way to authenticate")
	}
	if needIdentity && (c.Identity == nil || c.Identity.Cert == "" || c.Identity.Key == "" || c.Identity.Roots == "" && len(c.Identity.Bundles) == 0) {
		t.Fatal("https upstreams without an identity")
	}
	if c.CORS != nil {
		if len(c.CORS.AllowedOrigins) == 0 {
			t.Fatal("CORS without origins")
		}
		for _, o := range c.CORS.AllowedOrigins {
			if strings.Contains(o, "*") || o != strings.ToLower(o) || strings.Count(o, "/") != 2 {
				t.Fatalf("CORS origin %q accepted", o)
			}
		}
	}
	if c.LimitStore != nil && c.LimitStore.Redis == "" {
		t.Fatal("ratelimit_store without redis")
	}
}

// An unknown field is named with its line, the field it was perhaps meant
// to be, and the fields its section takes (second walkthrough 12).
func TestParseConfigSuggests(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listne: 127.0.0.1:1\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\n",
			"line 1: field listne not found; did you mean listen? (the top level takes listen, tls, hosts, admin_listen, identity, routes,"},
		{"routes:\n  - {prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none, max_bodi: 1KiB}\n",
			"line 2: field max_bodi not found; did you mean max_body? (a route takes prefix, upstream, upstream_id, auth, max_body, timeout, methods, strip_prefix, websocket, forward_cookies, scopes)"},
		{"identity: {cert: a, key: b, roots: c, renew: {uri: x}}\nroutes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\n",
			"field uri not found; did you mean url? (identity.renew takes url, roots)"},
		{"routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:8080', auth: none}]\nbogus_field: 1\n",
			"line 2: field bogus_field not found (the top level takes"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "edge.") || strings.Contains(err.Error(), "gateway.") {
			t.Errorf("%q:\n got %v\nwant it to contain %q (and no Go type name)", tc.yaml, err, tc.want)
		}
	}
}

// Usability 24: rules that can never apply are accepted, but said.
func TestConfigWarnings(t *testing.T) {
	const routes = "auth: {api_keys: {}}\nroutes:\n  - {prefix: /open/, upstream: 'http://127.0.0.1:8080', auth: none}\n  - {prefix: /v1/, upstream: 'http://127.0.0.1:8080'}\n  - {prefix: /oauth2/token, upstream: 'http://127.0.0.1:8080', auth: none}\n"
	for _, tc := range []struct {
		name, rules string
		want        string // "" for no warning
	}{
		{"every request", "{name: a, rate: 1, by: [addr]}", ""},
		{"a route's subtree", "{name: a, rate: 1, by: [addr], routes: ['POST /v1/swaps']}", ""},
		{"a wildcard under a route", "{name: a, rate: 1, by: [addr], routes: ['GET /v1/payments/{id}']}", ""},
		{"a route's exact path", "{name: a, rate: 1, by: [addr], routes: ['POST /oauth2/token']}", ""},
		{"a pattern wider than a route", "{name: a, rate: 1, by: [addr], routes: ['/oauth2/']}", ""},
		{"no route", "{name: a, rate: 1, by: [addr], routes: ['POST /admin/']}", `ratelimit rule a: routes ["POST /admin/"] match no route of this gateway: it never applies`},
		{"a lower-case method", "{name: a, rate: 1, by: [addr], routes: ['post /v1/']}", "ratelimit rule a: route \"post /v1/\": methods are case-sensitive"},
		{"business rules are the services'", "{name: swap, kind: business, rate: 1}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(routes + "ratelimit: {rules: [" + tc.rules + "]}\n"))
			if err != nil {
				t.Fatal(err)
			}
			w := c.Warnings()
			if tc.want == "" && len(w) != 0 || tc.want != "" && (len(w) != 1 || !strings.HasPrefix(w[0], tc.want)) {
				t.Errorf("warnings %q, want %q", w, tc.want)
			}
		})
	}
	c, err := Parse([]byte("routes: [{prefix: /open/, upstream: 'http://127.0.0.1:8080', auth: none}]\nratelimit: {rules: [{name: per-client, rate: 1, by: [client]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "keyed by client, but no route authenticates") {
		t.Errorf("warnings %q", w)
	}
}
