package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
	"github.com/rampartsec/rampart/internal/util/secrets"
)

// controlPlane is a control plane's data directory, as rampart serve
// leaves it: a master key, a database with a client and an API key.
func controlPlane(t *testing.T) (dir, key string) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
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
	if _, err := m.CreateClient(ctx, apikey.Client{ID: "shop", Scopes: []string{"payment.read"}}); err != nil {
		t.Fatal(err)
	}
	k, _, err := m.Create(ctx, "shop", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, k.String()
}

// syncBuffer is a log sink read while servers write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The edge as rampart gateway builds it, from Options, without a process:
// TLS in front, API keys checked in the control plane's database, mutual
// TLS with the service certificate of the file to an https upstream, a
// plain loopback one, the admin listener and the access log file. One
// request goes through every part.
func TestEdge(t *testing.T) {
	t.Parallel()
	cp, key := controlPlane(t)
	pki := newTestPKI(t)
	dir := t.TempDir()
	up := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
	plain := startPlainUpstream(t)
	identity, identityKey, rootsFile := pki.writeIdentity(t, dir, "gateway-svc", gatewayID)
	writePair(t, filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key"), issueAt(t, pki.ca, gatewayID, time.Now(), time.Hour, "localhost"))
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
tls: {cert: tls.pem, key: tls.key}
admin_listen: 127.0.0.1:0
identity: {cert: %s, key: %s, roots: %s}
routes:
%s  - {prefix: /open/, upstream: %q, auth: none}
ratelimit:
  rules:
    - {name: tokens, rate: 10, by: [addr], routes: ["POST /oauth2/token"]}
auth:
  api_keys: {data_dir: %s}
access_log: access.log
`, identity, identityKey, rootsFile, httpsRoute("/v1/", up.URL), plain.URL, cp)
	var warnings []string
	logs := &syncBuffer{}
	e, err := buildEdge(t, dir, yml, func(o *Options) {
		o.Listener = nil // the file's listen
		o.Warn = func(msg string) { warnings = append(warnings, msg) }
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve() }()
	defer func() {
		if err := e.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	if len(warnings) != 1 || !strings.Contains(warnings[0], "ratelimit rule tokens") {
		t.Errorf("warnings %q, want the rule that never applies", warnings)
	}
	if !strings.HasPrefix(e.URL(), "https://127.0.0.1:") || e.AdminAddr() == nil {
		t.Fatalf("URL %s, admin %v", e.URL(), e.AdminAddr())
	}

	roots := x509.NewCertPool()
	roots.AddCert(pki.ca.Root)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: true}}
	get := func(path, apiKey string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.URL()+path, nil)
		if apiKey != "" {
			req.Header.Set("X-API-Key", apiKey)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get("/v1/payments", key)
	wantStatus(t, resp, body, http.StatusOK)
	if resp.ProtoMajor != 2 {
		t.Errorf("%s, want HTTP/2", resp.Proto)
	}
	s := echoed(t, body)
	if want := e.Identity().Certificate().Leaf.SerialNumber.String(); s.Path != "/v1/payments" || !s.HasKey || s.PeerSerial != want {
		t.Errorf("the upstream saw %+v, want the key and the gateway's certificate %s", s, want)
	}
	resp, body = get("/v1/payments", "")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = get("/open/status", "")
	wantStatus(t, resp, body, http.StatusOK)

	mresp, err := http.Get("http://" + e.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	// The admin listener answers ambiguously framed requests once and
	// closes too (issue 10 §1, RFC 9112 §6.1), over raw sockets.
	adminDial := func() (net.Conn, error) { return net.Dial("tcp", e.AdminAddr().String()) }
	httpxtest.Check(t, adminDial, "/metrics")
	httpxtest.KeepAlive(t, adminDial, "/metrics")
	if !bytes.Contains(metrics, []byte(`rampart_gateway_requests_total{code="200",route="/v1/"} 1`)) {
		t.Errorf("/metrics lacks the request:\n%s", metrics)
	}
	eventually(t, "the access log line", func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		return bytes.Contains(data, []byte(`"path":"/v1/payments","route":"/v1/","status":200`)) && bytes.Contains(data, []byte(`"client":"shop"`))
	})
	if strings.Contains(logs.String(), `"msg":"request"`) {
		t.Error("the access log went to the logs too")
	}
	if !strings.Contains(logs.String(), `"certificate":"identity"`) || !strings.Contains(logs.String(), `"certificate":"tls"`) {
		t.Errorf("the logs do not say which certificate was loaded:\n%s", logs)
	}
}

// A reload applies what it may and refuses what applies only at start
// (startOnly), keeping the configuration in use; the log says what
// changed.
func TestReloadRules(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	dir := t.TempDir()
	// yml is a file with routes and these settings, besides listen and
	// access_log.
	yml := func(routes string, settings ...string) string {
		s := map[string]string{"listen": "127.0.0.1:0", "access_log": "'off'"}
		for i := 0; i+1 < len(settings); i += 2 {
			s[settings[i]] = settings[i+1]
		}
		var out string
		for _, k := range []string{"listen", "tls", "admin_listen", "auth", "ratelimit_store", "access_log"} {
			if v, ok := s[k]; ok {
				out += k + ": " + v + "\n"
			}
		}
		return out + "routes:\n" + routes
	}
	route := func(prefix string, extra ...string) string {
		return fmt.Sprintf("  - {prefix: %s, upstream: %q, auth: none%s}\n", prefix, up.URL, strings.Join(extra, ""))
	}
	logs := &syncBuffer{}
	te := startEdge(t, dir, yml(route("/v1/")+route("/old/")), func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })

	for _, tc := range []struct{ name, value string }{
		{"listen", "127.0.0.2:0"},
		{"tls", "{cert: c.pem, key: k.pem}"},
		{"admin_listen", "127.0.0.1:0"},
		{"auth", "{tokens: {issuer: 'https://cp.test', audience: a, jwks_url: 'https://cp.test/jwks'}}"},
		{"ratelimit_store", "{redis: 'redis://127.0.0.1:1'}"},
		{"access_log", "stdout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, dir, yml(route("/v1/")+route("/new/"), tc.name, tc.value))
			err := te.e.Reload()
			want := te.file + ": " + tc.name + ": changed, applied only at start; restart the gateway"
			if err == nil || err.Error() != want {
				t.Fatalf("Reload = %v, want %q", err, want)
			}
			resp, body := te.get(t, "/old/x")
			wantStatus(t, resp, body, http.StatusOK)
		})
	}

	writeFile(t, dir, yml(route("/v1/", ", timeout: 5s")+route("/new/")))
	if err := te.e.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"configuration reloaded","file":"`+te.file+`","changed":"routes ~/v1/ +/new/ -/old/"`) {
		t.Errorf("the log does not say what changed:\n%s", logs)
	}
	resp, body := te.get(t, "/new/x")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = te.get(t, "/old/x")
	wantStatus(t, resp, body, http.StatusNotFound)

	writeFile(t, dir, "routes: [\n")
	if err := te.e.Reload(); err == nil || !strings.HasPrefix(err.Error(), te.file+": gateway: ") {
		t.Fatalf("a broken file: %v", err)
	}
	resp, body = te.get(t, "/new/x")
	wantStatus(t, resp, body, http.StatusOK)
}

