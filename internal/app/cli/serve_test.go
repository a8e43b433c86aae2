package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/testing/pgtest"
	"github.com/rampartsec/rampart/internal/testing/testpki"
)

const serveToken = "serve-test-admin-token-0123456789"

// listeningLine is rampart serve's log line saying where it listens.
var listeningLine = regexp.MustCompile(`control plane listening on (https?://[^" ]+)`)

// startServe runs "rampart serve" in a child process on dir and returns it
// with its base URL once it listens.
func startServe(t *testing.T, dir string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0", "--data", dir}, extra...)...)
	cmd.Env = append(os.Environ(), "RAMPART_TEST_RUN_CLI=1", "RAMPART_ADMIN_TOKEN="+serveToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	found := make(chan string, 1)
	var mu sync.Mutex
	var said []string
	go func() {
		for lines.Scan() {
			mu.Lock()
			said = append(said, lines.Text())
			mu.Unlock()
			if m := listeningLine.FindStringSubmatch(lines.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("rampart serve exited before listening:\n%s", strings.Join(said, "\n"))
		}
		return cmd, url
	case <-time.After(30 * time.Second):
		t.Fatal("rampart serve did not start listening within 30 s")
	}
	return nil, ""
}

// floodReport is a valid RFC 7469 report for host.
func floodReport(t *testing.T) func(host string) []byte {
	root := testpki.NewRoot(t, "Flood Root")
	leaf := root.NewIntermediate(t, "Flood Issuing CA").Issue(t, testpki.LeafOptions{DNSNames: []string{"x.flood.test"}})
	tmpl, err := json.Marshal(map[string]any{
		"date-time": "2026-11-25T12:00:00Z", "hostname": "HOST", "port": 443, "noted-hostname": "HOST",
		"include-subdomains": false, "effective-expiration-date": nil,
		"served-certificate-chain":    []string{string(testpki.CertPEM(leaf.Cert))},
		"validated-certificate-chain": []string{string(testpki.CertPEM(leaf.Cert))},
		"known-pins":                  []string{`pin-sha256="ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w="`},
	})
	if err != nil {
		t.Fatal(err)
	}
	return func(host string) []byte { return bytes.ReplaceAll(tmpl, []byte("HOST"), []byte(host)) }
}

// kill -9 during a flood of reports, then restart: every report that was
// acknowledged with a 2xx before the kill is in the database.
func TestServeKill9KeepsAcknowledgedReports(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server")
	}
	dir := t.TempDir()
	cmd, url := startServe(t, dir, "--report-rate", "0")
	report := floodReport(t)

	var (
		acked   sync.Map
		nAcked  atomic.Int64
		wg      sync.WaitGroup
		killed  = make(chan struct{})
		client  = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
		refused atomic.Int64
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				host := fmt.Sprintf("r%d-%d.flood.test", w, n)
				resp, err := client.Post(url+"/v1/reports", "application/json", bytes.NewReader(report(host)))
				if err != nil {
					select {
					case <-killed:
						return // the server is gone
					default:
						refused.Add(1)
						continue
					}
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					acked.Store(host, true)
					nAcked.Add(1)
				}
			}
		}()
	}
	// Kill in the middle of the flood, with requests in flight.
	deadline := time.Now().Add(20 * time.Second)
	for nAcked.Load() < 2000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(killed)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	wg.Wait()
	if nAcked.Load() == 0 {
		t.Fatal("no report was acknowledged before the kill")
	}

	// Restart on the same data: it recovers and serves.
	cmd, url = startServe(t, dir, "--report-rate", "0")
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after restart: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = client.Post(url+"/v1/reports", "application/json", bytes.NewReader(report("after.flood.test")))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report after restart: %v %v", resp, err)
	}
	resp.Body.Close()
	// SIGTERM: a graceful stop, exit status 0.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("rampart serve after SIGTERM: %v, want exit status 0", err)
	}

	st, err := backend.Open(context.Background(), filepath.Join(dir, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tallies, err := st.Reports().Count(context.Background(), store.ReportFilter{Limit: 1 << 30}, store.ByDomain)
	if err != nil {
		t.Fatal(err)
	}
	stored := make(map[string]bool, len(tallies))
	for _, tl := range tallies {
		stored[tl.Key] = true
	}
	lost := 0
	acked.Range(func(k, _ any) bool {
		if !stored[k.(string)] {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged report for %s is not in the database", k)
			}
		}
		return true
	})
	if lost > 0 {
		t.Errorf("%d of %d acknowledged reports lost", lost, nAcked.Load())
	}
	if !stored["after.flood.test"] {
		t.Error("the report acknowledged after the restart is not stored")
	}
	t.Logf("%d reports acknowledged before the kill, %d stored (the rest were in flight), %d connection errors before the kill",
		nAcked.Load(), len(stored)-1, refused.Load())
}

