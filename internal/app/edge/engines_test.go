package edge

// End to end with the real engines: Debian's nginx and Caddy in front of
// a local service, rampart authz behind them, each engine configured by
// EngineConfig (rampart authz --print-config). The binaries are named by
// RAMPART_TEST_NGINX and RAMPART_TEST_CADDY (.ci/run installs them); the
// test skips without them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/util/secrets"
)

// keysDir is a control plane's data directory with the client shop
// (payment.read, payment.write), a key, and a key rotated out an hour
// ago with a day's grace.
type keysDir struct {
	dir, key, rotated string
}

func newKeysDir(t *testing.T) keysDir {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	master, err := secrets.Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := backend.Open(ctx, filepath.Join(dir, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := secrets.Verify(ctx, store.MasterKeyRecords(st), master); err != nil {
		t.Fatal(err)
	}
	m := &apikey.Manager{Store: st.APIKeys(), Pepper: master.Key(secrets.APIKeyPepper)}
	if _, err := m.CreateClient(ctx, apikey.Client{ID: "shop", Scopes: []string{"payment.read", "payment.write"}}); err != nil {
		t.Fatal(err)
	}
	k, _, err := m.Create(ctx, "shop", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	old, rec, err := m.Create(ctx, "shop", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Rotate(ctx, rec.ID, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	return keysDir{dir: dir, key: k.String(), rotated: old.String()}
}

// identityEcho is the service: it echoes the identity headers it got,
// and the credential headers, as JSON.
type identityEcho struct {
	mu   sync.Mutex
	seen []http.Header
	URL  string
}

func startIdentityEcho(t *testing.T) *identityEcho {
	t.Helper()
	e := &identityEcho{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

func (e *identityEcho) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func freeTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func freeAddr(t *testing.T) string {
	ln := freeTCP(t)
	defer ln.Close()
	return ln.Addr().String()
}

// authzYAML is rampart authz's file for the tests; store is a
// ratelimit_store section or "".
func authzYAML(keys, httpAddr, store string) string {
	return fmt.Sprintf(`routes:
  - {prefix: /v1/, scopes: [payment.read]}
  - {prefix: /v1/withdrawals, scopes: [payment.withdraw]}
  - {prefix: /open/, auth: none}
ratelimit:
  rules:
    - {name: per-client, rate: 4, per: 1m, by: [client]}
%s
auth:
  api_keys: {data_dir: %s}
authz:
  http: {listen: %s}
`, store, keys, httpAddr)
}

// startAuthz runs rampart authz of yml on its http listener.
func startAuthz(t *testing.T, dir, yml string) *Authz {
	t.Helper()
	file := filepath.Join(dir, "authz.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadAuthz(file)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthz(context.Background(), AuthzOptions{Options: Options{File: f, Logger: discardLog, Warn: func(string) {}}})
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Close() })
	return a
}

// engine is a running nginx or Caddy.
type engine struct {
	name string
	URL  string
}

func startNginx(t *testing.T, conf string) *engine {
	t.Helper()
	bin := os.Getenv("RAMPART_TEST_NGINX")
	if bin == "" {
		t.Skip("RAMPART_TEST_NGINX is not set (/usr/sbin/nginx, Debian's nginx)")
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	conf = strings.Replace(conf, "listen 127.0.0.1:8080;", "listen "+listen+";", 1)
	main := fmt.Sprintf(`worker_processes 1;
daemon off;
error_log %[1]s/error.log;
pid %[1]s/nginx.pid;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
%[2]s
}
`, dir, conf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out := &strings.Builder{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx: %s%s", out.String(), b)
		}
	})
	waitListening(t, listen)
	return &engine{name: "nginx", URL: "http://" + listen}
}

func startCaddy(t *testing.T, conf string) *engine {
	t.Helper()
	bin := os.Getenv("RAMPART_TEST_CADDY")
	if bin == "" {
		t.Skip("RAMPART_TEST_CADDY is not set (/usr/bin/caddy, Debian's caddy)")
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	conf = strings.Replace(conf, "http://127.0.0.1:8080", "http://"+listen, 1)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out := &strings.Builder{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("caddy: %s", out.String())
		}
	})
	waitListening(t, listen)
	return &engine{name: "caddy", URL: "http://" + listen}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 10 s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *engine) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", e.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestEngines: nginx and Caddy in front of rampart authz refuse and
// allow as rampart gateway does, and the service gets the caller's
// identity and never a client's copy of it.
func TestEngines(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"nginx", "caddy"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			keys := newKeysDir(t)
			svc := startIdentityEcho(t)
			a := startAuthz(t, t.TempDir(), authzYAML(keys.dir, "127.0.0.1:0", ""))
			f, err := ParseAuthz([]byte(authzYAML(keys.dir, a.HTTPAddr().String(), "")))
			if err != nil {
				t.Fatal(err)
			}
			conf, err := f.EngineConfig(name, EngineOptions{Upstream: svc.URL})
			if err != nil {
				t.Fatal(err)
			}
			var e *engine
			if name == "nginx" {
				e = startNginx(t, conf)
			} else {
				e = startCaddy(t, conf)
			}
			engineChecks(t, e, svc, keys)
		})
	}
}

func engineChecks(t *testing.T, e *engine, svc *identityEcho, keys keysDir) {
	// No key: 401 with the RFC 6750 challenge, nothing reaches the
	// service.
	resp, body := e.do(t, "GET", "/v1/accounts", "X-Rampart-Client", "forged")
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="rampart"`) {
		t.Fatalf("no key: %d %v %s, want 401 with a Bearer challenge (RFC 6750 §3)", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(body, "an API key is required") {
		t.Errorf("no key: body %s, want the gateway's description", body)
	}
	// A wrong scope: 403 insufficient_scope.
	resp, body = e.do(t, "POST", "/v1/withdrawals", "X-API-Key", keys.key)
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("a wrong scope: %d %v %s, want 403 insufficient_scope (RFC 6750 §3.1)", resp.StatusCode, resp.Header, body)
	}
	if n := svc.count(); n != 0 {
		t.Fatalf("the service saw %d refused requests", n)
	}
	// Allowed: the identity, and not the client's forged copies.
	resp, body = e.do(t, "GET", "/v1/accounts", "X-API-Key", keys.key, "X-Rampart-Client", "forged", "X-Rampart-Scopes", "payment.withdraw", "X-Rampart-Subject", "admin", "Cookie", "session=1")
	if resp.StatusCode != 200 {
		t.Fatalf("a valid key: %d %s", resp.StatusCode, body)
	}
	var h http.Header
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if got := h.Values("X-Rampart-Client"); len(got) != 1 || got[0] != "shop" {
		t.Errorf("X-Rampart-Client %q, want only shop", got)
	}
	if got := h.Values("X-Rampart-Scopes"); len(got) != 1 || got[0] != "payment.read payment.write" {
		t.Errorf("X-Rampart-Scopes %q", got)
	}
	if got := h.Values("X-Rampart-Subject"); len(got) != 1 || got[0] != "shop" {
		t.Errorf("X-Rampart-Subject %q: the client's copy reached the service", got)
	}
	if got := h.Values("Cookie"); len(got) != 0 {
		t.Errorf("Cookie %q reached the service on a route without forward_cookies", got)
	}
	// Anonymous: no identity at all reaches the service, forged or not.
	_, body = e.do(t, "GET", "/open/x", "X-Rampart-Client", "forged")
	if strings.Contains(body, "forged") {
		t.Errorf("anonymous route: the service got the client's identity header: %s", body)
	}
	// A rotated key in its grace period works, and says so.
	resp, body = e.do(t, "GET", "/v1/accounts", "X-API-Key", keys.rotated)
	if resp.StatusCode != 200 {
		t.Fatalf("a rotated key in its grace period: %d %s", resp.StatusCode, body)
	}
	if e.name == "nginx" && (resp.Header.Get("Sunset") == "" || resp.Header.Get("Deprecation") == "") {
		t.Errorf("a rotated key: no Deprecation and Sunset (RFC 9745, RFC 8594) in %v", resp.Header)
	}
	// The limit: 4 per minute per client (both keys are shop's); 2
	// used, the 3rd and 4th pass, the 5th is 429 with Retry-After and
	// the rule.
	for i := 3; i <= 4; i++ {
		if resp, _ = e.do(t, "GET", "/v1/accounts", "X-API-Key", keys.key); resp.StatusCode != 200 {
			t.Fatalf("request %d of the client: %d", i, resp.StatusCode)
		}
	}
	resp, body = e.do(t, "GET", "/v1/accounts", "X-API-Key", keys.key)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"rule":"per-client"`) {
		t.Fatalf("5th request: %d %v %s, want 429 with Retry-After and the problem details", resp.StatusCode, resp.Header, body)
	}
}

// TestEnginesShareLimits: two rampart authz instances behind two nginx
// share one limit through Redis.
func TestEnginesShareLimits(t *testing.T) {
	t.Parallel()
	redisURL := os.Getenv("RAMPART_TEST_REDIS")
	if redisURL == "" {
		t.Skip("RAMPART_TEST_REDIS is not set")
	}
	keys := newKeysDir(t)
	svc := startIdentityEcho(t)
	prefix := "rampart:test:engines:" + filepath.Base(t.TempDir())
	storeYAML := fmt.Sprintf("ratelimit_store: {redis: %q, prefix: %q}", redisURL, prefix)
	t.Cleanup(func() {
		o, err := redis.ParseURL(redisURL)
		if err != nil {
			return
		}
		rc := redis.NewClient(o)
		defer rc.Close()
		ctx := context.Background()
		if ks, _ := rc.Keys(ctx, prefix+"*").Result(); len(ks) > 0 {
			rc.Del(ctx, ks...)
		}
	})
	var engines []*engine
	for range 2 {
		a := startAuthz(t, t.TempDir(), authzYAML(keys.dir, "127.0.0.1:0", storeYAML))
		f, err := ParseAuthz([]byte(authzYAML(keys.dir, a.HTTPAddr().String(), storeYAML)))
		if err != nil {
			t.Fatal(err)
		}
		conf, err := f.EngineConfig("nginx", EngineOptions{Upstream: svc.URL})
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, startNginx(t, conf))
	}
	var codes []int
	for i := range 6 {
		resp, _ := engines[i%2].do(t, "GET", "/v1/accounts", "X-API-Key", keys.key)
		codes = append(codes, resp.StatusCode)
	}
	want := []int{200, 200, 200, 200, 429, 429}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("alternating between two instances: %v, want %v (one limit of 4 per minute)", codes, want)
	}
}
