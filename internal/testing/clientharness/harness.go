// Package clientharness runs the live environment of the Android/JVM and
// JavaScript pinning clients' integration tests, on loopback: the real
// Rampart control plane over TLS, a pinned server, a rogue-CA server (a
// chain from a compromised CA the client trusts), an appended-chain server
// (the rogue chain with the real CA certificates appended), a replay
// server (a pinned "compromised control plane" that serves an older
// signed bundle), and a bundle publisher that signs and publishes bundles
// on request. [Start] writes its addresses and pins to a JSON [Config],
// which the clients' tests read from $RAMPART_HARNESS; docs/clients.md
// describes it, and TestHarnessWithGoClient is the reference of the
// scenarios every client runs.
//
// Every host name of the harness resolves to 127.0.0.1 in the clients'
// tests (they install their own resolver); ports are in the URLs.
package clientharness

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/server"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/internal/util/pki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// Host names of the harness.
const (
	APIHost     = "api.rampart.example"
	CPHost      = "cp.rampart.example"
	ReportsHost = "reports.collector.example"
	BundleName  = "mobile"
)

// Config is what the clients' tests read.
type Config struct {
	RootsPEM        string            `json:"roots_pem"`
	Hosts           []string          `json:"hosts"`
	PinnedURL       string            `json:"pinned_url"`
	RogueURL        string            `json:"rogue_url"`
	AppendedURL     string            `json:"appended_url"`
	ControlPlaneURL string            `json:"control_plane_url"`
	BundleURL       string            `json:"bundle_url"`
	ReplayBundleURL string            `json:"replay_bundle_url"`
	PublisherURL    string            `json:"publisher_url"`
	BundleName      string            `json:"bundle_name"`
	Embedded        json.RawMessage   `json:"embedded_policy"`
	BundleKeys      json.RawMessage   `json:"bundle_keys"`
	Pins            map[string]string `json:"pins"`
}

// Harness is a running environment.
type Harness struct {
	Config Config

	adminToken string
	signer     crypto.Signer
	cp         string // control plane base URL, dialled at 127.0.0.1
	client     *http.Client

	mu     sync.Mutex
	replay string // the bundle the replay server serves
}

// Start starts every server of the harness; they stop when the test ends.
func Start(t testing.TB) *Harness {
	t.Helper()
	legitRoot := testpki.NewRoot(t, "Harness Root")
	legitInt := legitRoot.NewIntermediate(t, "Harness Issuing CA")
	rogueRoot := testpki.NewRoot(t, "Harness Compromised Root")
	rogueInt := rogueRoot.NewIntermediate(t, "Harness Compromised Issuing CA")
	backupKey := testpki.NewKey(t, pki.ECDSAP256)
	apiLeaf := legitInt.Issue(t, testpki.LeafOptions{DNSNames: []string{APIHost}, NotAfter: time.Now().Add(48 * time.Hour)})
	rogueLeaf := rogueInt.Issue(t, testpki.LeafOptions{DNSNames: []string{APIHost}, NotAfter: time.Now().Add(48 * time.Hour)})
	cpLeaf := legitInt.Issue(t, testpki.LeafOptions{DNSNames: []string{CPHost, ReportsHost}, NotAfter: time.Now().Add(48 * time.Hour)})
	cpBackup := testpki.NewKey(t, pki.ECDSAP256)

	signer, err := bundle.GenerateKey(bundle.ES256)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := bundle.NewKeys(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := keys.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	token := make([]byte, 24)
	rand.Read(token)

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cp, err := server.New(server.Config{Store: st, AdminToken: hex.EncodeToString(token), BundleKeys: keys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BundleCacheTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })

	h := &Harness{adminToken: hex.EncodeToString(token), signer: signer}
	cpURL := serveTLS(t, cpLeaf.TLS(), cp)
	h.cp = cpURL
	pinned := serveTLS(t, apiLeaf.TLS(), answer("pinned"))
	rogue := serveTLS(t, rogueLeaf.TLS(), answer("rogue"))
	appended := serveTLS(t, rogueLeaf.TLS(apiLeaf.Chain[1:]...), answer("appended"))
	replay := serveTLS(t, cpLeaf.TLS(), http.HandlerFunc(h.serveReplay))
	pub := serveHTTP(t, h.publisher())

	pool := testpki.Pool(legitRoot)
	h.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: CPHost}}}

	port := func(u string) string {
		pu, _ := url.Parse(u)
		return pu.Port()
	}
	onHost := func(host, u, path string) string { return "https://" + net.JoinHostPort(host, port(u)) + path }
	pinOf := func(k crypto.PublicKey) string {
		p, err := pin.FromPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return p.String()
	}
	pins := map[string]string{
		"legit_leaf": pin.FromCertificate(apiLeaf.Cert).String(),
		"backup":     pinOf(backupKey.Public()),
		"legit_int":  pin.FromCertificate(legitInt.Cert).String(),
		"legit_root": pin.FromCertificate(legitRoot.Cert).String(),
		"rogue_leaf": pin.FromCertificate(rogueLeaf.Cert).String(),
		"rogue_int":  pin.FromCertificate(rogueInt.Cert).String(),
		"rogue_root": pin.FromCertificate(rogueRoot.Cert).String(),
		"cp_leaf":    pin.FromCertificate(cpLeaf.Cert).String(),
	}
	reportURI := onHost(ReportsHost, cpURL, "/v1/reports")
	embedded := map[string]any{
		"version":    1,
		"report_uri": reportURI,
		"domains": []map[string]any{
			{"domain": CPHost, "mode": "enforce", "pins": []string{pins["cp_leaf"], pinOf(cpBackup.Public())}},
			{"domain": APIHost, "mode": "enforce", "pins": []string{pins["legit_leaf"], pins["backup"]}},
		},
	}
	ej, _ := json.Marshal(embedded)
	if _, err := pin.ParsePolicy(ej); err != nil {
		t.Fatal(err)
	}
	h.Config = Config{
		RootsPEM:        string(testpki.CertPEM(legitRoot.Cert, rogueRoot.Cert)),
		Hosts:           []string{APIHost, CPHost, ReportsHost},
		PinnedURL:       onHost(APIHost, pinned, "/"),
		RogueURL:        onHost(APIHost, rogue, "/"),
		AppendedURL:     onHost(APIHost, appended, "/"),
		ControlPlaneURL: onHost(CPHost, cpURL, ""),
		BundleURL:       onHost(CPHost, cpURL, "/v1/bundles/"+BundleName),
		ReplayBundleURL: onHost(CPHost, replay, "/v1/bundles/"+BundleName),
		PublisherURL:    pub,
		BundleName:      BundleName,
		Embedded:        ej,
		BundleKeys:      jwks,
		Pins:            pins,
	}
	// Version 1 is the embedded policy itself, so that every client test
	// starts from a published bundle and has a version below its own to
	// replay.
	jws, err := h.sign(signRequest{Policy: ej, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.publish(jws); err != nil {
		t.Fatal(err)
	}
	return h
}

// WriteConfig writes the configuration file the clients' tests read.
func (h *Harness) WriteConfig(path string) error {
	b, err := json.MarshalIndent(h.Config, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func answer(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "keep-alive")
		io.WriteString(w, body)
	})
}

