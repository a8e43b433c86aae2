package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
	"github.com/rampartsec/rampart/mtls"
)

// logBuffer collects a child process's stderr for tests that wait for a
// line.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is rampart running in a child process.
type proc struct {
	cmd  *exec.Cmd
	log  logBuffer
	done chan struct{} // closed when it has exited, err set
	err  error
}

// startCLI runs rampart ARGS in a child process (the test binary, see
// TestMain) and waits until its stderr matches each of ready, returning
// the first submatch of each (each must have one).
func startCLI(t *testing.T, ready []string, args ...string) (*proc, []string) {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "RAMPART_TEST_RUN_CLI=1", "RAMPART_ADMIN_TOKEN="+serveToken)
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("rampart %s:\n%s", strings.Join(args, " "), p.log.String())
		}
	})
	var got []string
	for _, r := range ready {
		m := p.waitFor(t, 0, regexp.MustCompile(r))
		got = append(got, m[1])
	}
	return p, got
}

// waitFor waits up to 20 s for re to match the log after offset from
// (logLen before a signal, so that an earlier line does not count) and
// returns the match and its submatches.
func (p *proc) waitFor(t *testing.T, from int, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.log.String()
		if m := re.FindStringSubmatch(s[from:]); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("rampart exited (%v) before logging %s:\n%s", p.err, re, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rampart did not log %s within 20 s:\n%s", re, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLen is the log's length: an offset for waitFor.
func (p *proc) logLen() int { return len(p.log.String()) }

// exit waits up to 40 s for the process to exit and returns its error.
func (p *proc) exit(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(40 * time.Second):
		t.Fatal("rampart did not exit within 40 s")
		return nil
	}
}

// writeAtomic replaces a file by renaming a new one into place, as the
// gateway's documentation asks.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s: no certificate", file)
	}
	return pool
}

