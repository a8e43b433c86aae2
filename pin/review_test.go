package pin_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// slowServer answers /slow after release is closed and everything else at
// once, so that a connection can be kept busy while pins change.
func slowServer(t *testing.T, cert tls.Certificate, http2 bool, release chan struct{}) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.EnableHTTP2 = http2
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// SetPolicy must not leave a busy connection checked under the old pins in
// service: HTTP/2 multiplexes new requests onto it, and HTTP/1.1 returns it
// to the pool when its response ends.
func TestSetPolicyClosesBusyConnectionsItRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http2 bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			release := make(chan struct{})
			defer close(release)
			s := slowServer(t, w.leaf.TLS(), tc.http2, release)
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
			c, err := v.Client(baseTransport(s.Listener.Addr().String(), w.pool))
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()

			resp, err := c.Get("https://" + host + "/slow") // headers arrive, body pending
			if err != nil {
				t.Fatal(err)
			}
			if (resp.ProtoMajor == 2) != tc.http2 {
				t.Fatalf("negotiated HTTP/%d", resp.ProtoMajor)
			}
			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, resp.Body)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the in-flight response ended normally; its connection was not closed")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the busy connection was not closed by SetPolicy")
			}
			resp.Body.Close()

			_, err = c.Get("https://" + host + "/")
			mismatch(t, err)
		})
	}
}

// Connections that the new policy still accepts are kept and reused.
func TestSetPolicyKeepsConnectionsItAccepts(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	close(release)
	s := slowServer(t, w.leaf.TLS(), true, release)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(baseTransport(s.Listener.Addr().String(), w.pool))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	reused := func() bool {
		var got bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { got = i.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/slow", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Keep this request open while the policy changes.
		v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{w.backupPin, spki(w.leaf)}}))
		io.Copy(io.Discard, resp.Body)
		return got
	}
	reused()
	if !reused() {
		t.Error("a busy HTTP/2 connection that the new policy accepts was not reused")
	}
}

// A TLS 1.3 ticket arrives after the handshake. A connection verified
// under the old policy must not file its ticket under the new one.
func TestLateTicketNotResumedUnderNewPolicy(t *testing.T) {
	w := newWorld(t)
	addr := lineServer(t, w.leaf.TLS(), tls.VersionTLS13)
	pins := []pin.Pin{spki(w.leaf), w.backupPin}
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: pins}))
	base := &tls.Config{RootCAs: w.pool, ServerName: host, ClientSessionCache: tls.NewLRUClientSessionCache(8)}

	ctx := context.Background()
	c, err := v.DialContext(ctx, "tcp", addr, base)
	if err != nil {
		t.Fatal(err)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: pins})) // before the ticket is read
	io.ReadAll(c)                                                  // the ticket arrives now
	c.Close()
	if resumed, err := dialLine(t, v, addr, base); err != nil || resumed {
		t.Fatalf("resumed=%v err=%v: a session learnt under the old policy was resumed under the new one", resumed, err)
	}
}

// Every spelling of a pinned IP address is pinned: crypto/x509 compares
// addresses by value, so an IPv4-mapped or non-canonical IPv6 form of the
// address verifies against the same certificate.
func TestIPAddressSpellings(t *testing.T) {
	w := newWorld(t)
	rogue := w.rogueInter.Issue(t, testpki.LeafOptions{}) // localhost, 127.0.0.1
	leaf := w.inter.Issue(t, testpki.LeafOptions{})
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{spki(leaf), w.backupPin}}))
	port := serve(t, rogue.TLS(), serverOptions{}).Listener.Addr().String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	for _, addr := range []string{"127.0.0.1:" + port, "[::ffff:127.0.0.1]:" + port} {
		_, err := v.DialContext(context.Background(), "tcp", addr, &tls.Config{RootCAs: w.pool})
		mismatch(t, err)
	}
}

// The error hands out copies: changing it does not change the policy.
func TestMismatchErrorDoesNotShareThePolicy(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	s := serve(t, w.rogueLeaf.TLS(), serverOptions{})
	_, err := get(t, v, s, w.pool)
	mismatch(t, err).Pins[0] = spki(w.rogueLeaf)
	_, err = get(t, v, s, w.pool)
	mismatch(t, err)
}

// An IP rule still refuses a connection whose verification was skipped
// when the hook does not know the name.
func TestIPRuleWithoutVerifiedChain(t *testing.T) {
	w := newWorld(t)
	leaf := w.inter.Issue(t, testpki.LeafOptions{})
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{spki(leaf), w.backupPin}}))
	cfg, err := v.TLSConfig(&tls.Config{RootCAs: w.pool})
	if err != nil {
		t.Fatal(err)
	}
	cfg.InsecureSkipVerify = true // behind the verifier's back
	_, err = tls.Dial("tcp", serve(t, leaf.TLS(), serverOptions{}).Listener.Addr().String(), cfg)
	if !errors.Is(err, pin.ErrNoVerifiedChain) {
		t.Fatalf("err = %v, want ErrNoVerifiedChain", err)
	}
}

// The expiry is the calendar date the caller wrote, in its location.
func TestNewPolicyExpiresKeepsTheCallersDate(t *testing.T) {
	zone := time.FixedZone("UTC+2", 2*3600)
	p := mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))},
		Expires: time.Date(2027, 6, 30, 0, 0, 0, 0, zone)})
	d := p.Match(host)
	if !d.Expires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) || d.Expired(time.Date(2027, 6, 30, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("expires = %v, want 2027-06-30 (still valid at noon that day)", d.Expires)
	}
}

// A pinned client does not follow a redirect to plain http.
func TestClientRefusesRedirectToHTTP(t *testing.T) {
	w := newWorld(t)
	s := httptest.NewUnstartedServer(http.RedirectHandler("http://"+host+"/", http.StatusFound))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{w.leaf.TLS()}}
	s.StartTLS()
	defer s.Close()
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(baseTransport(s.Listener.Addr().String(), w.pool))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("https://" + host + "/"); !errors.Is(err, pin.ErrInsecureRedirect) {
		t.Fatalf("err = %v, want ErrInsecureRedirect", err)
	}
}

// connectProxy is an HTTP CONNECT proxy that sends every tunnel to
// *backend, whatever the requested host.
func connectProxy(t *testing.T, backend *atomic.Value) *url.URL {
	t.Helper()
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", backend.Load().(string))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { io.Copy(up, brw); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(p.Close)
	u, _ := url.Parse(p.URL)
	return u
}

// Through a proxy the verifier makes the tunnel and the pinned handshake
// over it: pins hold there too, and SetPolicy closes the connections the
// new pins refuse (TestProxiedH2ReuseAfterSetPolicy has the busy ones).
func TestProxiedConnections(t *testing.T) {
	w := newWorld(t)
	legit := serve(t, w.leaf.TLS(), serverOptions{}).Listener.Addr().String()
	rogue := serve(t, w.rogueLeaf.TLS(), serverOptions{}).Listener.Addr().String()
	var backend atomic.Value
	backend.Store(legit)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(&http.Transport{Proxy: http.ProxyURL(connectProxy(t, &backend)), TLSClientConfig: &tls.Config{RootCAs: w.pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	fetch := func() error { return fetchHost(c) }
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	mismatch(t, fetch()) // the idle proxied connection was not reused

	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	backend.Store(rogue)
	mismatch(t, fetch())
}
