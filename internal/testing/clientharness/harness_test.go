package clientharness

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
	"github.com/rampartsec/rampart/pin/report"
)

var _ = golden.Update // every test package takes -update

// TestServe runs the harness until interrupted when
// RAMPART_HARNESS_SERVE names a file to write its configuration to: for
// developing the clients' tests by hand.
func TestServe(t *testing.T) {
	path := os.Getenv("RAMPART_HARNESS_SERVE")
	if path == "" {
		t.Skip("RAMPART_HARNESS_SERVE is not set (it runs the harness by hand)")
	}
	h := Start(t)
	if err := h.WriteConfig(path); err != nil {
		t.Fatal(err)
	}
	t.Logf("harness running; configuration in %s", path)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// clientDir is the absolute path of clients/<name>.
func clientDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "clients", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startForClient starts the harness for another client's suite and
// returns its configuration file and the vectors directory.
func startForClient(t *testing.T) (cfg, vectors string) {
	t.Helper()
	h := Start(t)
	cfg = filepath.Join(t.TempDir(), "harness.json")
	if err := h.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, filepath.Join(clientDir(t, "testdata"), "vectors")
}

// TestJSClient builds clients/js and runs its node --test suite with the
// vectors and the harness.
func TestJSClient(t *testing.T) {
	node := os.Getenv("RAMPART_TEST_NODE")
	if node == "" {
		t.Skip("RAMPART_TEST_NODE is not set (the node binary; run npm ci in clients/js first; .ci/run does both)")
	}
	dir := clientDir(t, "js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("clients/js/node_modules is missing: run npm ci in clients/js (%v)", err)
	}
	cfg, vectors := startForClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Dir(node)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "npm"), "test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "RAMPART_HARNESS="+cfg, "RAMPART_VECTORS="+vectors)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test: %v\n%s", err, out)
	}
	// node --test prints its totals; a run that ran nothing is a failure.
	if !strings.Contains(string(out), "# fail 0") || strings.Contains(string(out), "# pass 0") {
		t.Fatalf("npm test did not report passing tests:\n%s", out)
	}
	t.Logf("npm test:\n%s", out[max(0, len(out)-400):])
}

// TestAndroidClient compiles clients/android with the machine's JDK (Java 8
// language level) and runs its JUnit tests with the vectors and the
// harness. RAMPART_TEST_JAVA_LIBS names the directory of Debian's jars
// (junit4, libhamcrest-java, libokhttp-java, libokio-java).
func TestAndroidClient(t *testing.T) {
	libs := os.Getenv("RAMPART_TEST_JAVA_LIBS")
	if libs == "" {
		t.Skip("RAMPART_TEST_JAVA_LIBS is not set (the directory of the junit4, okhttp and okio jars, /usr/share/java with Debian's packages; .ci/run sets it)")
	}
	dir := clientDir(t, "android")
	cfg, vectors := startForClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "test.sh")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RAMPART_JAVA_LIBS="+libs, "RAMPART_HARNESS="+cfg, "RAMPART_VECTORS="+vectors, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("clients/android/test.sh: %v\n%s", err, out)
	}
	// JUnit counts a skipped class as passing: require the harness
	// scenarios and the vectors to have run.
	for _, want := range []string{"OK (", "bundle vectors: 46 passed, 0 failed", "pki vectors: 19 passed, 0 failed"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("clients/android/test.sh did not print %q:\n%s", want, out)
		}
	}
	for i := 1; i <= 6; i++ {
		if want := fmt.Sprintf("harness scenario %d passed", i); !strings.Contains(string(out), want) {
			t.Fatalf("clients/android/test.sh did not print %q:\n%s", want, out)
		}
	}
	t.Logf("test.sh:\n%s", out[max(0, len(out)-600):])
}

