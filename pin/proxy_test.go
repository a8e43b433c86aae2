package pin_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// tunnelProxy is an HTTP CONNECT proxy (RFC 9110 §9.3.6) that sends every
// tunnel to backend, whatever the requested authority, and remembers what
// it was asked.
type tunnelProxy struct {
	URL *url.URL

	mu      sync.Mutex
	backend string
	targets []string      // the CONNECT request targets, in order
	headers []http.Header // their header fields
	status  int           // answer CONNECT with this status; 0 means 200
}

func newTunnelProxy(t *testing.T, backend string) *tunnelProxy {
	t.Helper()
	p := &tunnelProxy{backend: backend}
	s := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(s.Close)
	p.URL, _ = url.Parse(s.URL)
	return p
}

func (p *tunnelProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.RequestURI)
	p.headers = append(p.headers, r.Header.Clone())
	status, backend := p.status, p.backend
	p.mu.Unlock()
	if status != 0 && status != http.StatusOK {
		http.Error(w, "no", status)
		return
	}
	tunnel(w, backend)
}

// tunnel answers a CONNECT with 200 and splices the connection to backend.
func tunnel(w http.ResponseWriter, backend string) {
	up, err := net.Dial("tcp", backend)
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
}

func (p *tunnelProxy) tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

func proxiedTransport(p *url.URL, w *world, http2 bool) *http.Transport {
	return &http.Transport{
		Proxy:             http.ProxyURL(p),
		TLSClientConfig:   &tls.Config{RootCAs: w.pool},
		ForceAttemptHTTP2: http2,
	}
}

// waitErr reads the rest of body and returns the read error; the guard
// only bounds a broken implementation, a correct one returns at once.
func waitErr(t *testing.T, body io.Reader) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the connection checked under the old pins was not closed")
		return nil
	}
}

// P1: an HTTP/2 connection through a CONNECT proxy that is busy when
// SetPolicy installs pins that refuse its server must not carry another
// request, during the open stream or after it.
func TestProxiedH2ReuseAfterSetPolicy(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	defer close(release)
	s := slowServer(t, w.leaf.TLS(), true, release)
	proxy := newTunnelProxy(t, s.Listener.Addr().String())
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(proxiedTransport(proxy.URL, w, true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()

	resp, err := c.Get("https://" + host + "/slow") // a streaming response, open
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("negotiated HTTP/%d through the proxy, want 2", resp.ProtoMajor)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	for i := range 3 {
		if err := fetchHost(c); err == nil {
			t.Fatalf("request %d during the open stream was served over the connection the new pins refuse", i+1)
		}
	}
	if err := waitErr(t, resp.Body); err == nil {
		t.Fatal("the open stream ended normally: its connection was not closed by SetPolicy")
	}
	before := len(proxy.tunnels())
	for i := range 5 {
		mismatch(t, fetchHost(c)) // each a fresh, refused handshake
		if got := len(proxy.tunnels()); got != before+i+1 {
			t.Fatalf("request %d: %d tunnels, want %d: a pooled connection was reused", i+1, got, before+i+1)
		}
	}
}

// P1 over HTTP/1.1: a request queued while the connection is busy must not
// put the connection back into the idle pool after its response ends.
func TestProxiedH1ReuseAfterSetPolicy(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	s := slowServer(t, w.leaf.TLS(), false, release)
	proxy := newTunnelProxy(t, s.Listener.Addr().String())
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(proxiedTransport(proxy.URL, w, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()

	resp, err := c.Get("https://" + host + "/slow")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	if resp.ProtoMajor != 1 {
		t.Fatalf("negotiated HTTP/%d, want 1.1", resp.ProtoMajor)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	mismatch(t, fetchHost(c)) // during the busy period: a new tunnel, refused
	close(release)
	err = waitErr(t, resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("the busy response ended normally: its connection was not closed by SetPolicy")
	}
	for range 3 {
		mismatch(t, fetchHost(c))
	}
}

// rogueAPI is the attacker's server: it keeps the Authorization header of
// every request it receives, by path, and streams /stream until released.
type rogueAPI struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (a *rogueAPI) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen[path])
}

func newRogueAPI(t *testing.T, cert tls.Certificate, http2 bool, release chan struct{}) (*rogueAPI, string) {
	t.Helper()
	a := &rogueAPI{seen: map[string][]string{}}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen[r.URL.Path] = append(a.seen[r.URL.Path], r.Header.Get("Authorization"))
		a.mu.Unlock()
		if r.URL.Path == "/stream" {
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
	return a, s.Listener.Addr().String()
}

// P1, the deployment case: a rule rolled out report-only (the documented
// path) while an attacker with a certificate from a trusted CA already
// intercepts; the app is busy behind a corporate proxy; SetPolicy switches
// the rule to enforce, as a bundle does through the Updater. From then on
// no request, and so no credential, may reach the attacker.
func TestReportOnlyToEnforceViaProxy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http2 bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			release := make(chan struct{})
			defer close(release)
			rogue, addr := newRogueAPI(t, w.rogueLeaf.TLS(), tc.http2, release)
			proxy := newTunnelProxy(t, addr)
			pins := []pin.Pin{spki(w.leaf), w.backupPin}
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Mode: pin.ReportOnly, Pins: pins}))
			c, err := v.Client(proxiedTransport(proxy.URL, w, tc.http2))
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			call := func(path string) (*http.Response, error) {
				req, _ := http.NewRequest(http.MethodGet, "https://"+host+path, nil)
				req.Header.Set("Authorization", "Bearer api-secret")
				return c.Do(req)
			}
			stream, err := call("/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Body.Close()
			for range 2 { // report-only: the attacker is served
				resp, err := call("/before")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}

			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Mode: pin.Enforce, Pins: pins}))
			for i := range 5 {
				if resp, err := call("/after"); err == nil {
					resp.Body.Close()
					t.Errorf("request %d after the switch to enforce was answered", i+1)
				}
			}
			if n := rogue.count("/after"); n != 0 {
				t.Fatalf("%d requests with their Authorization header reached the attacker after the switch to enforce", n)
			}
			if err := waitErr(t, stream.Body); err == nil {
				t.Fatal("the open stream to the attacker survived the switch to enforce")
			}
		})
	}
}