// runCLI runs the command line in-process and returns stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != 0 {
		t.Fatalf("rampart %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// The OAuth2 authorization server as rampart serve runs it: a client and
// a key made with the CLI on the same data directory, a token through
// golang.org/x/oauth2's client-credentials client, self-rotation of the
// key, and a revocation by the CLI that the running server honours.
func TestServeOAuthEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	runCLI(t, "client", "create", "shop", "--init", "--data", dir, "--scopes", "payment.read,payment.write")
	key := strings.TrimSpace(runCLI(t, "apikey", "create", "--client", "shop", "--data", dir, "--scopes", "payment.read"))
	_, url := startServe(t, dir)

	resp, err := http.Get(url + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["issuer"] != url || meta["token_endpoint"] != url+"/oauth2/token" {
		t.Fatalf("metadata %v", meta)
	}

	tokenFor := func(secret string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("shop", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	cfg := clientcredentials.Config{ClientID: "shop", ClientSecret: key, TokenURL: url + "/oauth2/token"}
	tok, err := cfg.Token(context.Background())
	if err != nil || tok.AccessToken == "" || tok.Extra("scope") != "payment.read" {
		t.Fatalf("clientcredentials: %+v %v", tok, err)
	}

	// The client rotates its own key.
	req, _ := http.NewRequest("POST", url+"/v1/apikeys/rotate", strings.NewReader(`{"grace": "1h"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rot struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&rot)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(rot.Key, "rk_live_") {
		t.Fatalf("self-rotation: %d %+v", resp.StatusCode, rot)
	}
	for name, k := range map[string]string{"old key (grace)": key, "new key": rot.Key} {
		if code, body := tokenFor(k); code != 200 {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
	// Revoked by the CLI, in another process: the server notices.
	runCLI(t, "apikey", "revoke", rot.ID, "--data", dir)
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, _ := tokenFor(rot.Key)
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3 s after revocation, the revoked key still gets tokens (%d)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sighup PIDFILE sends SIGHUP to the process whose ID the file holds, as
// an operator's kill -HUP "$(cat PIDFILE)" does.
func cmdSighup(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sighup PIDFILE")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(ts.ReadFile(args[0])))
	ts.Check(err)
	ts.Check(syscall.Kill(pid, syscall.SIGHUP))
}

// waitbody URL REGEXP waits up to 30 s for a 200 whose body matches.
func cmdWaitBody(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitbody URL REGEXP")
	}
	re := regexp.MustCompile(args[1])
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if resp.StatusCode == http.StatusOK && re.Match(b) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%s did not answer a body matching %q within 30 s; last:\n%s", args[0], args[1], last)
}

// SIGHUP does not stop rampart serve (Go's default action for it is to
// exit): it is handled, counted, and the server keeps answering.
func TestServeSurvivesSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	cmd, url := startServe(t, t.TempDir())
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`rampart_config_reloads_total\{result="applied"\} 1\b`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatalf("after SIGHUP: %v (the process died?)", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want.Match(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP not handled within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after SIGHUP: %v %v", resp, err)
	}
	resp.Body.Close()
}

// The start-up line names the PostgreSQL database (user, host, port,
// database), never its password.
func TestServeNamesPostgresDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	u, err := neturl.Parse(pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections: the password is not
	// checked, only carried, and must not be shown.
	const secret = "s3cret-pw-in-the-dsn"
	u.User = neturl.UserPassword(u.User.Username(), secret)
	p, _ := startCLI(t, []string{`msg="control plane listening on (http://[^"]+)"`}, "serve", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--db", u.String())
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	log := p.log.String()
	want := fmt.Sprintf(`database="PostgreSQL %s@%s, database %s"`, u.User.Username(), u.Host, strings.TrimPrefix(u.Path, "/"))
	if !strings.Contains(log, want) {
		t.Errorf("log lacks %s:\n%s", want, log)
	}
	if strings.Contains(log, secret) {
		t.Error("the log shows the database password")
	}
}