func spiffeID(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ledger is a payment service behind the gateway: mutual TLS only, for
// the gateway's SPIFFE ID. It answers what it saw as JSON; /v1/slow waits
// for release.
type ledger struct {
	addr    string
	entered chan struct{}
	release chan struct{}
}

type ledgerSaw struct {
	Path   string `json:"path"`
	Peer   string `json:"peer"`
	Bytes  int64  `json:"bytes"`
	HasKey bool   `json:"has_key"`
}

func startLedger(t *testing.T, certFile, keyFile string, roots x509bundle.Source, gatewayID string) *ledger {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cert := &mtls.Reloader{CertFile: certFile, KeyFile: keyFile, Logger: discardLogger()}
	if err := cert.Start(ctx); err != nil {
		t.Fatal(err)
	}
	l := &ledger{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := &http.Server{
		TLSConfig: mtls.ServerConfig(cert, roots, spiffeID(t, gatewayID)),
		ErrorLog:  log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/slow" {
				l.entered <- struct{}{}
				<-l.release
			}
			n, _ := io.Copy(io.Discard, r.Body)
			id, _ := mtls.IDOf(r.TLS.PeerCertificates[0])
			json.NewEncoder(w).Encode(ledgerSaw{Path: r.URL.Path, Peer: id.String(), Bytes: n, HasKey: r.Header.Get("X-API-Key") != ""})
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	l.addr = ln.Addr().String()
	return l
}

// The gateway as an operator runs it: a CA, certificates and an API key
// made with the command line; TLS in front, mutual TLS to a service;
// certificate files replaced while it serves; SIGHUP with a good, a
// broken and an unappliable configuration; SIGTERM with a request in
// flight.
func TestGatewayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway and a service")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := func(name string) string { return filepath.Join(dir, name) }
	runCLI(t, "ca", "init", "--trust-domain", "pay.test", "--data", data)
	issue := func(id, out string) {
		runCLI(t, "ca", "issue", "--id", id, "--dns", "localhost", "--ttl", "1h", "--out", file(out), "--data", data)
	}
	issue("spiffe://pay.test/edge", "edge")       // the TLS certificate clients see
	issue("spiffe://pay.test/gateway", "gateway") // the gateway's service identity
	issue("spiffe://pay.test/ledger", "ledger")
	runCLI(t, "client", "create", "shop", "--init", "--data", data, "--scopes", "payment.read")
	key := strings.TrimSpace(runCLI(t, "apikey", "create", "--client", "shop", "--data", data))
	rootFile := filepath.Join(data, "ca", "root.pem")
	roots := readPool(t, rootFile)
	bundles, err := mtls.LoadBundles(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	up := startLedger(t, file("ledger.pem"), file("ledger.key"), bundles, "spiffe://pay.test/gateway")

	config := file("gateway.yaml")
	writeConfig := func(maxBody, more string, auth string) {
		if auth == "" {
			auth = fmt.Sprintf("api_keys: {data_dir: %q}", data)
		}
		writeAtomic(t, config, fmt.Appendf(nil, `listen: 127.0.0.1:0
tls: {cert: %q, key: %q}
admin_listen: 127.0.0.1:0
identity: {cert: %q, key: %q, roots: %q}
routes:
  - prefix: /v1/
    upstream: https://%s
    upstream_id: spiffe://pay.test/ledger
    max_body: %s
%s
auth:
  %s
access_log: stderr
`, file("edge.pem"), file("edge.key"), file("gateway.pem"), file("gateway.key"), rootFile, up.addr, maxBody, more, auth))
	}
	writeConfig("1KiB", "", "")
	gw, addrs := startCLI(t, []string{
		`rampart: gateway metrics at http://(\S+)/metrics\n`,
		`rampart: gateway listening on https://(\S+)\n`,
	}, "gateway", "--config", config)
	admin, base := "http://"+addrs[0], "https://"+addrs[1]

	// Each client has its own connections: a new one handshakes anew.
	newClient := func() *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "localhost"},
			ForceAttemptHTTP2: true,
		}}
	}
	client := newClient()
	call := func(method, path, apiKey string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if apiKey != "" {
			req.Header.Set("X-API-Key", apiKey)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	expect := func(method, path, apiKey string, body []byte, want int) ledgerSaw {
		t.Helper()
		resp, b := call(method, path, apiKey, body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		var saw ledgerSaw
		if want == http.StatusOK && strings.HasPrefix(path, "/v") {
			if err := json.Unmarshal(b, &saw); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
		return saw
	}

	// An API key made by the CLI gets through, over HTTP/2, to the
	// service, which sees the gateway's identity and the key (every
	// control exists twice).
	resp, b := call("GET", "/v1/payments", key, nil)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("GET /v1/payments with a key: %s %d %s", resp.Proto, resp.StatusCode, b)
	}
	var saw ledgerSaw
	json.Unmarshal(b, &saw)
	if want := (ledgerSaw{Path: "/v1/payments", Peer: "spiffe://pay.test/gateway", HasKey: true}); saw != want {
		t.Fatalf("the service saw %+v, want %+v", saw, want)
	}
	resp, b = call("GET", "/v1/payments", "", nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("without a key: %d %v %s, want 401 with WWW-Authenticate", resp.StatusCode, resp.Header, b)
	}
	expect("GET", "/v1/payments", "rk_live_"+strings.Repeat("A", 49), nil, http.StatusUnauthorized)
	expect("POST", "/v1/payments", key, make([]byte, 2048), http.StatusRequestEntityTooLarge)
	expect("GET", "/v2/payments", key, nil, http.StatusNotFound)
	expect("GET", "/healthz", "", nil, http.StatusOK)
	expect("GET", "/metrics", "", nil, http.StatusNotFound) // metrics only on admin_listen

	// Metrics on the admin listener.
	mresp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`rampart_gateway_requests_total{code="200",route="/v1/"} 1`,
		`rampart_gateway_requests_total{code="401",route="/v1/"} 2`,
		`rampart_gateway_requests_total{code="413",route="/v1/"} 1`,
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A new TLS certificate renamed into place: new handshakes get it,
	// without a restart.
	servedSerial := func() string {
		c := newClient()
		defer c.CloseIdleConnections()
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Text(16)
	}
	before := servedSerial()
	issue("spiffe://pay.test/edge", "edge2")
	edge2, err := tls.LoadX509KeyPair(file("edge2.pem"), file("edge2.key"))
	if err != nil {
		t.Fatal(err)
	}
	want := edge2.Leaf.SerialNumber.Text(16)
	if want == before {
		t.Fatal("the new certificate has the old serial")
	}
	for _, f := range []string{"edge.key", "edge.pem"} {
		if err := os.Rename(file(strings.Replace(f, "edge", "edge2", 1)), file(f)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for servedSerial() != want {
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the certificate files changed, the gateway still serves serial %s, want %s", before, want)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// SIGHUP applies a new route and a larger body limit.
	writeConfig("4KiB", fmt.Sprintf("  - {prefix: /v2/, upstream: \"https://%s\", upstream_id: \"spiffe://pay.test/ledger\", auth: none}", up.addr), "")
	mark := gw.logLen()
	gw.cmd.Process.Signal(syscall.SIGHUP)
	gw.waitFor(t, mark, regexp.MustCompile(`"msg":"configuration reloaded"`))
	if saw := expect("POST", "/v1/payments", key, make([]byte, 2048), http.StatusOK); saw.Bytes != 2048 {
		t.Errorf("the service got %d bytes of 2048", saw.Bytes)
	}
	if saw := expect("GET", "/v2/open", "", nil, http.StatusOK); saw.Path != "/v2/open" {
		t.Errorf("the new route reached %+v", saw)
	}

	// A broken configuration: logged, the one in use kept.
	writeAtomic(t, config, []byte("routes: [\n"))
	mark = gw.logLen()
	gw.cmd.Process.Signal(syscall.SIGHUP)
	gw.waitFor(t, mark, regexp.MustCompile(`"level":"ERROR","msg":"reload failed; keeping the configuration in use","err":".*gateway.yaml: gateway: `))
	expect("GET", "/v2/open", "", nil, http.StatusOK)
	expect("GET", "/v1/payments", key, nil, http.StatusOK)

	// A configuration that changes what only applies at start (here,
	// API keys traded for tokens) is refused, not half applied: the
	// keys keep working, and the log says to restart.
	writeConfig("4KiB", "", `tokens: {issuer: "https://cp.pay.test", audience: rampart, jwks_url: "https://cp.pay.test/jwks"}`)
	mark = gw.logLen()
	gw.cmd.Process.Signal(syscall.SIGHUP)
	gw.waitFor(t, mark, regexp.MustCompile(`"msg":"reload failed; keeping the configuration in use","err":".*gateway.yaml: auth: changed, applied only at start; restart the gateway"`))
	expect("GET", "/v1/payments", key, nil, http.StatusOK)
	expect("GET", "/v2/open", "", nil, http.StatusOK)

	// SIGTERM with a request in flight: it completes, new connections
	// are refused, exit status 0.
	type result struct {
		code int
		body []byte
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/v1/slow", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := newClient().Do(req)
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, b, err}
	}()
	select {
	case <-up.entered:
	case r := <-slow:
		t.Fatalf("the slow request ended early: %+v", r)
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request did not reach the service")
	}
	mark = gw.logLen()
	gw.cmd.Process.Signal(syscall.SIGTERM)
	gw.waitFor(t, mark, regexp.MustCompile(`rampart: shutting down\n`))
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addrs[1], time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("10 s after SIGTERM the gateway still accepts connections")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-gw.done:
		t.Fatalf("the gateway exited (%v) with a request in flight", gw.err)
	default:
	}
	close(up.release)
	r := <-slow
	if r.err != nil || r.code != http.StatusOK || !bytes.Contains(r.body, []byte(`"path":"/v1/slow"`)) {
		t.Errorf("the request in flight during shutdown: %d %s %v", r.code, r.body, r.err)
	}
	if err := gw.exit(t); err != nil {
		t.Errorf("rampart gateway after SIGTERM: %v, want exit status 0", err)
	}

	// The access log names the client, never its key.
	logs := gw.log.String()
	if !strings.Contains(logs, `"msg":"request","method":"GET","path":"/v1/payments","route":"/v1/","status":200`) || !strings.Contains(logs, `"client":"shop"`) {
		t.Errorf("no access log line for the authenticated request")
	}
	if strings.Contains(logs, key) || strings.Contains(logs, key[len(key)-12:]) {
		t.Errorf("the log holds the API key")
	}
}

// The access log file is reopened on SIGHUP, so that rotation by
// renaming (logrotate without copytruncate) loses nothing; a second
// SIGTERM does not wait for requests in flight.
func TestGatewayAccessLogRotation(t *testing.T) {
	dir := t.TempDir()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/hang" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "{}\n")
	}))
	defer upstream.Close()
	conf := filepath.Join(dir, "gateway.yaml")
	logFile := filepath.Join(dir, "access.log")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
access_log: access.log
routes:
  - {prefix: /v1/, upstream: %q, auth: none}
`, upstream.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, m := startCLI(t, []string{`gateway listening on http://(127\.0\.0\.1:\d+)`}, "gateway", "--config", conf)
	base := "http://" + m[0]
	get := func(path string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The access line is written after the response; wait for it.
	waitLine := func(file, path string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			data, _ := os.ReadFile(file)
			if strings.Contains(string(data), `"path":"`+path+`"`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no line for %s in %q", file, path, data)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	get("/v1/before")
	waitLine(logFile, "/v1/before")

	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	mark := gw.logLen()
	gw.cmd.Process.Signal(syscall.SIGHUP)
	gw.waitFor(t, mark, regexp.MustCompile(`configuration reloaded`))
	get("/v1/after")
	waitLine(logFile, "/v1/after")
	if data, _ := os.ReadFile(logFile + ".1"); strings.Contains(string(data), "/v1/after") {
		t.Errorf("the rotated file got a line written after SIGHUP")
	}

	// A request that never ends holds the first SIGTERM's shutdown; a
	// second SIGTERM ends it at once.
	go http.Get(base + "/v1/hang")
	waitLine(logFile, "/v1/after") // (the hang is logged only when it ends)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	gw.cmd.Process.Signal(syscall.SIGTERM)
	gw.waitFor(t, 0, regexp.MustCompile(`rampart: shutting down`))
	gw.cmd.Process.Signal(syscall.SIGTERM)
	if err := gw.exit(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("forced shutdown took %v", d)
	}
}

// Two gateways with one ratelimit_store share their limits through
// Redis: a client gets the rule's budget once, not once per instance, and
// its keys are in Redis under the configured prefix. Needs
// RAMPART_TEST_REDIS (a redis:// URL).
func TestGatewaysShareLimitsThroughRedis(t *testing.T) {
	redisURL := os.Getenv("RAMPART_TEST_REDIS")
	if redisURL == "" {
		t.Skip("RAMPART_TEST_REDIS is not set")
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("RAMPART_TEST_REDIS: %v", err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() }) // after the keys are deleted (cleanups run last first)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v", opts.Addr, err)
	}
	prefix := fmt.Sprintf("rampart:test:gw:%d", time.Now().UnixNano())
	keys := func() []string {
		t.Helper()
		ks, err := rdb.Keys(ctx, prefix+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	t.Cleanup(func() {
		if ks := keys(); len(ks) > 0 {
			rdb.Del(ctx, ks...)
		}
	})

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "{}\n")
	}))
	defer upstream.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
access_log: "off"
routes:
  - {prefix: /v1/, upstream: %q, auth: none}
ratelimit:
  rules:
    - {name: per-address, rate: 6, per: 1m, by: [addr]}
ratelimit_store: {redis: %q, prefix: %q}
`, upstream.URL, redisURL, prefix)), 0o600); err != nil {
		t.Fatal(err)
	}
	var bases []string
	for range 2 {
		_, m := startCLI(t, []string{`gateway listening on http://(127\.0\.0\.1:\d+)`}, "gateway", "--config", conf)
		bases = append(bases, "http://"+m[0])
	}

	// Alternate between the two: six pass, the seventh is refused by
	// whichever instance gets it, with the shared state in its headers.
	for i := range 8 {
		resp, err := http.Get(bases[i%2] + "/v1/payments")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := http.StatusOK
		if i >= 6 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d, to instance %d: %d (RateLimit %q), want %d", i+1, i%2+1, resp.StatusCode, resp.Header.Get("RateLimit"), want)
		}
		if i < 6 {
			if got, wantField := resp.Header.Get("RateLimit"), fmt.Sprintf(`"per-address";r=%d;`, 5-i); !strings.HasPrefix(got, wantField) {
				t.Errorf("request %d: RateLimit %q, want it to start %q", i+1, got, wantField)
			}
		} else if resp.Header.Get("Retry-After") == "" {
			t.Errorf("request %d: 429 without Retry-After", i+1)
		}
	}
	if ks := keys(); len(ks) != 1 || !strings.HasPrefix(ks[0], prefix+":{per-address:") {
		t.Errorf("keys under %s: %v, want the one per-address key", prefix, ks)
	}
}

