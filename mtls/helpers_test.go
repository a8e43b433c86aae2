package mtls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

var (
	td       = spiffeid.RequireTrustDomainFromString("pay.internal")
	ledger   = spiffeid.RequireFromPath(td, "/ns/prod/sa/ledger")
	gateway  = spiffeid.RequireFromPath(td, "/ns/prod/sa/gateway")
	intruder = spiffeid.RequireFromPath(td, "/ns/dev/sa/intruder")
)

var discard = slog.New(slog.DiscardHandler)

func TestMain(m *testing.M) {
	// RenewHandler logs every renewal to the default logger.
	slog.SetDefault(discard)
	os.Exit(m.Run())
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, d spiffeid.TrustDomain, now time.Time) *CA {
	t.Helper()
	ca, _, err := NewCA(d, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a certificate for id on a new key, issued at now.
func issue(t testing.TB, ca *CA, id spiffeid.ID, ttl time.Duration, now time.Time, dns ...string) tls.Certificate {
	t.Helper()
	k := newKey(t)
	chain, err := ca.Issue(id, dns, ttl, k.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	return tlsCert(chain, k)
}

func tlsCert(chain []*x509.Certificate, k crypto.Signer) tls.Certificate {
	c := tls.Certificate{PrivateKey: k, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// rawCert signs a certificate from tmpl with parent's key, bypassing the
// CA's checks: what a thief of the issuing key could make.
func rawCert(t testing.TB, tmpl, parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// foreignRoot is a root of another organization that names trust domain
// d (none if d is zero) but carries no name constraints, and certificates
// it issued for ids.
func foreignRoot(t testing.TB, d spiffeid.TrustDomain, ids ...spiffeid.ID) (*x509.Certificate, []tls.Certificate) {
	t.Helper()
	rk := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: d.Name() + " root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	name := "root without a trust domain"
	if !d.IsZero() {
		tmpl.URIs, name = []*url.URL{d.ID().URL()}, d.Name()+" root"
	}
	tmpl.Subject.CommonName = name
	root := rawCert(t, tmpl, tmpl, rk, rk.Public())
	var certs []tls.Certificate
	for _, id := range ids {
		lk := newKey(t)
		leaf := rawCert(t, &x509.Certificate{
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), URIs: []*url.URL{id.URL()},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		}, root, rk, lk.Public())
		certs = append(certs, tlsCert([]*x509.Certificate{leaf, root}, lk))
	}
	return root, certs
}

// handshake runs one TLS handshake over loopback between a server with
// scfg and a client with ccfg, and a one-byte exchange so that errors the
// server sends after the client's last flight (TLS 1.3) reach the client.
func handshake(t testing.TB, scfg, ccfg *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, scfg)
		if err := tc.Handshake(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		tc.Write([]byte("x"))
		io.Copy(io.Discard, tc)
	}()
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(nc, ccfg)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
	}
	tc.Close()
	return <-errc, clientErr
}

// serveTLS serves h over TLS with cfg on loopback until the test ends and
// returns its address. Handshake errors go to the test log.
func serveTLS(t testing.TB, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// writePair writes a certificate chain and key as PEM files, atomically
// (each written aside, then renamed into place).
func writePair(t testing.TB, certFile, keyFile string, c tls.Certificate) {
	t.Helper()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{keyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), certFile: chain} {
		tmp := filepath.Join(filepath.Dir(file), ".tmp-"+filepath.Base(file))
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
}

// started starts r and stops it at the end of the test, waiting for its
// background loop to end.
func started(t testing.TB, r *Reloader) *Reloader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if r.done != nil {
			<-r.done
		}
	})
	return r
}

func serial(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }

func wantErrAs[E error](t testing.TB, err error) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a %T", err, err, e)
	}
	return e
}