// The connection to the proxy and the tunnel are the verifier's now; what
// net/http did for a proxy must still happen: Proxy-Authorization from the
// proxy URL's user info, ProxyConnectHeader, GetProxyConnectHeader,
// OnProxyConnectResponse, and a refused CONNECT fails the request.
func TestProxyConnectRequest(t *testing.T) {
	w := newWorld(t)
	s := serve(t, w.leaf.TLS(), serverOptions{http2: true})
	proxy := newTunnelProxy(t, s.Listener.Addr().String())
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))

	u := *proxy.URL
	u.User = url.UserPassword("alice", "s3cret")
	base := proxiedTransport(&u, w, true)
	base.ProxyConnectHeader = http.Header{"X-Corp": {"static"}}
	var seen *http.Response
	base.OnProxyConnectResponse = func(_ context.Context, pu *url.URL, req *http.Request, resp *http.Response) error {
		if pu.Host != u.Host || req.Method != http.MethodConnect {
			t.Errorf("OnProxyConnectResponse(%v, %s)", pu, req.Method)
		}
		seen = resp
		return nil
	}
	c, err := v.Client(base)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get("https://" + host + ":8443/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTP/%d through the proxy, want HTTP/2 as without one", resp.ProtoMajor)
	}
	if got := proxy.tunnels(); len(got) != 1 || got[0] != host+":8443" {
		t.Fatalf("CONNECT targets %q, want [%s:8443]", got, host)
	}
	h := proxy.headers[0]
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")); h.Get("Proxy-Authorization") != want {
		t.Errorf("Proxy-Authorization = %q, want %q", h.Get("Proxy-Authorization"), want)
	}
	if h.Get("X-Corp") != "static" {
		t.Errorf("ProxyConnectHeader not sent: %v", h)
	}
	if seen == nil || seen.StatusCode != http.StatusOK {
		t.Errorf("OnProxyConnectResponse saw %v", seen)
	}

	// GetProxyConnectHeader wins over ProxyConnectHeader, as in net/http.
	base.GetProxyConnectHeader = func(_ context.Context, _ *url.URL, target string) (http.Header, error) {
		return http.Header{"X-Target": {target}}, nil
	}
	c, err = v.Client(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := fetchHost(c); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	if h := proxy.headers[1]; h.Get("X-Target") != host+":443" || h.Get("X-Corp") != "" {
		t.Errorf("GetProxyConnectHeader: sent %v", h)
	}

	// OnProxyConnectResponse can refuse the tunnel.
	errNo := errors.New("not this proxy")
	base.OnProxyConnectResponse = func(context.Context, *url.URL, *http.Request, *http.Response) error { return errNo }
	c, _ = v.Client(base)
	if err := fetchHost(c); !errors.Is(err, errNo) {
		t.Errorf("OnProxyConnectResponse error: got %v", err)
	}

	// A proxy that refuses CONNECT fails the request.
	base.OnProxyConnectResponse = nil
	proxy.mu.Lock()
	proxy.status = http.StatusForbidden
	proxy.mu.Unlock()
	c, _ = v.Client(base)
	if err := fetchHost(c); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("refused CONNECT: err = %v, want one naming the 403", err)
	}
}

