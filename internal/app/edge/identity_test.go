package edge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/mtls"
)

// Usability 17: with identity.renew the gateway renews its own service
// certificate at the control plane's renewal endpoint (a real
// mtls.RenewHandler over TLS, asking for the current certificate), keeps
// calling its upstream with the new one, and writes it to its files so
// that a restart starts from it.
func TestIdentityRenewsAtTheControlPlane(t *testing.T) {
	t.Parallel()
	// A CA made hours ago, so that it can have issued a certificate that
	// is most of its way through its life.
	ca, _, err := mtls.NewCA(testTD, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)
	dir := t.TempDir()
	rootsFile := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(rootsFile, testpki.CertPEM(ca.Root), 0o644); err != nil {
		t.Fatal(err)
	}

	var renewals atomic.Int64
	renew := mtls.RenewHandler(ca, mtls.RenewPolicy{MaxLifetime: time.Hour})
	cp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renewals.Add(1)
		renew.ServeHTTP(w, r)
	}))
	cp.Config.ErrorLog = log.New(io.Discard, "", 0)
	cp.TLS = &tls.Config{
		Certificates: []tls.Certificate{*issueAt(t, ca, spiffeid.RequireFromPath(testTD, "/control-plane"), time.Now(), time.Hour, "localhost")},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    roots,
	}
	cp.StartTLS()
	t.Cleanup(cp.Close)
	_, port, _ := net.SplitHostPort(cp.Listener.Addr().String())
	renewURL := "https://localhost:" + port + "/v1/certificates/renew"

	// Issued 50 minutes ago for an hour: past two thirds of its life, so
	// renewed as soon as the gateway starts.
	old := issueAt(t, ca, gatewayID, time.Now().Add(-50*time.Minute), time.Hour)
	certFile, keyFile := filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw.key")
	writePair(t, certFile, keyFile, old)

	// Every answer closes its connection, so that each request makes a
	// new handshake with the certificate the gateway holds.
	up := startUpstream(t, mtls.NewStatic(*issueAt(t, ca, paymentsID, time.Now(), time.Hour)), x509bundle.FromX509Authorities(testTD, []*x509.Certificate{ca.Root}), gatewayID)
	up.closeEvery = 1
	tg := startEdge(t, dir, fmt.Sprintf("identity: {cert: %s, key: %s, roots: %s, renew: {url: '%s'}}\nroutes:\n%s",
		certFile, keyFile, rootsFile, renewURL, httpsRoute("/v1/", up.URL, "auth: none")))

	var renewed *tls.Certificate
	eventually(t, "the renewed certificate in the files", func() bool {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil || c.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
			return false
		}
		// The files are written before the gateway swaps the
		// certificate in: wait for both.
		if cur := tg.e.Identity().Certificate(); cur.Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
			return false
		}
		renewed = &c
		return true
	})
	if renewals.Load() == 0 {
		t.Fatal("the files changed, but the renewal endpoint was not called")
	}
	if id, err := mtls.IDOf(renewed.Leaf); err != nil || id != gatewayID {
		t.Errorf("renewed for %v (%v), want %s", id, err, gatewayID)
	}
	if life := renewed.Leaf.NotAfter.Sub(time.Now()); life < 50*time.Minute {
		t.Errorf("the renewed certificate lives %v more, want about an hour", life)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v %v, want 0600", fi.Mode(), err)
	}
	// The upstream sees the new certificate.
	resp, body := tg.get(t, "/v1/payments")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body); s.PeerSerial != renewed.Leaf.SerialNumber.String() {
		t.Errorf("the upstream saw serial %s, want the renewed %s (old %s)", s.PeerSerial, renewed.Leaf.SerialNumber, old.Leaf.SerialNumber)
	}
}