// rampart gateway as operators run it answers every ambiguously framed
// request once and closes the connection (issue 10 §1, RFC 9112 §6.1):
// the guard is in the server it builds, over raw sockets.
func TestGatewayFraming(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "{}\n")
	}))
	defer upstream.Close()
	conf := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: 127.0.0.1:0\naccess_log: \"off\"\nroutes:\n  - {prefix: /open/, upstream: %q, auth: none}\n", upstream.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, m := startCLI(t, []string{`gateway listening on http://(127\.0\.0\.1:\d+)`}, "gateway", "--config", conf)
	dial := func() (net.Conn, error) { return net.Dial("tcp", m[0]) }
	httpxtest.Check(t, dial, "/open/a")
	httpxtest.KeepAlive(t, dial, "/open/a")
}

// SIGHUP by the PID in --pid-file reloads the gateway, whose log says
// what changed; the file is removed at exit (usability 5).
func TestGatewayPIDFileReload(t *testing.T) {
	dir := t.TempDir()
	conf, pidFile := filepath.Join(dir, "gateway.yaml"), filepath.Join(dir, "gateway.pid")
	write := func(routes string) {
		writeAtomic(t, conf, []byte("listen: 127.0.0.1:0\naccess_log: \"off\"\nroutes:\n"+routes))
	}
	write("  - {prefix: /v1/, upstream: 'http://127.0.0.1:1', auth: none}\n  - {prefix: /old/, upstream: 'http://127.0.0.1:1', auth: none}\n")
	gw, _ := startCLI(t, []string{`(gateway listening on)`}, "gateway", "--config", conf, "--pid-file", pidFile)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid != gw.cmd.Process.Pid {
		t.Fatalf("pid file %q, want %d", data, gw.cmd.Process.Pid)
	}
	write("  - {prefix: /v1/, upstream: 'http://127.0.0.1:1', auth: none, timeout: 5s}\n  - {prefix: /new/, upstream: 'http://127.0.0.1:1', auth: none}\n")
	mark := gw.logLen()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	gw.waitFor(t, mark, regexp.MustCompile(`"msg":"configuration reloaded","file":"[^"]*gateway.yaml","changed":"routes ~/v1/ \+/new/ -/old/"`))
	mark = gw.logLen()
	syscall.Kill(pid, syscall.SIGHUP)
	gw.waitFor(t, mark, regexp.MustCompile(`"msg":"configuration reloaded","file":"[^"]*","changed":"nothing"`))
	gw.cmd.Process.Signal(syscall.SIGTERM)
	if err := gw.exit(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("the PID file outlived the gateway: %v", err)
	}
}
