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
	return v.dialTLS(ctx, new(net.Dialer).DialContext, cfg, network, addr)
}

// dialTLS dials addr and runs the handshake on cfg, which it owns, with a
// hook that knows the host and port of this connection.
func (v *Verifier) dialTLS(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error),
	cfg *tls.Config, network, addr string) (*tls.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portText)
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	name := cfg.ServerName
	// Sessions this connection learns are filed under the policy it was
	// verified with, not the one current when a TLS 1.3 ticket arrives.
	var sc *connSessionCache
	if c, ok := cfg.ClientSessionCache.(*sessionCache); ok {
		sc = &connSessionCache{sessionCache: c}
		cfg.ClientSessionCache = sc
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		st := v.state.Load()
		if st == nil {
			return errors.New("pin: Verifier has no policy (use NewVerifier)")
		}
		err := v.verifyWith(st.policy, &cs, name, port)
		if err == nil && sc != nil {
			sc.verifiedGen.Store(st.gen)
		}
		return err
	}
	raw, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	v.track(conn, name)
	return conn, nil
}

// Transport returns a clone of base (nil means http.DefaultTransport) whose
// HTTPS connections are pinned. HTTP/1.1 and HTTP/2 are negotiated exactly
// as base would have negotiated them. Direct connections are pinned with the
// host and port known; connections through a proxy use the
// [Verifier.TLSConfig] hook. See [Verifier.SetPolicy] for what happens to
// the transport's connections when pins change.
//
// It refuses a base with its own TLS dialer ([ErrTLSDialer]) and a base
// TLSClientConfig that [Verifier.TLSConfig] refuses.
func (v *Verifier) Transport(base *http.Transport) (*http.Transport, error) {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	if base.DialTLSContext != nil || base.DialTLS != nil { //nolint:staticcheck // DialTLS is checked on purpose
		return nil, ErrTLSDialer
	}
	protocols := effectiveProtocols(base)
	t := base.Clone()
	// Direct connections go through DialTLSContext; only connections
	// through a proxy reach the config's own hook.
	proxied := new(atomic.Bool)
	cfg, err := v.hookedConfig(t.TLSClientConfig, proxied)
	if err != nil {
		return nil, err
	}
	t.TLSClientConfig = cfg
	t.Protocols = &protocols
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Read the config at dial time: the transport adds its ALPN
		// protocols (h2) to it before the first dial.
		c := t.TLSClientConfig.Clone()
		return v.dialTLS(ctx, dial, c, network, addr)
	}
	v.mu.Lock()
	v.transports = append(v.transports, trackedTransport{weak.Make(t), proxied})
	v.mu.Unlock()
	return t, nil
}

// Client returns an http.Client using [Verifier.Transport] of base. It
// follows at most 10 redirects, and only to https URLs: a redirect to plain
// http would leave pinning behind.
func (v *Verifier) Client(base *http.Transport) (*http.Client, error) {
	t, err := v.Transport(base)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, CheckRedirect: httpsRedirectsOnly}, nil
}

// ErrInsecureRedirect is returned (wrapped in a *url.Error) by clients from
// [Verifier.Client] for a redirect to a URL that is not https.
var ErrInsecureRedirect = errors.New("pin: refusing to follow a redirect to a URL that is not https")

func httpsRedirectsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w: %s", ErrInsecureRedirect, req.URL.Redacted())
	}
	if len(via) >= 10 {
		return errors.New("pin: stopped after 10 redirects")
	}
	return nil
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
