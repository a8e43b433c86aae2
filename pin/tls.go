package pin

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
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
	cfg, err := v.clone(base)
	if err != nil {
		return nil, err
	}
	fallback := cfg.ServerName
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
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
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return v.verify(&cs, name, port)
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
	return conn, nil
}

// Transport returns a clone of base (nil means http.DefaultTransport) whose
// HTTPS connections are pinned. HTTP/1.1 and HTTP/2 are negotiated exactly
// as base would have negotiated them. Direct connections are pinned with the
// host and port known; connections through an HTTPS proxy use the
// [Verifier.TLSConfig] hook. A later [Verifier.SetPolicy] closes the
// transport's idle connections.
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
	cfg, err := v.TLSConfig(t.TLSClientConfig)
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
	v.transports = append(v.transports, weak.Make(t))
	v.mu.Unlock()
	return t, nil
}

// Client returns an http.Client using [Verifier.Transport] of base.
func (v *Verifier) Client(base *http.Transport) (*http.Client, error) {
	t, err := v.Transport(base)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
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

func (c *sessionCache) key(k string) string {
	return k + "\x00rampart-pin-policy-" + strconv.FormatUint(c.v.state.Load().gen, 10)
}

func (c *sessionCache) Get(sessionKey string) (*tls.ClientSessionState, bool) {
	return c.inner.Get(c.key(sessionKey))
}

func (c *sessionCache) Put(sessionKey string, cs *tls.ClientSessionState) {
	c.inner.Put(c.key(sessionKey), cs)
}