// The identity files are loaded at start and on Reload, and reused while
// they are the same: a reload to files that do not load is refused and
// the certificate in use stays; other files are loaded, and used for new
// connections.
func TestReloadIdentityFiles(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	up := startUpstream(t, pki.static(t, paymentsID), pki.roots, gatewayID)
	up.closeEvery = 1
	dir := t.TempDir()
	certFile, keyFile, rootsFile := pki.writeIdentity(t, dir, "gw", gatewayID)
	yml := func(cert, key, roots string) string {
		return fmt.Sprintf("identity: {cert: %s, key: %s, roots: %s}\nroutes:\n%s", cert, key, roots, httpsRoute("/v1/", up.URL, "auth: none"))
	}
	te := startEdge(t, dir, yml(certFile, keyFile, rootsFile))
	first := te.e.Identity()
	resp, body := te.get(t, "/v1/before")
	wantStatus(t, resp, body, http.StatusOK)
	firstSerial := echoed(t, body).PeerSerial

	// Reloading the same files keeps the identity.
	if err := te.e.Reload(); err != nil {
		t.Fatal(err)
	}
	if te.e.Identity() != first {
		t.Error("a reload of the same files made another identity")
	}

	missing := filepath.Join(dir, "missing.pem")
	_, otherKey, _ := pki.writeIdentity(t, t.TempDir(), "other", gatewayID)
	for _, tc := range []struct{ name, yaml, want string }{
		{"identity missing", yml(missing, keyFile, rootsFile), "gateway: identity: "},
		{"roots missing", yml(certFile, keyFile, missing), "gateway: identity: roots: "},
		{"key of another certificate", yml(certFile, otherKey, rootsFile), "gateway: identity: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, dir, tc.yaml)
			if err := te.e.Reload(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error starting %q", err, tc.want)
			}
			resp, body := te.get(t, "/v1/after-"+strings.ReplaceAll(tc.name, " ", "-"))
			wantStatus(t, resp, body, http.StatusOK)
			if s := echoed(t, body).PeerSerial; s != firstSerial {
				t.Errorf("the gateway presents another certificate: %s, want %s", s, firstSerial)
			}
		})
	}

	certFile2, keyFile2, _ := pki.writeIdentity(t, dir, "gw2", gatewayID)
	writeFile(t, dir, yml(certFile2, keyFile2, rootsFile))
	if err := te.e.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, body = te.get(t, "/v1/renewed")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body).PeerSerial; s == firstSerial {
		t.Error("the gateway still presents the certificate of the old files")
	}
}

