package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/mtls"
)

// csrPEM is a PEM certificate request for id and dnsNames on a new key.
func csrPEM(t *testing.T, id string, dnsNames ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}, DNSNames: dnsNames}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// Certificate renewal as rampart serve offers it: a CA and the control
// plane's certificate made with rampart ca, a workload certificate renewed
// by a Reloader with the certificate it holds, and the refusals.
func TestServeRenewsCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := func(name string) string { return filepath.Join(dir, name) }
	runCLI(t, "ca", "init", "--trust-domain", "pay.test", "--data", data)
	runCLI(t, "ca", "issue", "--id", "spiffe://pay.test/control-plane", "--dns", "localhost", "--out", file("cp"), "--data", data)
	// An OAuth client registered for tls_client_auth with a workload's ID.
	runCLI(t, "client", "create", "ledger-oauth", "--init", "--scopes", "payment.read", "--cert-uri", "spiffe://pay.test/ledger", "--data", data)
	srv, m := startCLI(t, []string{
		`msg="certificate renewal at (https://[^"]+)" ca=\S+\n`,
		`msg="control plane listening on (https://[^"]+)" `,
	}, "serve", "--listen", "127.0.0.1:0", "--data", data, "--tls-cert", file("cp.pem"), "--tls-key", file("cp.key"))
	renewURL, base := m[0], m[1]
	// The URL it prints is one its certificate (for localhost) verifies.
	if want := strings.Replace(base, "127.0.0.1", "localhost", 1) + "/v1/certificates/renew"; renewURL != want {
		t.Fatalf("renewal at %s, want %s", renewURL, want)
	}
	runCLI(t, "ca", "issue", "--id", "spiffe://pay.test/ledger", "--dns", "ledger.pay.test", "--ttl", "1h", "--out", file("ledger"), "--data", data)
	roots := readPool(t, filepath.Join(data, "ca", "root.pem"))

	// The workload's certificate, renewed over the connection it
	// authenticates. Its clock is 50 minutes ahead, past two thirds of
	// the hour its certificate lasts, so that it renews at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cert := &mtls.Reloader{
		CertFile: file("ledger.pem"), KeyFile: file("ledger.key"),
		Now:    func() time.Time { return time.Now().Add(50 * time.Minute) },
		Logger: discardLogger(),
	}
	clientFor := func(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "localhost", GetClientCertificate: getCert,
		}}}
	}
	renew := mtls.Renewer(renewURL, clientFor(cert.GetClientCertificate), nil)
	// Renew presents the Reloader's own certificate, so it is set once
	// the Reloader exists; the first certificate comes from the files.
	cert.Renew = renew
	if err := cert.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := cert.Certificate().Leaf
	deadline := time.Now().Add(20 * time.Second)
	for cert.Certificate().Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("20 s after start, the Reloader has not renewed its certificate:\n%s", srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	renewed := cert.Certificate()
	checkRenewal := func(old *x509.Certificate, got *tls.Certificate) {
		t.Helper()
		leaf := got.Leaf
		id, err := mtls.IDOf(leaf)
		if err != nil || id.String() != "spiffe://pay.test/ledger" {
			t.Errorf("renewed certificate ID %v %v, want spiffe://pay.test/ledger", id, err)
		}
		if leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
			t.Error("the renewal has the old serial")
		}
		if strings.Join(leaf.DNSNames, " ") != "ledger.pay.test" {
			t.Errorf("renewed DNS names %v, want ledger.pay.test", leaf.DNSNames)
		}
		if life := leaf.NotAfter.Sub(leaf.NotBefore) - mtls.Backdate; life != time.Hour {
			t.Errorf("the renewal lives %v, want 1h, the lifetime the first certificate was issued with", life)
		}
		if len(got.Certificate) != 2 {
			t.Errorf("the renewal's chain has %d certificates, want 2 (leaf, issuing)", len(got.Certificate))
		}
		inter := x509.NewCertPool()
		for _, der := range got.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the renewal does not verify against the CA root: %v", err)
		}
	}
	checkRenewal(first, renewed)
	srv.waitFor(t, 0, regexp.MustCompile(`mtls: certificate renewed.*id=spiffe://pay.test/ledger`))

	// The renewed certificate renews in turn.
	again, err := renew(ctx, renewed)
	if err != nil {
		t.Fatalf("renewing the renewed certificate: %v", err)
	}
	checkRenewal(renewed.Leaf, again)

	// The internal CA's certificates renew; they do not log in as OAuth
	// clients (tls_client_auth keeps to --client-ca, absent here).
	tokResp, err := clientFor(cert.GetClientCertificate).PostForm(base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"ledger-oauth"}})
	if err != nil {
		t.Fatal(err)
	}
	tokBody, _ := io.ReadAll(tokResp.Body)
	tokResp.Body.Close()
	if tokResp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(tokBody), `"invalid_client"`) {
		t.Errorf("tls_client_auth with an internal CA certificate: %d %s", tokResp.StatusCode, tokBody)
	}

	// The issuing CA's expiry is a metric to alert on.
	resp, err := clientFor(nil).Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	issuingPEM, err := os.ReadFile(filepath.Join(data, "ca", "issuing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(issuingPEM)
	issuing, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("rampart_ca_issuing_expiry_timestamp_seconds %g\n", float64(issuing.NotAfter.Unix())); !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}

	post := func(c *http.Client, body []byte) (int, string) {
		t.Helper()
		resp, err := c.Post(renewURL, "application/x-pem-file", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error + ": " + e.Desc
	}
	withCert := clientFor(cert.GetClientCertificate)
	noCert := clientFor(nil)

	// No client certificate: 401.
	if code, msg := post(noCert, csrPEM(t, "spiffe://pay.test/ledger", "ledger.pay.test")); code != http.StatusUnauthorized || !strings.HasPrefix(msg, "unauthorized: ") {
		t.Errorf("without a client certificate: %d %s, want 401", code, msg)
	}
	// Another workload's ID, or a DNS name the certificate lacks: 403.
	if code, msg := post(withCert, csrPEM(t, "spiffe://pay.test/payments")); code != http.StatusForbidden ||
		msg != "forbidden: the request is for spiffe://pay.test/payments, the client certificate for spiffe://pay.test/ledger" {
		t.Errorf("a request for another ID: %d %q, want 403", code, msg)
	}
	if code, msg := post(withCert, csrPEM(t, "spiffe://pay.test/ledger", "ledger.pay.test", "payments.pay.test")); code != http.StatusForbidden || !strings.Contains(msg, `"payments.pay.test"`) {
		t.Errorf("a request adding a DNS name: %d %q, want 403", code, msg)
	}
	if code, msg := post(withCert, []byte("not a request")); code != http.StatusBadRequest {
		t.Errorf("a body that is no CSR: %d %q, want 400", code, msg)
	}

	// A certificate from another CA, even for the same ID, does not get
	// past the handshake.
	other := filepath.Join(dir, "other")
	runCLI(t, "ca", "init", "--trust-domain", "pay.test", "--data", other)
	runCLI(t, "ca", "issue", "--id", "spiffe://pay.test/ledger", "--out", file("impostor"), "--data", other)
	impostor, err := tls.LoadX509KeyPair(file("impostor.pem"), file("impostor.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := clientFor(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &impostor, nil })
	if resp, err := c.Post(renewURL, "application/x-pem-file", bytes.NewReader(csrPEM(t, "spiffe://pay.test/ledger"))); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA: %d, want a refused handshake", resp.StatusCode)
	}

	// The rest of the control plane needs no client certificate.
	resp, err = noCert.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz without a client certificate: %v %v", resp, err)
	}
	resp.Body.Close()
}

// Without TLS, a CA in the data directory does not make a renewal
// endpoint: the handler needs client certificates. rampart serve says so.
func TestServeCAWithoutTLSWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	data := filepath.Join(t.TempDir(), "data")
	runCLI(t, "ca", "init", "--trust-domain", "pay.test", "--data", data)
	srv, m := startCLI(t, []string{`msg="control plane listening on (http://[^"]+)"`}, "serve", "--listen", "127.0.0.1:0", "--data", data)
	want := `level=WARN msg="the CA in ` + filepath.Join(data, "ca") + ` renews certificates only over TLS: give rampart serve --tls-cert and --tls-key"` + "\n"
	if log := srv.log.String(); !strings.Contains(log, want) || strings.Contains(log, "certificate renewal at") {
		t.Errorf("stderr:\n%s\nwant the line %q and no renewal endpoint", log, want)
	}
	resp, err := http.Post(m[0]+"/v1/certificates/renew", "application/x-pem-file", bytes.NewReader(csrPEM(t, "spiffe://pay.test/ledger")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /v1/certificates/renew over http: %d, want 404", resp.StatusCode)
	}
}