func serveTLS(t testing.TB, cert tls.Certificate, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ErrorLog:  log.New(io.Discard, "", 0)} // refused handshakes are the point
	srv.SetKeepAlivesEnabled(true)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// signRequest is the body of POST /publish and POST /replay.
type signRequest struct {
	Policy     json.RawMessage `json:"policy"`
	Version    int64           `json:"version"`
	TTLSeconds int64           `json:"ttl_seconds"`
}

type signed struct {
	Version int64  `json:"version"`
	JWS     string `json:"jws"`
}

func (h *Harness) publisher() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		req, err := readSignRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Version == 0 {
			if req.Version, err = h.latest(); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			req.Version++
		}
		jws, err := h.sign(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := h.publish(jws); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, signed{req.Version, jws})
	})
	mux.HandleFunc("POST /replay", func(w http.ResponseWriter, r *http.Request) {
		req, err := readSignRequest(r)
		if err == nil && req.Version < 1 {
			err = errors.New("replay needs a version")
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		jws, err := h.sign(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.replay = jws
		h.mu.Unlock()
		writeJSON(w, signed{req.Version, jws})
	})
	mux.HandleFunc("GET /reports", func(w http.ResponseWriter, r *http.Request) {
		q := url.Values{}
		if d := r.URL.Query().Get("domain"); d != "" {
			q.Set("domain", d)
		}
		resp, err := h.admin(http.MethodGet, "/v1/admin/reports?"+q.Encode(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	})
	return mux
}

func readSignRequest(r *http.Request) (signRequest, error) {
	var req signRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("body: %w", err)
	}
	if len(req.Policy) == 0 {
		return req, errors.New("body: no policy")
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(v)
}

func (h *Harness) sign(req signRequest) (string, error) {
	p, err := pin.ParsePolicy(req.Policy)
	if err != nil {
		return "", err
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	now := time.Now()
	return bundle.Sign(h.signer, BundleName, req.Version, now, now.Add(ttl), p)
}

func (h *Harness) admin(method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(method, h.cp+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.adminToken)
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("control plane %s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, nil
}

func (h *Harness) publish(jws string) error {
	_, err := h.admin(http.MethodPost, "/v1/admin/bundles", []byte(jws))
	return err
}

// latest is the latest published version of the bundle, 0 if none.
func (h *Harness) latest() (int64, error) {
	b, err := h.admin(http.MethodGet, "/v1/admin/bundles", nil)
	if err != nil {
		return 0, err
	}
	var list struct {
		Bundles []struct {
			Name    string `json:"name"`
			Version int64  `json:"version"`
		} `json:"bundles"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return 0, fmt.Errorf("control plane bundle list: %w", err)
	}
	var v int64
	for _, e := range list.Bundles {
		if e.Name == BundleName && e.Version > v {
			v = e.Version
		}
	}
	return v, nil
}

func (h *Harness) serveReplay(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	jws := h.replay
	h.mu.Unlock()
	if r.URL.Path != "/v1/bundles/"+BundleName || jws == "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("ETag", strconv.Quote(fmt.Sprintf("replay-%d", len(jws))))
	io.WriteString(w, jws)
}
