package cli_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// ctWorld is a pinned domain, its CA, a rogue CA and a real CT log.
type ctWorld struct {
	dir                  string
	good, goodInt, rogue *testpki.CA
	leafKey, backupKey   crypto.Signer
	log                  *ctlog.Log
}

func newCTWorld(t *testing.T) *ctWorld {
	w := &ctWorld{dir: t.TempDir()}
	w.good = testpki.NewRoot(t, "Good Root")
	w.goodInt = w.good.NewIntermediate(t, "Good Issuing CA")
	w.rogue = testpki.NewRoot(t, "Rogue Root")
	w.leafKey = testpki.NewKey(t, testpki.ECDSAP256)
	w.backupKey = testpki.NewKey(t, testpki.ECDSAP256)
	leafPin, _ := pin.FromPrivateKey(w.leafKey)
	backupPin, _ := pin.FromPrivateKey(w.backupKey)
	w.write(t, "pins.yaml", fmt.Sprintf(`version: 1
domains:
  - domain: api.pay.example
    pins:
      - {pin: %s, role: leaf}
      - {pin: %s, role: backup}
`, leafPin, backupPin))
	w.log = ctlog.Start(t, w.good.Cert, w.rogue.Cert)
	w.write(t, "logs.json", string(w.log.LogList(t)))
	return w
}

func (w *ctWorld) write(t *testing.T, name, data string) string {
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *ctWorld) path(name string) string { return filepath.Join(w.dir, name) }

// logCert logs a certificate (with pre, its precertificate first) for
// api.pay.example on key from ca and returns the key's pin.
func (w *ctWorld) logCert(t *testing.T, ca *testpki.CA, key crypto.Signer, pre bool) pin.Pin {
	if key == nil {
		key = testpki.NewKey(t, testpki.ECDSAP256)
	}
	w.log.Submit(t, ca, key, pre, "api.pay.example")
	p, _ := pin.FromPrivateKey(key)
	return p
}

