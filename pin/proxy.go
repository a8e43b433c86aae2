package pin

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/net/proxy"
)

// The proxy leg of a pinned transport. When net/http reaches an https
// origin through a proxy, it makes the TLS connection itself, inside the
// tunnel, with the config's hook: the verifier never sees that
// connection, so SetPolicy could not close it, and net/http keeps reusing
// a busy one (its HTTP/2 pool skips connections with open streams; its
// HTTP/1.1 pool takes a busy one back). So the verifier takes the proxy
// leg over: the transport's Proxy answers "no proxy" for https requests
// and remembers the proxy it would have used, by the address net/http
// then hands to DialTLSContext, which tunnels through that proxy and runs
// the pinned, tracked handshake over the tunnel.

// proxyRoutes maps the address of an https origin ("host:port", as
// net/http writes it) to the proxy the transport's Proxy chose for it
// (the first time; it may not change). It holds one entry per address
// the transport ever reached through its Proxy. An address that is not in the map is dialled directly:
// origins without a proxy, and https proxies themselves, which net/http
// dials through DialTLSContext for plain http requests.
type proxyRoutes struct{ m sync.Map } // string -> *proxyRoute

func (r *proxyRoutes) lookup(addr string) *url.URL {
	if r == nil {
		return nil
	}
	if route, ok := r.m.Load(addr); ok {
		return route.(*proxyRoute).u
	}
	return nil
}

// takeProxyLeg wraps t.Proxy so that https requests reach DialTLSContext
// without a proxy, and returns where DialTLSContext finds the proxy to
// use (nil when t has no Proxy).
func (v *Verifier) takeProxyLeg(t *http.Transport) *proxyRoutes {
	choose := t.Proxy
	if choose == nil {
		return nil
	}
	routes := new(proxyRoutes)
	t.Proxy = func(req *http.Request) (*url.URL, error) {
		u, err := choose(req)
		if err != nil || req.URL.Scheme != "https" {
			return u, err
		}
		// net/http pools connections by address alone once Proxy says
		// "none": every request to addr shares them, whatever proxy it
		// would have taken. So an address is routed one way for the
		// transport's life; a Proxy that changes its mind for an address
		// (by request header, by tenant) gets an error rather than a
		// connection made through another route, or with another
		// tenant's proxy credentials.
		addr := canonicalAddr(req.URL)
		route := &proxyRoute{u: u}
		if prev, loaded := routes.m.LoadOrStore(addr, route); loaded && !prev.(*proxyRoute).same(route) {
			return nil, &ProxyChangedError{Addr: addr, From: prev.(*proxyRoute).String(), To: route.String()}
		}
		return nil, nil
	}
	return routes
}

// proxyRoute is how an address is reached: through u, or directly (nil).
type proxyRoute struct{ u *url.URL }

func (r *proxyRoute) same(o *proxyRoute) bool {
	return r.u == nil && o.u == nil || r.u != nil && o.u != nil && r.u.String() == o.u.String()
}

func (r *proxyRoute) String() string {
	if r.u == nil {
		return "direct"
	}
	return r.u.Redacted()
}

// ProxyChangedError is returned for a request whose transport's Proxy
// chose another proxy (or none) for its address than it chose for that
// address before: a pinned transport routes each address one way (see
// Verifier.Transport). Use one transport per proxy.
type ProxyChangedError struct {
	Addr     string
	From, To string // "direct" or the proxy URL, without its password
}

func (e *ProxyChangedError) Error() string {
	return fmt.Sprintf("pin: the proxy for %s changed from %s to %s: a pinned transport reaches each address one way; use one transport per proxy", e.Addr, e.From, e.To)
}

// canonicalAddr is the address net/http dials for u: the host in ASCII
// (IDNA) and the scheme's default port when u has none.
func canonicalAddr(u *url.URL) string {
	h := u.Hostname()
	if !isASCII(h) {
		if a, err := idna.Lookup.ToASCII(h); err == nil {
			h = a
		}
	}
	port := u.Port()
	if port == "" {
		port = schemePort(u.Scheme)
	}
	return net.JoinHostPort(h, port)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func schemePort(scheme string) string {
	switch scheme {
	case "", "http":
		return "80"
	case "https":
		return "443"
	case "socks5", "socks5h":
		return "1080"
	}
	return ""
}

// proxyConnectTimeout bounds a CONNECT exchange, as net/http does, for a
// proxy that accepts the connection and never answers.
const proxyConnectTimeout = time.Minute

// proxyDial returns a dial function that reaches its address through the
// proxy at u. Errors are wrapped in a *net.OpError with Op "proxyconnect",
// as net/http reports them.
func (v *Verifier) proxyDial(t *http.Transport, u *url.URL, dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := v.tunnel(ctx, t, u, dial, addr)
		if err != nil {
			return nil, &net.OpError{Op: "proxyconnect", Net: network, Err: err}
		}
		return c, nil
	}
}

