package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/app/controlplane"
	"github.com/rampartsec/rampart/internal/app/edge"
	_ "github.com/rampartsec/rampart/internal/testing/golden"
)

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// The system is assembled in one place, and that place can be tested
// without a process (issue 11 §1): the control plane and the edge are
// built from options, as rampart serve and rampart gateway build them,
// and one request goes through both. A client's API key, made at the
// control plane, is checked by the gateway against the control plane's
// database; a token the control plane issues for that key is checked by
// the gateway against the control plane's JWKS; the service behind the
// gateway sees each request, with the credential the gateway checked.
func TestControlPlaneAndEdge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("RAMPART_MASTER_KEY", "")
	t.Setenv("RAMPART_ADMIN_TOKEN", "")
	logs := &syncBuffer{}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(ctx, controlplane.Options{
		Source: &controlplane.Source{Flags: controlplane.File{
			DataDir: dir, Audience: "payments", Retention: "90d",
		}, Rate: 10, Burst: 100, AccessLog: true},
		Stderr:   logs,
		Listener: ln,
	})
	if err != nil {
		t.Fatal(err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Serve() }()
	defer func() {
		if err := cp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-cpDone; err != http.ErrServerClosed {
			t.Errorf("control plane Serve: %v", err)
		}
		cp.Close()
	}()
	if _, err := cp.APIKeys().CreateClient(ctx, apikey.Client{ID: "shop", Scopes: []string{"payment.read"}}); err != nil {
		t.Fatal(err)
	}
	key, _, err := cp.APIKeys().Create(ctx, "shop", []string{"payment.read"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}

	// The service: what it saw of each request.
	var mu sync.Mutex
	var seen []http.Header
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer svc.Close()

	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, `listen: 127.0.0.1:0
routes:
  - {prefix: /v1/, upstream: %q, auth: required}
auth:
  api_keys: {data_dir: %s}
  tokens: {issuer: %q, audience: payments, jwks_url: %q}
access_log: off
`, svc.URL, dir, cp.Issuer(), cp.URL()+"/oauth2/jwks"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := edge.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(ctx, edge.Options{File: f, Stderr: logs, Warn: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- e.Serve() }()
	defer func() {
		if err := e.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-edgeDone
		e.Close()
	}()

	get := func(header, value string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.URL()+"/v1/payments", nil)
		req.Header.Set(header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("X-API-Key", key.String()); code != http.StatusOK {
		t.Fatalf("with the API key: %d\n%s", code, logs.b.String())
	}
	if code := get("X-API-Key", "rk_live_"+strings.Repeat("a", 49)); code != http.StatusUnauthorized {
		t.Errorf("with a made-up key: %d, want 401", code)
	}

	// A token from the control plane, for that key (RFC 6749 §4.4).
	resp, err := http.PostForm(cp.URL()+"/oauth2/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"shop"}, "client_secret": {key.String()}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	if code := get("Authorization", "Bearer "+tok.AccessToken); code != http.StatusOK {
		t.Fatalf("with the token: %d\n%s", code, logs.b.String())
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Get("X-API-Key") != key.String() || seen[1].Get("Authorization") != "Bearer "+tok.AccessToken {
		t.Errorf("the service saw %d requests: %v", len(seen), seen)
	}
	if seen[1].Get("X-API-Key") != "" || seen[0].Get("Authorization") != "" {
		t.Errorf("a credential the gateway did not check reached the service: %v", seen)
	}
	if !strings.Contains(logs.b.String(), `msg="token: issued"`) {
		t.Errorf("no audit line for the token:\n%s", logs.b.String())
	}
}
