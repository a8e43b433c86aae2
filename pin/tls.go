package pin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"weak"
)

// Errors returned when a configuration cannot be pinned safely.
var (
	// ErrInsecure: the base config skips certificate verification. Pins are
	// checked against verified chains only; to trust a private CA, put it
	// in RootCAs instead.
	ErrInsecure = errors.New("pin: base tls.Config has InsecureSkipVerify set; pinning narrows certificate verification and never replaces it (trust a private CA through RootCAs)")
	// ErrHookSet: the base config already has a VerifyConnection hook,
	// which pinning would silently replace.
	ErrHookSet = errors.New("pin: base tls.Config already has a VerifyConnection hook; pinning will not replace it (call your check from a wrapper around the pinned connection, or pin a config without the hook)")
	// ErrTLSDialer: the base transport has its own TLS dialer, which would
	// bypass the per-connection pin check.
	ErrTLSDialer = errors.New("pin: base http.Transport has DialTLS or DialTLSContext set; pinning needs to own the TLS dial")
	// ErrServerNameSet: the base transport's TLSClientConfig has a
	// ServerName, under which every URL would be verified and pinned,
	// whatever its host: a pinned host would silently get another name's
	// rule. Leave ServerName empty (each connection uses its URL's host);
	// to reach a host at a fixed address, set a DialContext that connects
	// there.
	ErrServerNameSet = errors.New("pin: base http.Transport's TLSClientConfig has ServerName set; every URL would be verified and pinned under that one name instead of its own host (leave it empty, and use DialContext to connect a host name to a fixed address)")
)

// TLSConfig returns a clone of base (nil means a zero tls.Config) with a
// VerifyConnection hook that checks pins, for clients that make TLS
// connections themselves. Everything else in base is kept: RootCAs (for a
// private CA), ServerName, protocol versions, client certificates.
//
// The hook learns the host from the connection's server name, falling back
// to base.ServerName. IP addresses are not sent as SNI: when neither names
// the host, every IP rule whose address the verified leaf certificate covers
// is applied, so a pinned address is never silently unpinned. The hook does
// not know the port: its reports carry port 0. [Verifier.DialContext]
// and [Verifier.Transport] know both.
//
// A ClientSessionCache in base is wrapped so that [Verifier.SetPolicy]
// invalidates its sessions. TLSConfig refuses a base that skips
// verification ([ErrInsecure]) or already has a VerifyConnection hook
// ([ErrHookSet]).
func (v *Verifier) TLSConfig(base *tls.Config) (*tls.Config, error) {
	return v.hookedConfig(base, nil)
}

// hookedConfig clones base with the shared hook; seen, if not nil, is set
// by every handshake the hook checks.
func (v *Verifier) hookedConfig(base *tls.Config, seen *atomic.Bool) (*tls.Config, error) {
	cfg, err := v.clone(base)
	if err != nil {
		return nil, err
	}
	fallback := cfg.ServerName
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if seen != nil {
			seen.Store(true)
		}
		host := cs.ServerName
		if host == "" {
			host = fallback
		}
		if host != "" {
			if _, err := CanonicalHost(host); err != nil {
				return err
			}
		}
		return v.verify(&cs, host, 0)
	}
	return cfg, nil
}

func (v *Verifier) clone(base *tls.Config) (*tls.Config, error) {
	if base == nil {
		base = new(tls.Config)
	}
	if base.InsecureSkipVerify {
		return nil, ErrInsecure
	}
	if base.VerifyConnection != nil {
		return nil, ErrHookSet
	}
	cfg := base.Clone()
	if c := cfg.ClientSessionCache; c != nil {
		if sc, ok := c.(*sessionCache); !ok || sc.v != v {
			cfg.ClientSessionCache = &sessionCache{inner: c, v: v}
		}
	}
	return cfg, nil
}