func runCode(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

// TestCTCheck runs `rampart ct check` against a real CT log holding the
// key in use, the backup key coming into use and a rogue certificate
// (precertificate and certificate).
func TestCTCheck(t *testing.T) {
	w := newCTWorld(t)
	w.logCert(t, w.goodInt, w.leafKey, false)
	w.logCert(t, w.goodInt, w.backupKey, false)
	roguePin := w.logCert(t, w.rogue, nil, true)
	w.log.WaitSize(t, 4)
	base := []string{"ct", "check", "--policy", w.path("pins.yaml"), "--logs", w.path("logs.json")}

	code, out, errOut := runCode(base...)
	if code != cli.ExitFailure {
		t.Fatalf("exit %d, want 1 (a rogue certificate)\n%s%s", code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "ROGUE         api.pay.example  precertificate") || !strings.Contains(out, roguePin.String()) {
		t.Errorf("the rogue precertificate is not first:\n%s", out)
	}
	for _, want := range []string{
		`rule api.pay.example (enforce): rogue: no pin matches any key of the chain`,
		`ROLLOVER      api.pay.example  certificate`,
		`rule api.pay.example (enforce): rollover: pin sha256/`,
		`(backup) at chain position 0`,
		`log "TesseraCT on loopback": ok, tree size 4, 4 entries judged`,
		`2 rogue, 1 rollover, 0 unparsed, 0 unpinned-name, 1 expected; 0 of 1 logs failed`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCode(append(base, "--json")...)
	var doc struct {
		Findings []struct {
			Class   string `json:"class"`
			Precert bool   `json:"precertificate"`
			SPKI    string `json:"spki"`
			TBS     string `json:"tbs_sha256"`
			Index   int64  `json:"index"`
			Rules   []struct {
				Class    string `json:"class"`
				Role     string `json:"role"`
				Position *int   `json:"position"`
			} `json:"rules"`
		} `json:"findings"`
		Logs []struct {
			TreeSize int64 `json:"tree_size"`
			Judged   int64 `json:"judged"`
		} `json:"logs"`
		Summary struct {
			Rogue, Rollover, Expected int
			Exit                      int `json:"exit_code"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != 1 || doc.Summary.Exit != 1 || doc.Summary.Rogue != 2 || doc.Summary.Rollover != 1 || doc.Summary.Expected != 1 || len(doc.Findings) != 4 {
		t.Errorf("exit %d, summary %+v, %d findings", code, doc.Summary, len(doc.Findings))
	}
	if f := doc.Findings[0]; f.Class != "rogue" || !f.Precert || f.SPKI != roguePin.String() || f.TBS != doc.Findings[1].TBS || f.Rules[0].Position != nil {
		t.Errorf("first finding %+v", f)
	}
	if doc.Logs[0].TreeSize != 4 || doc.Logs[0].Judged != 4 {
		t.Errorf("logs %+v", doc.Logs)
	}

	// Announcing the rogue key leaves the rollover (exit 3); announcing
	// the backup key too leaves nothing.
	backupPin, _ := pin.FromPrivateKey(w.backupKey)
	w.write(t, "expect.yaml", fmt.Sprintf("expected:\n  - spki: %s\n    domain: api.pay.example\n", roguePin))
	if code, out, _ := runCode(append(base, "--expect", w.path("expect.yaml"))...); code != cli.ExitWarning || !strings.Contains(out, "0 rogue, 1 rollover") {
		t.Errorf("with the rogue key announced: exit %d\n%s", code, out)
	}
	w.write(t, "expect.yaml", fmt.Sprintf("expected:\n  - spki: %s\n  - spki: %s\n    until: 2099-12-31\n", roguePin, backupPin))
	if code, out, _ := runCode(append(base, "--expect", w.path("expect.yaml"))...); code != cli.ExitOK || !strings.Contains(out, ", announced") {
		t.Errorf("with both announced: exit %d\n%s", code, out)
	}

	// --since tomorrow: nothing logged since.
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	if code, out, _ := runCode(append(base, "--since", tomorrow)...); code != cli.ExitOK || !strings.Contains(out, "0 rogue, 0 rollover, 0 unparsed, 0 unpinned-name, 0 expected") {
		t.Errorf("--since %s: exit %d\n%s", tomorrow, code, out)
	}

	// The log list from a URL.
	srv := httptest.NewServer(http.FileServer(http.Dir(w.dir)))
	defer srv.Close()
	if code, _, errOut := runCode("ct", "check", "--policy", w.path("pins.yaml"), "--logs", srv.URL+"/logs.json"); code != cli.ExitFailure {
		t.Errorf("--logs URL: exit %d\n%s", code, errOut)
	}

	// A log that cannot be reached fails the check, with its name.
	w.log.SetFaults(func(rw http.ResponseWriter, r *http.Request) bool {
		http.Error(rw, "down", http.StatusNotFound)
		return true
	})
	code, out, errOut = runCode(append(base, "--timeout", "2s")...)
	if code != cli.ExitFailure || !strings.Contains(errOut, `rampart: log "TesseraCT on loopback": ct: `) || !strings.Contains(out, "FAILED") {
		t.Errorf("log down: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPinCheckSCTs: `rampart pin check` applies a rule's SCT requirement as
// a pinned client does: refused without SCTs (exit 1, sct-missing), ok
// with SCTs of two listed logs of two operators, both real CT logs.
func TestPinCheckSCTs(t *testing.T) {
	dir := t.TempDir()
	root := testpki.NewRoot(t, "Root")
	ca := root.NewIntermediate(t, "Issuing CA")
	key, backup := testpki.NewKey(t, testpki.ECDSAP256), testpki.NewKey(t, testpki.ECDSAP256)
	kp, _ := pin.FromPrivateKey(key)
	bp, _ := pin.FromPrivateKey(backup)
	a, b := ctlog.Start(t, root.Cert), ctlog.Start(t, root.Cert)
	var logs string
	for i, l := range []*ctlog.Log{a, b} {
		der, _ := x509.MarshalPKIXPublicKey(&l.Key.PublicKey)
		logs += fmt.Sprintf("  - {key: %s, operator: op%d}\n", base64.StdEncoding.EncodeToString(der), i)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o600)
		return p
	}
	policy := write("pins.yaml", fmt.Sprintf("version: 1\nct_logs:\n%sdomains:\n  - domain: api.sct.test\n    require_scts: true\n    pins: [%s, %s]\n", logs, kp, bp))
	roots := write("roots.pem", string(testpki.CertPEM(root.Cert)))
	nb := time.Now().Add(-time.Hour).Truncate(time.Second)
	o := testpki.LeafOptions{DNSNames: []string{"api.sct.test"}, Key: key, NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour), Serial: big.NewInt(time.Now().UnixNano())}
	serveCert := func(leaf *testpki.Leaf) string {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		s.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}
		s.Config.ErrorLog = log.New(io.Discard, "", 0)
		s.StartTLS()
		t.Cleanup(s.Close)
		return s.Listener.Addr().String()
	}
	bareLeaf := ca.Issue(t, o)
	bare := serveCert(bareLeaf)
	code, out, errOut := runCode("pin", "check", "--policy", policy, "--ca", roots, "--connect", bare, "--json", "api.sct.test")
	if code != cli.ExitFailure || !strings.Contains(out, `"status": "sct-missing"`) || !strings.Contains(out, "0 embedded (2 needed)") {
		t.Errorf("without SCTs: exit %d\n%s%s", code, out, errOut)
	}
	po := o
	po.ExtraExtensions = []pkix.Extension{ctlog.Poison()}
	pre := ca.Issue(t, po)
	lo := o
	lo.ExtraExtensions = []pkix.Extension{ctlog.SCTList(a.AddChain(t, true, pre.Cert, ca.Cert), b.AddChain(t, true, pre.Cert, ca.Cert))}
	logged := serveCert(ca.Issue(t, lo))
	if code, out, errOut := runCode("pin", "check", "--policy", policy, "--ca", roots, "--connect", logged, "api.sct.test"); code != cli.ExitOK {
		t.Errorf("with two SCTs: exit %d\n%s%s", code, out, errOut)
	}
	// A renewal without SCTs would break clients of the rule.
	chain := write("bare.pem", string(testpki.CertPEM(bareLeaf.Chain...)))
	if code, out, _ := runCode("pin", "rollover", "--policy", policy, "--domain", "api.sct.test", "--chain", chain, "--ca", roots); code != cli.ExitFailure ||
		!strings.Contains(out, "CLIENTS WOULD BREAK (rule api.sct.test, enforce): the rule requires SCTs") {
		t.Errorf("rollover to a certificate without SCTs: exit %d\n%s", code, out)
	}
	// A bundle signs such a policy (lint knows its logs).
	if code, _, errOut := runCode("bundle", "keygen", "--out", filepath.Join(dir, "bundle.key")); code != 0 {
		t.Fatal(errOut)
	}
	if code, _, errOut := runCode("bundle", "sign", "--policy", policy, "--key", filepath.Join(dir, "bundle.key"), "--version", "1",
		"--expires", time.Now().AddDate(0, 1, 0).Format(time.DateOnly), "-o", filepath.Join(dir, "b.jws")); code != 0 {
		t.Errorf("bundle sign: exit %d %s", code, errOut)
	}
}