// TestHarnessWithGoClient runs the integration scenarios the other
// clients run, with the Go client: it checks the harness itself, and
// that the Go client passes what the others must.
func TestHarnessWithGoClient(t *testing.T) {
	h := Start(t)
	c := h.Config
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(c.RootsPEM)) {
		t.Fatal("roots")
	}
	embedded, err := pin.ParsePolicy(c.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := bundle.ParseKeys(c.BundleKeys)
	if err != nil {
		t.Fatal(err)
	}
	// Every harness host is on loopback.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	transport := func() *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = dial
		tr.TLSClientConfig.RootCAs = roots
		return tr
	}
	reporter := &report.Reporter{Client: &http.Client{Transport: transport(), Timeout: 10 * time.Second}}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	newClient := func(cache, url string) (*http.Client, *bundle.Updater) {
		v := pin.NewVerifier(embedded)
		v.Reporter, v.Logger = reporter, discard
		hc, err := v.Client(transport())
		if err != nil {
			t.Fatal(err)
		}
		cpc, err := pin.NewVerifier(embedded).Client(transport())
		if err != nil {
			t.Fatal(err)
		}
		u := &bundle.Updater{URL: url, Name: c.BundleName, Keys: keys, Embedded: embedded, Verifier: v, CacheFile: cache, Client: cpc, Logger: discard}
		if err := u.Load(); err != nil {
			t.Fatal(err)
		}
		return hc, u
	}
	get := func(hc *http.Client, url string) (string, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	cache := filepath.Join(t.TempDir(), "bundle.jws")
	hc, u := newClient(cache, c.BundleURL)

	// 1. The rogue chain is refused, naming its pins.
	_, err = get(hc, c.RogueURL)
	var mismatch *pin.MismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("rogue: %v; want a pin mismatch", err)
	}
	for _, k := range []string{"rogue_leaf", "rogue_int", "rogue_root"} {
		if !strings.Contains(err.Error(), c.Pins[k]) {
			t.Errorf("the error does not name %s (%s): %v", k, c.Pins[k], err)
		}
	}
	// 2. The appended chain is refused, even pinned on the real CA.
	caPolicy, _ := pin.ParsePolicy([]byte(fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"pins":[%q,%q]}]}`, APIHost, c.Pins["legit_int"], c.Pins["backup"])))
	ca, err := pin.NewVerifier(caPolicy).Client(transport())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(ca, c.AppendedURL); !errors.As(err, &mismatch) {
		t.Fatalf("appended chain: %v; want a pin mismatch", err)
	}
	if body, err := get(ca, c.PinnedURL); err != nil || body != "pinned" {
		t.Fatalf("pinned on the CA: %q, %v", body, err)
	}
	// 3. The report of 1 reaches the control plane.
	if err := reporter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitReport(t, c, "enforce")

	// 4. A published bundle switches the pins without a restart.
	if body, err := get(hc, c.PinnedURL); err != nil || body != "pinned" {
		t.Fatalf("pinned: %q, %v", body, err)
	}
	v1 := publish(t, c, "/publish", 0, fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"pins":[%q,%q]}]}`, APIHost, c.Pins["rogue_leaf"], c.Pins["backup"]))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := u.State(); st.Version != v1 {
		t.Fatalf("version %d in effect; want %d", st.Version, v1)
	}
	if _, err := get(hc, c.PinnedURL); !errors.As(err, &mismatch) {
		t.Fatalf("pinned after the switch: %v; want a pin mismatch (the old pooled connection must not be reused)", err)
	}
	if body, err := get(hc, c.RogueURL); err != nil || body != "rogue" {
		t.Fatalf("rogue after the switch: %q, %v", body, err)
	}
	// 5. Rollback refused after a restart.
	_, u2 := newClient(cache, c.ReplayBundleURL)
	if st := u2.State(); st.Version != v1 {
		t.Fatalf("after the restart: version %d; want %d", st.Version, v1)
	}
	publish(t, c, "/replay", v1-1, string(c.Embedded))
	if err := u2.Update(context.Background()); !errors.Is(err, bundle.ErrRollback) {
		t.Fatalf("replayed version %d: %v; want a rollback refusal", v1-1, err)
	}
	if st := u2.State(); st.Version != v1 {
		t.Fatalf("after the replay: version %d; want %d", st.Version, v1)
	}
	// 6. Report-only lets the request through and reports.
	publish(t, c, "/publish", 0, fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"mode":"report-only","pins":[%q]}]}`, APIHost, c.Pins["backup"]))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A connection accepted under the previous pins stays (the new rule
	// does not refuse it) and makes no new handshake: start a fresh one.
	hc.CloseIdleConnections()
	if body, err := get(hc, c.RogueURL); err != nil || body != "rogue" {
		t.Fatalf("report-only: %q, %v", body, err)
	}
	if err := reporter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitReport(t, c, "report-only")
}

func publish(t *testing.T, c Config, path string, version int64, policy string) int64 {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"policy": json.RawMessage(policy), "version": version})
	resp, err := http.Post(c.PublisherURL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s: %s: %s", path, resp.Status, b)
	}
	var s signed
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s.Version
}

func waitReport(t *testing.T, c Config, mode string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(c.PublisherURL + "/reports?domain=" + APIHost)
		if err != nil {
			t.Fatal(err)
		}
		var groups struct {
			Groups []struct {
				Hostname string `json:"hostname"`
				Mode     string `json:"mode"`
				Reason   string `json:"reason"`
			} `json:"groups"`
		}
		err = json.NewDecoder(resp.Body).Decode(&groups)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups.Groups {
			if g.Hostname == APIHost && g.Mode == mode && g.Reason == string(pin.ReasonMismatch) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s report for %s in the control plane: %+v", mode, APIHost, groups.Groups)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