// DialContext connects to addr ("host:port") and completes a pinned TLS
// handshake, with base as in [Verifier.TLSConfig]. The host part of addr is
// the server name unless base.ServerName is set.
func (v *Verifier) DialContext(ctx context.Context, network, addr string, base *tls.Config) (*tls.Conn, error) {
	cfg, err := v.clone(base)
	if err != nil {
		return nil, err
	}
	return v.dialTLS(ctx, new(net.Dialer).DialContext, cfg, network, addr, 0)
}

// dialFunc is the shape of net.Dialer.DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialTLS dials addr and runs the handshake on cfg, which it owns, with a
// hook that knows the host and port of this connection. The connection is
// tracked for SetPolicy, and checked again if the policy changed while
// the handshake was finishing. A handshakeTimeout other than 0 bounds the
// handshake (not the dial), as http.Transport.TLSHandshakeTimeout does.
func (v *Verifier) dialTLS(ctx context.Context, dial dialFunc, cfg *tls.Config, network, addr string,
	handshakeTimeout time.Duration) (*tls.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portText)
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	name := cfg.ServerName
	if _, err := CanonicalHost(name); err != nil {
		return nil, err
	}
	// Sessions this connection learns are filed under the policy it was
	// verified with, not the one current when a TLS 1.3 ticket arrives.
	var sc *connSessionCache
	if c, ok := cfg.ClientSessionCache.(*sessionCache); ok {
		sc = &connSessionCache{sessionCache: c}
		cfg.ClientSessionCache = sc
	}
	var verifiedGen atomic.Uint64 // the policy the hook checked the chain under
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		st := v.state.Load()
		if st == nil {
			return errors.New("pin: Verifier has no policy (use NewVerifier)")
		}
		err := v.verifyWith(st.policy, &cs, name, port)
		if err == nil {
			verifiedGen.Store(st.gen)
			if sc != nil {
				sc.verifiedGen.Store(st.gen)
			}
		}
		return err
	}
	raw, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if handshakeTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
	}
	err = conn.HandshakeContext(hctx)
	if err != nil {
		err = handshakeError(ctx, hctx, addr, handshakeTimeout, err)
		cancel()
		closeSocket(raw)
		return nil, err
	}
	cancel()
	// The hook ran when the server's certificate arrived, before its
	// Finished, and the server decides how long that takes. A SetPolicy
	// in between has not seen this connection: once it is tracked (so
	// that any later SetPolicy sees it), check it against the policy now
	// current if that is not the one the hook used (CWE-367).
	v.track(conn, name)
	if st := v.state.Load(); st.gen != verifiedGen.Load() {
		cs := conn.ConnectionState()
		if err := v.verifyWith(st.policy, &cs, name, port); err != nil {
			closeSocket(conn)
			return nil, err
		}
		if sc != nil {
			sc.verifiedGen.Store(st.gen)
		}
	}
	return conn, nil
}

// handshakeError says which step failed when a handshake ran out of time:
// "context deadline exceeded" alone does not tell a server that never
// answered the TCP connection from one that stalls the handshake.
func handshakeError(ctx, hctx context.Context, addr string, limit time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("pin: connected to %s, but the TLS handshake did not finish: %w", addr, err)
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("pin: connected to %s, but the TLS handshake did not finish within %s: %w", addr, limit, hctx.Err())
	}
	return err
}

// closeSocket closes the socket under c, and so every TLS layer and
// tunnel on it, without the close_notify that tls.Conn.Close would first
// send: that can wait seconds on a peer that does not read, and a server
// the policy refuses is no longer trusted anyway.
func closeSocket(c net.Conn) {
	for {
		switch t := c.(type) {
		case *tls.Conn:
			c = t.NetConn()
		case *prefixConn:
			c = t.Conn
		default:
			c.Close()
			return
		}
	}
}

