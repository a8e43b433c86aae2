package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/rampartsec/rampart/auth"
)

// clientSupplied are request headers that name the client, or another
// URL, host or method than the request's own, which some service stacks
// believe (Symfony, Zend and IIS URL rewriting read X-Original-URL; Rails,
// Laravel and others X-HTTP-Method-Override; CDN-style IP headers feed
// rate limits and audit logs). The client may have written any of them;
// the gateway forwards none, and writes X-Forwarded-For, -Proto and, when
// it knows the host (Options.Hosts), -Host itself. Every X-Forwarded-*
// field is dropped too, and every field with '_' in its name: CGI, WSGI,
// PHP and nginx read X_API_Key and X-API-Key as one (HTTP_X_API_KEY).
var clientSupplied = []string{
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
	"X-Cluster-Client-Ip", "X-Original-Forwarded-For", "Client-Ip", "X-Originating-Ip",
	"X-Remote-Ip", "X-Remote-Addr", "X-Envoy-External-Address", "Wl-Proxy-Client-Ip",
	"Proxy-Client-Ip", "X-Proxyuser-Ip", "Forwarded-For", "X-Forwarded", "X-Azure-Clientip",
	"X-Azure-Socketip",
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Envoy-Original-Path",
	"X-Original-Host", "X-Host", "X-Http-Method-Override", "X-Http-Method",
	"X-Method-Override", "Front-End-Https", "X-Url-Scheme",
}

// rewrite makes the request the service receives (httputil.ProxyRequest's
// Out, whose hop-by-hop fields ReverseProxy has removed).
func rewrite(pr *httputil.ProxyRequest, rt *route, trusted []netip.Prefix, vouchHost bool) {
	out := pr.Out
	if rt.StripPrefix {
		stripPrefix(out.URL, rt.Prefix)
	}
	pr.SetURL(rt.Upstream)
	for name := range out.Header {
		if strings.HasPrefix(name, "X-Forwarded-") || strings.ContainsRune(name, '_') {
			delete(out.Header, name)
		}
	}
	for _, name := range clientSupplied {
		delete(out.Header, name)
	}
	// Behind proxies of its own (ratelimit.trusted_proxies), the gateway
	// keeps the chain they wrote, so that the service finds the client as
	// the gateway did (ratelimit.ClientAddr) rather than the proxy;
	// anyone else's is dropped, since the client may have written it.
	if fromTrusted(pr.In, trusted) {
		out.Header["X-Forwarded-For"] = slices.Clone(pr.In.Header["X-Forwarded-For"])
	}
	pr.SetXForwarded()
	// Host (or an absolute request target's host) is the client's word,
	// checked only against Options.Hosts.
	if !vouchHost {
		out.Header.Del("X-Forwarded-Host")
	}
	if rt.StripPrefix && rt.Prefix != "/" {
		out.Header.Set("X-Forwarded-Prefix", strings.TrimSuffix(rt.Prefix, "/"))
	}
	// The gateway's own server answered any 100-continue when the proxy
	// read the body; a service's interim answer would only reach the
	// client as a second one.
	out.Header.Del("Expect")
	// The front refused every upgrade but a websocket one on a route
	// that takes it; h2c is never forwarded (RFC 9113 §3.1).
	if !rt.Websocket {
		out.Header.Del("Upgrade")
		out.Header.Del("Connection")
	}
	out.Header.Del("Http2-Settings")
}

// stripPrefix removes prefix (but its trailing slash) from u's path:
// /v1/x with prefix /v1/ becomes /x. It works on the path as the client
// encoded it, so that what the front checked is what goes on: a path
// encoded anew from its decoded form would turn %3b into a literal ';'.
func stripPrefix(u *url.URL, prefix string) {
	raw := strings.TrimPrefix(u.EscapedPath(), strings.TrimSuffix(prefix, "/"))
	if !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	p, err := url.PathUnescape(raw)
	if err != nil { // the front refused malformed escapes
		p = raw
	}
	u.Path, u.RawPath = p, raw
}

// onlyChecked leaves on a request the credential the gateway
// authenticated (p) and no other: a service that reads another header
// than the gateway did (a framework taking the last Authorization, or
// Authorization before X-API-Key, or a session cookie) would otherwise
// act on a credential nobody checked, revoked or rate-limited.
// auth.ParseCredential refuses a request with more than one of those
// headers; what is left here is a defence in depth.
func onlyChecked(h http.Header, p *auth.Principal, keepCookies bool) {
	if p != nil && p.Method == auth.APIKey && len(h.Values("X-Api-Key")) > 0 {
		h["X-Api-Key"] = h.Values("X-Api-Key")[:1]
		delete(h, "Authorization")
	} else {
		if a := h.Values("Authorization"); len(a) > 0 {
			h["Authorization"] = a[:1]
		}
		delete(h, "X-Api-Key")
	}
	if !keepCookies {
		delete(h, "Cookie")
	}
}

// clientBody is the client's request body as the proxy reads it; it
// records the first error reading it, so that a failed exchange is put
// down to the client (a malformed chunk, a body cut short, one over the
// limit, one that does not arrive) rather than to the service.
type clientBody struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// A read after the transport closed the body is the proxy's doing.
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// clientBodyKey is the context key of the request's clientBody.
type clientBodyKey struct{}

// failure returns the first error reading the body, or nil.
func (b *clientBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// clientBodyError answers a request whose body could not be read: 413
// over the limit (RFC 9110 §15.5.14), 408 when it did not arrive in time
// (§15.5.9), else 400 (RFC 9112 §7.1 for a malformed chunk, RFC 9113
// §8.1.1 for DATA that does not add up to content-length). It is the
// client's failure: no upstream-error metric, no error log.
func clientBodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, http.StatusRequestEntityTooLarge, "Content Too Large", fmt.Sprintf("the body is limited to %d bytes", mbe.Limit))
	case errors.As(err, &ne) && ne.Timeout():
		writeProblem(w, http.StatusRequestTimeout, "Request Timeout", "the request body did not arrive within the route's timeout")
	default:
		writeProblem(w, http.StatusBadRequest, "Bad Request", "the request body is malformed or ends before its length (RFC 9112 §7.1, RFC 9113 §8.1.1)")
	}
}

// errUnaskedUpgrade is a service's 101 to a request the gateway did not
// forward as an upgrade.
var errUnaskedUpgrade = errors.New("gateway: the service switched protocols, but the route takes no upgrade")
