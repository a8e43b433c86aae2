package cli_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/ctwatch"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// TestServeCTMonitor is the incident end to end: a CA the clients trust
// issues a certificate for a pinned name on the attacker's key and logs
// it in a real CT log; rampart serve --ct-logs classifies it as rogue,
// delivers a signed webhook alert, and when a pinned client (rampart pin
// get) meets a server with that key and reports the failure, the
// dashboard's CT view says the rogue key was seen by that client.
func TestServeCTMonitor(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := testpki.NewRoot(t, "Good Root")
	goodInt := good.NewIntermediate(t, "Good Issuing CA")
	rogue := testpki.NewRoot(t, "Compromised Public Root")
	leafKey := testpki.NewKey(t, testpki.ECDSAP256)
	backupKey := testpki.NewKey(t, testpki.ECDSAP256)
	leafPin, _ := pin.FromPrivateKey(leafKey)
	backupPin, _ := pin.FromPrivateKey(backupKey)
	rules := fmt.Sprintf(`  - domain: api.pay.example
    pins: [%s, {pin: %s, role: backup}]
`, leafPin, backupPin)
	monitorPolicy := write("pins.yaml", "version: 1\ndomains:\n"+rules)

	log := ctlog.Start(t, good.Cert, rogue.Cert)
	logList := write("logs.json", string(log.LogList(t)))

	// The webhook receiver checks each delivery's signature.
	secret := "0123456789abcdef0123456789abcdef"
	var mu sync.Mutex
	var alerts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := ctwatch.Verify([]byte(secret), r.Header.Get(ctwatch.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var d map[string]any
		json.Unmarshal(body, &d)
		mu.Lock()
		alerts = append(alerts, d)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	secretFile := write("webhook-secret", secret+"\n")

	// The control plane on TLS, so that pinned clients can report to it.
	cpRoot := testpki.NewRoot(t, "Control Plane Root")
	cp := cpRoot.Issue(t, testpki.LeafOptions{})
	cpCert := write("cp.pem", string(testpki.CertPEM(cp.Chain...)))
	cpKey := write("cp.key", string(testpki.KeyPEM(t, cp.Key)))
	cpRootFile := write("cp-root.pem", string(testpki.CertPEM(cpRoot.Cert)))
	config := write("serve.yaml", fmt.Sprintf(`ct:
  policy: %s
  poll: 300ms
  start: beginning
  webhook:
    url: %s
    secret_file: %s
`, monitorPolicy, hook.URL, secretFile))
	_, base := startServe(t, filepath.Join(dir, "data"), "--config", config, "--ct-logs", logList, "--tls-cert", cpCert, "--tls-key", cpKey)

	// The attacker's certificate is logged: precertificate, then the
	// certificate.
	rogueKey := testpki.NewKey(t, testpki.ECDSAP256)
	roguePin, _ := pin.FromPrivateKey(rogueKey)
	idx := log.Submit(t, rogue, rogueKey, true, "api.pay.example")
	log.Submit(t, goodInt, leafKey, false, "api.pay.example")
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(alerts)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if len(alerts) != 1 {
		t.Fatalf("%d webhook alerts, want 1 (the precertificate and certificate are one certificate)", len(alerts))
	}
	a := alerts[0]
	mu.Unlock()
	f, _ := a["finding"].(map[string]any)
	if a["type"] != "ct.alert" || a["class"] != "rogue" || f["spki"] != roguePin.String() || f["index"] != float64(idx[0]) || f["precertificate"] != true {
		t.Errorf("alert %v", a)
	}

	// A pinned client meets a server with the rogue key and reports it.
	rogueLeaf := rogue.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.pay.example"}, Key: rogueKey})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "intercepted\n") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{rogueLeaf.TLS()}}
	srv.StartTLS()
	defer srv.Close()
	getPolicy := write("get.yaml", fmt.Sprintf("version: 1\nreport_uri: %s/v1/reports\ndomains:\n%s", base, rules))
	roots := write("roots.pem", string(testpki.CertPEM(good.Cert, rogue.Cert)))
	code, out, errOut := runCode("pin", "get", "--policy", getPolicy, "--ca", roots, "--report-ca", cpRootFile,
		"--connect", srv.Listener.Addr().String(), "https://api.pay.example/")
	if code != 1 || !strings.Contains(errOut, "sent 1 pin failure report") {
		t.Fatalf("pin get: exit %d\n%s%s", code, out, errOut)
	}

	// The admin API and the dashboard's CT view link the rogue key to the
	// client's report.
	pool := x509.NewCertPool()
	pool.AddCert(cpRoot.Cert)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var doc struct {
		Logs []struct {
			TreeSize int64 `json:"tree_size"`
			Behind   int64 `json:"behind"`
		} `json:"logs"`
		Certificates []struct {
			Class     string   `json:"class"`
			SPKI      string   `json:"spki"`
			Names     []string `json:"names"`
			Sightings int64    `json:"sightings"`
			Clients   int64    `json:"reported_by_clients"`
		} `json:"certificates"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		req, _ := http.NewRequest("GET", base+"/v1/admin/ct", nil)
		req.Header.Set("Authorization", "Bearer "+serveToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if len(doc.Certificates) == 2 && doc.Certificates[0].Clients == 1 && doc.Logs[0].Behind == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(doc.Certificates) != 2 {
		t.Fatalf("certificates %+v", doc.Certificates)
	}
	if c := doc.Certificates[0]; c.Class != "rogue" || c.SPKI != roguePin.String() || c.Sightings != 2 || c.Clients != 1 {
		t.Errorf("the rogue certificate: %+v", c)
	}
	if c := doc.Certificates[1]; c.Class != "expected" {
		t.Errorf("the expected certificate: %+v", c)
	}
	if len(doc.Logs) != 1 || doc.Logs[0].TreeSize != 3 || doc.Logs[0].Behind != 0 {
		t.Errorf("logs %+v", doc.Logs)
	}

	resp, err := client.PostForm(base+"/login", url.Values{"token": {serveToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = client.Get(base + "/ct")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(page)
	rogueRow := body[strings.Index(body, `<tr class="ct-rogue">`):]
	rogueRow = html.UnescapeString(rogueRow[:strings.Index(rogueRow, "</tr>")])
	for _, want := range []string{`<span class="mode rogue">rogue</span>`, "api.pay.example", "CN=Compromised Public Root", roguePin.String(),
		"TesseraCT on loopback #" + strconv.FormatInt(idx[0], 10), "precertificate", "seen by 1 client(s), 1 report(s)",
		`href="/?range=30d&served_pin=` + url.QueryEscape(roguePin.String())} {
		if !strings.Contains(rogueRow, want) {
			t.Errorf("the rogue row lacks %q:\n%s", want, rogueRow)
		}
	}
	resp, err = client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`rampart_ct_alerts_total{class="rogue"} 1`, `rampart_ct_entries_judged_total{log="TesseraCT on loopback"} 3`,
		`rampart_ct_log_behind_entries{log="TesseraCT on loopback"} 0`, `rampart_ct_webhook_deliveries_total{result="delivered"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
