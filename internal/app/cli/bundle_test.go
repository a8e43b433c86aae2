package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
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

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/pin/bundle"
)

// captureProxy is a listener that records the first lines of every
// request it gets, and answers 502: an HTTP proxy on the attacker's path.
type captureProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string
}

func newCaptureProxy(t *testing.T) *captureProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &captureProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := r.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				p.mu.Lock()
				p.seen = append(p.seen, head.String())
				p.mu.Unlock()
				io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}(c)
		}
	}()
	return p
}

func (p *captureProxy) captured() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// runChild runs rampart in a child process (so that HTTP_PROXY is read
// afresh) with env added, and returns its exit code and stderr.
func runChild(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "RAMPART_TEST_RUN_CLI=1"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// P4 (CWE-319): bundle publish sends the admin token over plain http only
// to localhost or a loopback address, never to a name that merely starts
// with "127.". Names cannot be added to DNS here, so the request is
// caught by an HTTP proxy, as a network attacker would catch it.
func TestPublishAdminTokenStaysOffPlainHTTP(t *testing.T) {
	proxy := newCaptureProxy(t)
	const token = "s3cr3t-admin-token-0123456789"
	file := filepath.Join(t.TempDir(), "b.jws")
	if err := os.WriteFile(file, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HTTP_PROXY=http://" + proxy.ln.Addr().String(), "http_proxy=http://" + proxy.ln.Addr().String(),
		"NO_PROXY=", "no_proxy=", "RAMPART_ADMIN_TOKEN=" + token}
	for _, server := range []string{
		"http://attacker.example/",
		"http://127.attacker.example/",
		"http://127.0.0.1.attacker.example/",
		"http://127.0.0.1.nip.io:8080/",
		"http://localhost.attacker.example/",
	} {
		code, stderr := runChild(t, env, "bundle", "publish", "--server", server, file)
		if code != cli.ExitUsage || !strings.Contains(stderr, "in the clear; use https") {
			t.Errorf("--server %s: exit %d, stderr %q; want 2 and a refusal", server, code, stderr)
		}
	}
	for _, req := range proxy.captured() {
		t.Errorf("captured by the proxy:\n%s", req)
	}

	// The control: loopback addresses get the token over http (and
	// never through a proxy).
	var got []string
	var mu sync.Mutex
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"name":"mobile","version":7}`)
	}))
	defer admin.Close()
	_, port, _ := net.SplitHostPort(admin.Listener.Addr().String())
	for _, server := range []string{admin.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port} {
		if code, stderr := runChild(t, env, "bundle", "publish", "--server", server, file); code != cli.ExitOK {
			t.Errorf("--server %s: exit %d, stderr %q", server, code, stderr)
		}
	}
	if len(got) != 3 || got[0] != "Bearer "+token {
		t.Errorf("the admin API got %q", got)
	}
	if n := len(proxy.captured()); n != 0 {
		t.Errorf("%d loopback requests went through the proxy", n)
	}
}

// Walkthrough 28 / second walkthrough 20: a certificate the system roots
// do not know gets a hint to pass --ca; with --ca the same command works.
func TestPublishUnknownAuthorityHint(t *testing.T) {
	t.Setenv("RAMPART_ADMIN_TOKEN", "hint-test-admin-token-0123456789")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/admin/bundles" || r.Header.Get("Authorization") != "Bearer hint-test-admin-token-0123456789" {
			http.Error(w, `{"error":"wrong request"}`, http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"name":"mobile","version":7}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "b.jws")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
		return code, out.String(), errOut.String()
	}
	code, _, stderr := run("bundle", "publish", "--server", srv.URL, file)
	if code != cli.ExitFailure || !strings.Contains(stderr, "unknown authority") || !strings.Contains(stderr, "rampart: hint: ") || !strings.Contains(stderr, "--ca") {
		t.Errorf("without --ca: exit %d, stderr %q; want 1 and a hint naming --ca", code, stderr)
	}
	code, stdout, stderr := run("bundle", "publish", "--server", srv.URL, "--ca", ca, file)
	if code != cli.ExitOK || stdout != "published bundle mobile version 7\n" {
		t.Errorf("with --ca: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// P8, P12, P13: the control plane refuses to publish what clients would
// refuse: a bundle living past the lifetime bound (the one signed with
// --expires 9999-12-31, whose expiry in year 10000 broke every JSON answer
// naming it) and one pinning a public suffix with include_subdomains.
// They are signed here with go-jose directly, as an old rampart or another
// tool could have signed them.
func TestPublishRefusesWhatClientsRefuse(t *testing.T) {
	dir := t.TempDir()
	key, err := bundle.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundle.MarshalPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "b.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	kid, err := bundle.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(version int64, exp time.Time, policy string) string {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
			new(jose.SignerOptions).WithType(bundle.Type).WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		payload := fmt.Sprintf(`{"bundle":"mobile","version":%d,"iat":%d,"exp":%d,"policy":%s}`, version, time.Now().Unix()-60, exp.Unix(), policy)
		obj, err := s.Sign([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("v%d.jws", version))
		if err := os.WriteFile(file, []byte(jws+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	const pins = `["sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=","sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="]`
	api := `{"version":1,"domains":[{"domain":"api.payments.test","pins":` + pins + `}]}`
	suffix := `{"version":1,"domains":[{"domain":"test","include_subdomains":true,"pins":` + pins + `}]}`

	_, base := startServe(t, filepath.Join(dir, "data"), "--bundle-key", pubFile)
	env := []string{"RAMPART_ADMIN_TOKEN=" + serveToken}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"expiry in year 10000", sign(1, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), api), "at most 366 days"},
		{"a lifetime of two years", sign(2, time.Now().AddDate(2, 0, 0), api), "at most 366 days"},
		{"include_subdomains on a public suffix", sign(3, time.Now().AddDate(0, 1, 0), suffix), "public suffix"},
	} {
		code, stderr := runChild(t, env, "bundle", "publish", "--server", base, tc.file)
		if code != cli.ExitFailure || !strings.Contains(stderr, "400 Bad Request") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1, 400 and %q", tc.name, code, stderr, tc.want)
		}
	}
	// Nothing was stored: the admin list answers, empty.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/admin/bundles", nil)
	req.Header.Set("Authorization", "Bearer "+serveToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var list struct {
		Bundles []json.RawMessage `json:"bundles"`
	}
	if err := json.Unmarshal(body, &list); resp.StatusCode != http.StatusOK || err != nil || list.Bundles == nil || len(list.Bundles) != 0 {
		t.Errorf("bundle list: %s %q, want 200 and no bundle", resp.Status, body)
	}
	// A bundle within the bounds is published.
	if code, stderr := runChild(t, env, "bundle", "publish", "--server", base, sign(4, time.Now().AddDate(0, 3, 0), api)); code != cli.ExitOK {
		t.Errorf("a valid bundle: exit %d, stderr %q", code, stderr)
	}
}