// Through an https proxy, the connection to the proxy is TLS too (pinned
// under the proxy's name when the policy pins it), and the origin is
// pinned inside the tunnel and closed by SetPolicy like a direct one.
func TestHTTPSProxy(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	defer close(release)
	origin := slowServer(t, w.leaf.TLS(), true, release)
	proxyLeaf := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"proxy.corp.test"}})
	ps := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(rw, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		tunnel(rw, origin.Listener.Addr().String())
	}))
	ps.TLS = &tls.Config{Certificates: []tls.Certificate{proxyLeaf.TLS()}}
	ps.StartTLS()
	defer ps.Close()
	_, port, _ := net.SplitHostPort(ps.Listener.Addr().String())
	pu := &url.URL{Scheme: "https", Host: "proxy.corp.test:" + port}
	base := proxiedTransport(pu, w, true)
	d := &net.Dialer{}
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != pu.Host {
			t.Errorf("dialled %s, want the proxy %s", addr, pu.Host)
		}
		return d.DialContext(ctx, network, ps.Listener.Addr().String())
	}
	pins := []pin.Pin{spki(w.leaf), w.backupPin}
	proxyRule := pin.Domain{Name: "proxy.corp.test", Pins: []pin.Pin{spki(proxyLeaf), w.backupPin}}
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: pins}, proxyRule))
	c, err := v.Client(base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + host + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTP/%d to the origin, want 2", resp.ProtoMajor)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}, proxyRule))
	if err := waitErr(t, resp.Body); err == nil {
		t.Fatal("the tunnelled connection the new pins refuse was not closed")
	}
	mismatch(t, fetchHost(c))

	// A proxy the policy pins to other keys is refused.
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: pins},
		pin.Domain{Name: "proxy.corp.test", Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	if me := mismatch(t, fetchHost(c)); me.Host != "proxy.corp.test" {
		t.Errorf("mismatch for %s, want the proxy", me.Host)
	}
}

// socks5Server is a minimal SOCKS5 proxy (RFC 1928, with RFC 1929
// username/password authentication) that connects every request to
// backend and records the requested destination.
func socks5Server(t *testing.T, user, pass, backend string) (addr string, dests chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dests = make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var hdr [2]byte
				if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
					return
				}
				methods := make([]byte, hdr[1])
				io.ReadFull(br, methods)
				c.Write([]byte{5, 2}) // username/password
				ver, _ := br.ReadByte()
				ul, _ := br.ReadByte()
				u := make([]byte, ul)
				io.ReadFull(br, u)
				pl, _ := br.ReadByte()
				p := make([]byte, pl)
				io.ReadFull(br, p)
				if ver != 1 || string(u) != user || string(p) != pass {
					c.Write([]byte{1, 1})
					return
				}
				c.Write([]byte{1, 0})
				var req [4]byte
				if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 || req[3] != 3 {
					return
				}
				nl, _ := br.ReadByte()
				name := make([]byte, int(nl)+2)
				io.ReadFull(br, name)
				dests <- net.JoinHostPort(string(name[:nl]), strconv.Itoa(int(binary.BigEndian.Uint16(name[nl:]))))
				up, err := net.Dial("tcp", backend)
				if err != nil {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				defer up.Close()
				c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
				go func() { io.Copy(up, br); up.Close() }()
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), dests
}