// Transport returns a clone of base (nil means http.DefaultTransport) whose
// HTTPS connections are pinned. HTTP/1.1 and HTTP/2 are negotiated exactly
// as base would have negotiated them.
//
// The verifier makes every HTTPS connection of the transport itself, with
// the host and port known, so that [Verifier.SetPolicy] can see and close
// each one: direct connections, and connections through the proxy that
// base.Proxy names (http.ProxyFromEnvironment in the default transport).
// For those it takes over the proxy leg from net/http and does what
// net/http does: an HTTP CONNECT (RFC 9110 §9.3.6) through an http or
// https proxy, with Proxy-Authorization from the proxy URL's user info and
// the header fields of GetProxyConnectHeader or ProxyConnectHeader, then
// OnProxyConnectResponse; or a SOCKS5 CONNECT (RFC 1928, RFC 1929) for
// socks5 and socks5h. The TLS connection to an https proxy is pinned
// under the proxy's name. base.Proxy is called once per https request
// that net/http does not give to a pooled HTTP/2 connection, with that
// request; its connections are pooled by address, so base.Proxy must
// choose one way per address (one proxy, with one set of credentials, or
// none): a request it sends another way than the address's first fails
// with a [*ProxyChangedError] (use one transport per proxy). Plain http
// requests go through the proxy as net/http sends them; they are not
// pinned.
//
// It refuses a base with its own TLS dialer ([ErrTLSDialer]), a base
// TLSClientConfig with a ServerName ([ErrServerNameSet]), and a base
// TLSClientConfig that [Verifier.TLSConfig] refuses. Change the returned
// transport's Proxy, DialContext, DialTLSContext or TLSClientConfig and
// its connections escape the verifier's tracking: they are still checked
// by the config's hook, but SetPolicy then only closes their idle ones.
func (v *Verifier) Transport(base *http.Transport) (*http.Transport, error) {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	if base.DialTLSContext != nil || base.DialTLS != nil { //nolint:staticcheck // DialTLS is checked on purpose
		return nil, ErrTLSDialer
	}
	if base.TLSClientConfig != nil && base.TLSClientConfig.ServerName != "" {
		return nil, ErrServerNameSet
	}
	protocols := effectiveProtocols(base)
	t := base.Clone()
	// Every https connection goes through DialTLSContext; the config's own
	// hook runs only for handshakes net/http makes itself, which happens
	// only if the transport is changed afterwards.
	untracked := new(atomic.Bool)
	cfg, err := v.hookedConfig(t.TLSClientConfig, untracked)
	if err != nil {
		return nil, err
	}
	t.TLSClientConfig = cfg
	t.Protocols = &protocols
	dial := dialFunc(t.DialContext)
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	routes := v.takeProxyLeg(t)
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Read the config at dial time: the transport adds its ALPN
		// protocols (h2) to it before the first dial.
		c := t.TLSClientConfig.Clone()
		d := dial
		if u := routes.lookup(addr); u != nil {
			d = v.proxyDial(t, u, dial)
		}
		return v.dialTLS(ctx, d, c, network, addr, t.TLSHandshakeTimeout)
	}
	v.mu.Lock()
	v.transports = append(v.transports, trackedTransport{weak.Make(t), untracked})
	v.mu.Unlock()
	return t, nil
}

// Client returns an http.Client using [Verifier.Transport] of base. It
// follows at most 10 redirects, only to https URLs (a redirect to plain
// http would leave pinning behind), and, once a request has been to a host
// that the policy pins in enforce mode, only to hosts it pins in enforce
// mode too ([ErrUnpinnedRedirect]): net/http forwards Authorization to a
// redirect's subdomain and custom header fields to any host, and an open
// redirect must not hand them to a connection that pinning no longer
// guards. A caller that wants other rules sets the client's CheckRedirect.
func (v *Verifier) Client(base *http.Transport) (*http.Client, error) {
	t, err := v.Transport(base)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, CheckRedirect: v.checkRedirect}, nil
}

// ErrInsecureRedirect is returned (wrapped in a *url.Error) by clients from
// [Verifier.Client] for a redirect to a URL that is not https.
var ErrInsecureRedirect = errors.New("pin: refusing to follow a redirect to a URL that is not https")