// What fails at start: the configuration's errors, and *StartError for
// what is not (a listener that cannot listen). A New that fails closes
// what it opened, the listener it was given too; Close may be called
// twice.
func TestNewErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, keyFile, rootsFile := pki.writeIdentity(t, dir, "gw", gatewayID)
	const open = "routes: [{prefix: /v1/, upstream: 'http://127.0.0.1:1', auth: none}]\n"

	for _, tc := range []struct {
		name, yaml, want string
		start            bool
	}{
		{"a busy listen address", "listen: " + busy.Addr().String() + "\n" + open, "listen tcp " + busy.Addr().String(), true},
		{"a busy admin address", "listen: 127.0.0.1:0\nadmin_listen: " + busy.Addr().String() + "\n" + open, "admin_listen: listen tcp", true},
		{"missing TLS files", "listen: 127.0.0.1:0\ntls: {cert: nope.pem, key: nope.key}\n" + open, "tls: mtls: ", false},
		{"a missing identity", fmt.Sprintf("identity: {cert: %s, key: %s, roots: %s}\nroutes:\n%s", filepath.Join(dir, "nope.pem"), keyFile, rootsFile, httpsRoute("/v1/", "https://127.0.0.1:1", "auth: none")), "gateway: identity: ", false},
		{"a missing access log directory", "listen: 127.0.0.1:0\naccess_log: nodir/access.log\n" + open, "access_log: open ", false},
		{"a missing data directory", "listen: 127.0.0.1:0\nauth: {api_keys: {data_dir: nodir}}\n" + open, "auth.api_keys: data_dir: stat ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Load(writeFile(t, t.TempDir(), tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var given net.Listener
			o := Options{File: f, Logger: discardLog}
			if !strings.Contains(tc.yaml, "listen: ") {
				if given, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
				o.Listener = given
			}
			e, err := New(context.Background(), o)
			if err == nil || e != nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error starting %q", e, err, tc.want)
			}
			var se *StartError
			if errors.As(err, &se) != tc.start {
				t.Errorf("%v: a *StartError: %v, want %v", err, !tc.start, tc.start)
			}
			if given != nil {
				given.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := given.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("the listener given: Accept = %v, want it closed", err)
				}
			}
		})
	}

	e, err := buildEdge(t, dir, open)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// A section added to File says whether a reload may change it: a
// newcomer adding one finds this test, not a reload that half applies it.
func TestEverySectionHasAReloadRule(t *testing.T) {
	ruled := map[string]bool{"routes": true}
	for _, s := range append(slices.Clone(atStart), reloaded...) {
		if ruled[s.name] {
			t.Errorf("%s has two rules", s.name)
		}
		ruled[s.name] = true
	}
	ft := reflect.TypeFor[File]()
	for i := range ft.NumField() {
		tag, _, _ := strings.Cut(ft.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" && !ruled[tag] {
			t.Errorf("section %s: in neither atStart nor reloaded (internal/app/edge/deps.go)", tag)
		}
		delete(ruled, tag)
	}
	for name := range ruled {
		t.Errorf("%s: a reload rule for no section", name)
	}
}
