package pin_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const host = "api.payments.test"

func TestMain(m *testing.M) {
	// Verifiers log refused connections; tests that look at logs set their
	// own logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// world is a payment API's PKI and an attacker's: the rogue CA is trusted
// by clients (it is a compromised public CA), so only pinning stops it.
type world struct {
	root, inter           *testpki.CA
	leaf                  *testpki.Leaf
	rogueRoot, rogueInter *testpki.CA
	rogueLeaf             *testpki.Leaf
	backupKey             crypto.Signer // the spare key kept offline
	backupPin             pin.Pin
	pool                  *x509.CertPool
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{}
	w.root = testpki.NewRoot(t, "Payments Root CA")
	w.inter = w.root.NewIntermediate(t, "Payments Issuing CA")
	w.leaf = w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}})
	w.rogueRoot = testpki.NewRoot(t, "Compromised Public CA")
	w.rogueInter = w.rogueRoot.NewIntermediate(t, "Compromised Issuing CA")
	w.rogueLeaf = w.rogueInter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}})
	w.pool = testpki.Pool(w.root, w.rogueRoot)
	w.backupKey = testpki.NewKey(t, testpki.ECDSAP256)
	var err error
	if w.backupPin, err = pin.FromPrivateKey(w.backupKey); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustPolicy(t testing.TB, domains ...pin.Domain) *pin.Policy {
	t.Helper()
	p, err := pin.NewPolicy("", domains...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spki(l *testpki.Leaf) pin.Pin { return pin.FromCertificate(l.Cert) }

// serverOptions configure a test HTTPS server.
type serverOptions struct {
	minVersion, maxVersion uint16
	http2                  bool
}

// serve starts an HTTPS server on loopback presenting cert; it answers
// every request with "ok".
func serve(t *testing.T, cert tls.Certificate, o serverOptions) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: o.minVersion, MaxVersion: o.maxVersion}
	s.EnableHTTP2 = o.http2
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// baseTransport sends every connection to addr, whatever the URL's host,
// and trusts pool: what a client configured for a private CA looks like.
func baseTransport(addr string, pool *x509.CertPool) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}
}

// get fetches https://host/ through a pinned client connecting to s.
func get(t *testing.T, v *pin.Verifier, s *httptest.Server, pool *x509.CertPool) (*http.Response, error) {
	t.Helper()
	c, err := v.Client(baseTransport(s.Listener.Addr().String(), pool))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if string(body) != "ok" {
		t.Fatalf("body = %q, want ok", body)
	}
	return resp, nil
}

// fetchHost GETs https://host/ with c and drains the body, so that the
// connection goes back to the pool.
func fetchHost(c *http.Client) error {
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// recorder is a pin.Reporter that keeps failures.
type recorder struct {
	mu       sync.Mutex
	failures []*pin.Failure
}

func (r *recorder) Report(f *pin.Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, f)
}

func (r *recorder) all() []*pin.Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pin.Failure(nil), r.failures...)
}

// tlsServer accepts TLS connections on loopback with cfg and hands each to
// handle in its own goroutine, closing it afterwards. It returns the address.
func tlsServer(t testing.TB, cfg *tls.Config, handle func(*tls.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*tls.Conn))
			}()
		}
	}()
	return ln.Addr().String()
}

// lineServer is a raw TLS server that writes one line per connection and
// closes it: reading to EOF makes a TLS 1.3 client process its session
// tickets, so resumption can be tested without HTTP connection reuse.
func lineServer(t *testing.T, cert tls.Certificate, version uint16) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version}
	return tlsServer(t, cfg, func(c *tls.Conn) {
		bw := bufio.NewWriter(c)
		bw.WriteString("hello\n")
		bw.Flush()
	})
}