// A SOCKS5 proxy (socks5:// and socks5h://, both resolved by the proxy as
// in net/http) carries pinned, tracked connections too.
func TestSOCKS5Proxy(t *testing.T) {
	for _, scheme := range []string{"socks5", "socks5h"} {
		t.Run(scheme, func(t *testing.T) {
			w := newWorld(t)
			release := make(chan struct{})
			defer close(release)
			s := slowServer(t, w.leaf.TLS(), true, release)
			addr, dests := socks5Server(t, "bob", "pw", s.Listener.Addr().String())
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
			c, err := v.Client(proxiedTransport(&url.URL{Scheme: scheme, User: url.UserPassword("bob", "pw"), Host: addr}, w, true))
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			resp, err := c.Get("https://" + host + "/slow")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if d := <-dests; d != host+":443" {
				t.Errorf("SOCKS destination %s, want %s:443", d, host)
			}
			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
			if err := waitErr(t, resp.Body); err == nil {
				t.Fatal("the SOCKS connection the new pins refuse was not closed")
			}
			mismatch(t, fetchHost(c))
		})
	}
}

// Plain http requests still go through the proxy as net/http sends them
// (absolute-form, no CONNECT): pinning changes nothing for them.
func TestProxyPlainHTTPUnchanged(t *testing.T) {
	var got string
	fwd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Method + " " + r.RequestURI
		io.WriteString(w, "via proxy")
	}))
	defer fwd.Close()
	w := newWorld(t)
	pu, _ := url.Parse(fwd.URL)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	tr, err := v.Transport(proxiedTransport(pu, w, true))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://plain.test/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "via proxy" || got != "GET http://plain.test/x" {
		t.Fatalf("got %q for %q", body, got)
	}
}

// A transport whose Proxy is changed after Transport returned makes its
// proxied handshakes itself: the config's hook still pins them, and
// SetPolicy closes their idle connections, as its doc says.
func TestTransportChangedAfterwards(t *testing.T) {
	w := newWorld(t)
	legit := serve(t, w.leaf.TLS(), serverOptions{}).Listener.Addr().String()
	rogue := serve(t, w.rogueLeaf.TLS(), serverOptions{}).Listener.Addr().String()
	proxy := newTunnelProxy(t, legit)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	tr, err := v.Transport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.pool}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Proxy = http.ProxyURL(proxy.URL) // behind the verifier's back
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	if err := fetchHost(c); err != nil {
		t.Fatal(err)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	mismatch(t, fetchHost(c)) // the idle connection was closed; the new handshake is refused

	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	proxy.mu.Lock()
	proxy.backend = rogue
	proxy.mu.Unlock()
	mismatch(t, fetchHost(c))
}

// net/http pools a pinned transport's https connections by address (its
// Proxy answers "none" to take the proxy leg over), so each address is
// routed one way: a Proxy that chooses by request (by tenant, or direct
// for some requests) gets *pin.ProxyChangedError for a request that would
// take another route than the address's first, instead of a connection
// made another way or with another tenant's proxy credentials (an
// independent review of P1's fix). Over HTTP/1.1: for HTTP/2, net/http
// hands a request to a pooled connection of its address before it asks
// Proxy at all, with a pinned transport or without.
func TestProxyDecisionPerAddress(t *testing.T) {
	w := newWorld(t)
	s := serve(t, w.leaf.TLS(), serverOptions{})
	proxy := newTunnelProxy(t, s.Listener.Addr().String())
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	base := proxiedTransport(proxy.URL, w, false)
	base.Proxy = func(r *http.Request) (*url.URL, error) {
		switch tenant := r.Header.Get("X-Tenant"); tenant {
		case "direct":
			return nil, nil
		default:
			u := *proxy.URL
			u.User = url.UserPassword(tenant, "secret-of-"+tenant)
			return &u, nil
		}
	}
	c, err := v.Client(base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	get := func(tenant, url string) error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Tenant", tenant)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	if err := get("alice", "https://"+host+"/"); err != nil {
		t.Fatal(err)
	}
	var changed *pin.ProxyChangedError
	err = get("bob", "https://"+host+"/")
	if !errors.As(err, &changed) || changed.Addr != host+":443" || strings.Contains(err.Error(), "secret-of") {
		t.Fatalf("bob through alice's route: %v, want a ProxyChangedError without the password", err)
	}
	if err := get("direct", "https://"+host+"/"); !errors.As(err, &changed) || changed.To != "direct" {
		t.Errorf("direct after a proxy: %v", err)
	}
	if got := proxy.tunnels(); len(got) != 1 {
		t.Errorf("CONNECTs %q, want alice's only", got)
	}
	if h := proxy.headers[0]; h.Get("Proxy-Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:secret-of-alice")) {
		t.Errorf("the tunnel was made with %q", h.Get("Proxy-Authorization"))
	}
}