func (v *Verifier) tunnel(ctx context.Context, t *http.Transport, u *url.URL, dial dialFunc, addr string) (net.Conn, error) {
	proxyAddr := canonicalAddr(u)
	switch u.Scheme {
	case "socks5", "socks5h":
		// Both send the host name to the proxy, as net/http does.
		var auth *proxy.Auth
		if u.User != nil {
			auth = &proxy.Auth{User: u.User.Username()}
			auth.Password, _ = u.User.Password()
		}
		d, err := proxy.SOCKS5("tcp", proxyAddr, auth, contextDialer(dial))
		if err != nil {
			return nil, err
		}
		return d.(proxy.ContextDialer).DialContext(ctx, "tcp", addr)
	case "", "http", "https":
	default:
		return nil, fmt.Errorf("pin: proxy %s: scheme %q is not supported (want http, https, socks5 or socks5h)", u.Host, u.Scheme)
	}
	conn, err := dial(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		cfg := t.TLSClientConfig.Clone()
		cfg.NextProtos = nil // CONNECT is an HTTP/1.1 exchange
		tc, err := v.dialTLS(ctx, func(context.Context, string, string) (net.Conn, error) { return conn, nil },
			cfg, "tcp", proxyAddr, t.TLSHandshakeTimeout)
		if err != nil {
			closeSocket(conn)
			return nil, err
		}
		conn = tc
	}
	c, err := connect(ctx, t, u, conn, addr)
	if err != nil {
		closeSocket(conn)
		return nil, err
	}
	return c, nil
}

// connect asks the proxy on conn for a tunnel to addr (RFC 9110 §9.3.6),
// with the header fields net/http would send.
func connect(ctx context.Context, t *http.Transport, u *url.URL, conn net.Conn, addr string) (net.Conn, error) {
	var hdr http.Header
	if t.GetProxyConnectHeader != nil {
		var err error
		if hdr, err = t.GetProxyConnectHeader(ctx, u, addr); err != nil {
			return nil, err
		}
	} else {
		hdr = t.ProxyConnectHeader
	}
	hdr = hdr.Clone()
	if hdr == nil {
		hdr = make(http.Header)
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass)))
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: hdr,
	}
	ctx, cancel := context.WithTimeout(ctx, proxyConnectTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	resp, br, err := exchange(conn, req, t.MaxResponseHeaderBytes)
	if !stop() {
		return nil, fmt.Errorf("pin: proxy %s: CONNECT %s: %w", u.Host, addr, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("pin: proxy %s: CONNECT %s: %w", u.Host, addr, err)
	}
	if t.OnProxyConnectResponse != nil {
		if err := t.OnProxyConnectResponse(ctx, u, req, resp); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pin: proxy %s refused CONNECT %s: %s", u.Host, addr, resp.Status)
	}
	if n := br.Buffered(); n > 0 {
		// Bytes after the proxy's answer belong to the tunnel. (A TLS
		// server speaks only after the ClientHello, so this is rare.)
		rest, _ := br.Peek(n)
		return &prefixConn{Conn: conn, prefix: rest}, nil
	}
	return conn, nil
}

// exchange writes req to conn and reads the answer's header, at most
// limit bytes of it (10 MiB when limit is 0, as in net/http).
func exchange(conn net.Conn, req *http.Request, limit int64) (*http.Response, *bufio.Reader, error) {
	if limit <= 0 {
		limit = 10 << 20
	}
	if err := req.Write(conn); err != nil {
		return nil, nil, err
	}
	lr := &io.LimitedReader{R: conn, N: limit}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if lr.N <= 0 {
			err = errors.New("answer header larger than the transport's MaxResponseHeaderBytes")
		}
		return nil, nil, err
	}
	// The header is read: the tunnel's bytes are not bounded.
	lr.N = 1<<63 - 1
	return resp, br, nil
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// contextDialer adapts a dial function to golang.org/x/net/proxy.
type contextDialer dialFunc

func (d contextDialer) Dial(network, addr string) (net.Conn, error) {
	return d(context.Background(), network, addr)
}

func (d contextDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d(ctx, network, addr)
}