// ErrUnpinnedRedirect is returned (wrapped in a *url.Error) by clients
// from [Verifier.Client] for a redirect from a host the policy pins in
// enforce mode to one it does not (no rule, a report-only rule or an
// expired pin set).
var ErrUnpinnedRedirect = errors.New("pin: refusing to follow a redirect from a pinned host to one the policy does not pin (its credentials would travel over an unpinned connection)")

func (v *Verifier) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w: %s", ErrInsecureRedirect, req.URL.Redacted())
	}
	if len(via) >= 10 {
		return errors.New("pin: stopped after 10 redirects")
	}
	p, now := v.Policy(), v.now()
	if p.enforces(req.URL.Hostname(), now) {
		return nil
	}
	for _, r := range via {
		if p.enforces(r.URL.Hostname(), now) {
			return fmt.Errorf("%w: %s to %s", ErrUnpinnedRedirect, r.URL.Hostname(), req.URL.Redacted())
		}
	}
	return nil
}

// enforces reports whether p pins host in enforce mode at time now.
func (p *Policy) enforces(host string, now time.Time) bool {
	d := p.Match(host)
	return d != nil && d.Mode == Enforce && !d.Expired(now)
}

// effectiveProtocols is the protocol set t would use on its own. Setting
// DialTLSContext disables automatic HTTP/2 in net/http, so Transport pins
// the set down explicitly.
func effectiveProtocols(t *http.Transport) http.Protocols {
	if t.Protocols != nil {
		return *t.Protocols
	}
	var p http.Protocols
	p.SetHTTP1(true)
	switch {
	case t.TLSNextProto != nil:
		// An empty non-nil map is the documented way to disable HTTP/2.
		if t.TLSNextProto["h2"] != nil {
			p.SetHTTP2(true)
		}
	case !t.ForceAttemptHTTP2 && (t.TLSClientConfig != nil || t.Dial != nil || t.DialContext != nil): //nolint:staticcheck
		// net/http does not enable HTTP/2 by itself for custom configs.
	default:
		p.SetHTTP2(true)
	}
	return p
}

// sessionCache keys sessions by policy generation, so that sessions made
// under one policy are never resumed under another. (The hook also runs on
// resumption and would refuse a session whose chain no longer matches; this
// makes a new policy take effect with full handshakes.) Sessions of older
// generations age out of the inner cache.
type sessionCache struct {
	inner tls.ClientSessionCache
	v     *Verifier
}

func genKey(k string, gen uint64) string {
	return k + "\x00rampart-pin-policy-" + strconv.FormatUint(gen, 10)
}

func (c *sessionCache) Get(sessionKey string) (*tls.ClientSessionState, bool) {
	return c.inner.Get(genKey(sessionKey, c.v.state.Load().gen))
}

// Put files the session under the current policy. With a shared config
// the hook cannot tell which handshake a late TLS 1.3 ticket belongs to;
// the hook checks a resumed session's chain again in any case.
func (c *sessionCache) Put(sessionKey string, cs *tls.ClientSessionState) {
	c.inner.Put(genKey(sessionKey, c.v.state.Load().gen), cs)
}

// connSessionCache is the session cache of one connection made by
// dialTLS: it files the sessions the connection learns under the policy
// generation the connection was verified with, so that a ticket arriving
// after SetPolicy is never resumed under the new policy.
type connSessionCache struct {
	*sessionCache
	verifiedGen atomic.Uint64 // 0 until the handshake passed the hook
}

func (c *connSessionCache) Put(sessionKey string, cs *tls.ClientSessionState) {
	gen := c.verifiedGen.Load()
	if cs == nil {
		// crypto/tls deletes a session it found unusable.
		c.inner.Put(genKey(sessionKey, c.v.state.Load().gen), nil)
		return
	}
	if gen == 0 {
		return
	}
	c.inner.Put(genKey(sessionKey, gen), cs)
}
