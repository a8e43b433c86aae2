package gateway

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// front checks what every request must be before CORS, the rate limits
// and routing see it, so that the service reads the request the gateway
// routed, limited and authenticated: a method the gateway knows, in the
// case it is registered in; a path no decoder or normaliser reads as
// another; a Host the gateway serves; a Connection header that removes
// nothing the gateway acts on; no protocol upgrade but where a route
// takes one. GET /healthz is answered here, before any limit.
type front struct {
	// methods are those the gateway knows: DefaultMethods and those
	// routes list. Others are a 501; a known one a route does not take
	// is the route's 405.
	methods map[string]bool
	hosts   []hostPort
	// routeOf returns the route a request goes to, nil for none.
	routeOf func(*http.Request) *route
	// folded are the routes' prefixes folded to one case;
	// foldedPrefixes says whether folding changed any.
	folded         []foldedRoute
	foldedPrefixes bool
	next           http.Handler
	// decide is set for a Decider: there is no connection to set
	// deadlines on.
	decide bool
}

type hostPort struct{ name, port string }

func newFront(h *handler, routeOf func(*http.Request) *route, next http.Handler) *front {
	f := &front{methods: map[string]bool{}, routeOf: routeOf, next: next, decide: h.decide}
	for _, m := range DefaultMethods {
		f.methods[m] = true
	}
	for _, r := range h.routes {
		for m := range r.methods {
			f.methods[m] = true
		}
		fp := foldCase(r.Prefix)
		f.folded = append(f.folded, foldedRoute{fp, r})
		f.foldedPrefixes = f.foldedPrefixes || fp != r.Prefix
	}
	for _, h := range h.hosts {
		u := url.URL{Host: h}
		f.hosts = append(f.hosts, hostPort{u.Hostname(), u.Port()})
	}
	return f
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.decide {
		setDeadlines(w, DefaultTimeout)
	}
	if r.URL.Path == "/healthz" {
		// Load balancers and pinned clients checking the connection need
		// a path that always answers, without credentials or limits.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "/healthz answers GET and HEAD")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	if code, msg := f.check(r); code != 0 {
		writeProblem(w, code, http.StatusText(code), msg)
		return
	}
	f.next.ServeHTTP(w, r)
}

// check returns the status and reason of a refusal, or 0.
func (f *front) check(r *http.Request) (int, string) {
	// Methods (RFC 9110 §9.1) are case-sensitive tokens. A rule for
	// POST does not match post, but a framework that upper-cases the
	// method runs post as POST: the gateway passes only methods as
	// registered, and those its routes take. Go's HTTP/1 server checks
	// the token, its HTTP/2 server does not.
	switch m := r.Method; {
	case !isToken(m):
		return http.StatusBadRequest, "the method is not a token (RFC 9110 §9.1)"
	case m == http.MethodConnect || m == http.MethodTrace:
		return http.StatusMethodNotAllowed, m + " is not proxied"
	case !f.methods[m]:
		if up := strings.ToUpper(m); up != m && f.methods[up] {
			return http.StatusNotImplemented, fmt.Sprintf("method %q is not proxied: methods are case-sensitive (RFC 9110 §9.1); send %s", m, up)
		}
		return http.StatusNotImplemented, fmt.Sprintf("method %q is not proxied", m)
	}
	if msg := checkPath(rawPath(r)); msg != "" {
		return http.StatusBadRequest, msg
	}
	if msg := f.sameRouteInAnyCase(r); msg != "" {
		return http.StatusBadRequest, msg
	}
	if !f.hostAllowed(r.Host) {
		// RFC 9110 §15.5.20: not a host this server answers for.
		return http.StatusMisdirectedRequest, fmt.Sprintf("this gateway does not serve host %q", r.Host)
	}
	if msg := connectionOptions(r.Header); msg != "" {
		return http.StatusBadRequest, msg
	}
	if msg := f.upgrade(r); msg != "" {
		return http.StatusBadRequest, msg
	}
	return 0, ""
}

// rawPath is the path of r's request target as the client wrote it. The
// parsed URL's EscapedPath is not always that: where the target holds a
// character such as '{' or '|', it encodes the decoded path anew, and an
// escape the client wrote (%2e) would no longer be there to refuse.
func rawPath(r *http.Request) string {
	t := r.RequestURI
	if t == "" { // a request not read by a server (tests, in-process callers)
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	if !strings.HasPrefix(t, "/") {
		// Absolute form (RFC 9112 §3.2.2): the path after the authority.
		if _, rest, ok := strings.Cut(t, "://"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				return rest[i:]
			}
			return "/"
		}
	}
	return t
}

// sameRouteInAnyCase refuses a path that would take another route if
// paths and prefixes were compared without regard to case: with /v1/
// authenticated and / open, GET /V1/withdrawals takes the open route
// here, and a service that routes without regard to case (Express,
// ASP.NET Core) runs it as /v1/withdrawals. Unicode case maps count
// (U+0131 ı upper-cases to I, U+017F ſ to S): both sides are folded as
// strings.ToLower(strings.ToUpper(s)).
func (f *front) sameRouteInAnyCase(r *http.Request) string {
	p := r.URL.Path
	if !strings.ContainsFunc(p, func(c rune) bool { return 'A' <= c && c <= 'Z' || c >= 0x80 }) && !f.foldedPrefixes {
		return "" // lower-case ASCII against lower-case prefixes: folding changes nothing
	}
	folded := foldCase(p)
	var best *foldedRoute
	for i, fr := range f.folded {
		if fr.prefix == folded || strings.HasSuffix(fr.prefix, "/") && strings.HasPrefix(folded, fr.prefix) {
			if best == nil || len(fr.prefix) > len(best.prefix) {
				best = &f.folded[i]
			}
		}
	}
	var want *route
	if best != nil {
		want = best.route
	}
	if got := f.routeOf(r); got != want {
		return fmt.Sprintf("the path %q takes another route than it would in another case (%q): a service that routes without regard to case could read it as the other", p, folded)
	}
	return ""
}

// foldedRoute is a route's prefix folded to one case.
type foldedRoute struct {
	prefix string
	route  *route
}

// foldCase folds s to one case, Unicode case maps included.
func foldCase(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// hostAllowed reports whether host (Host, or the host of an absolute
// request target) is one of the configured hosts; any is without them.
func (f *front) hostAllowed(host string) bool {
	if len(f.hosts) == 0 {
		return true
	}
	u := url.URL{Host: host}
	name, port := strings.ToLower(u.Hostname()), u.Port()
	return slices.ContainsFunc(f.hosts, func(h hostPort) bool {
		return h.name == name && (h.port == "" || h.port == port)
	})
}

// connectionOptions refuses a Connection header naming any field but the
// hop-by-hop ones a client has reason to name. The gateway removes the
// fields Connection names before forwarding (RFC 9110 §7.6.1), after it
// has read them: Connection: X-API-Key would let it authenticate a key
// the service never sees, and the service act on another credential the
// gateway never checked.
func connectionOptions(h http.Header) string {
	for _, v := range h["Connection"] {
		for opt := range strings.SplitSeq(v, ",") {
			switch strings.ToLower(textproto.TrimString(opt)) {
			case "", "close", "keep-alive", "te", "upgrade", "http2-settings":
			default:
				return fmt.Sprintf("Connection: %s asks the gateway to drop a header before the service sees it, perhaps one the gateway checked; only close, keep-alive, te and upgrade are accepted (RFC 9110 §7.6.1)", textproto.TrimString(opt))
			}
		}
	}
	return ""
}

// upgrade applies the rule for Upgrade (RFC 9110 §7.8): after a 101 the
// connection is a tunnel to the service that no route, authentication,
// limit or path check sees again, so it is refused unless the route
// takes websockets. An offer of h2c alone (RFC 9113 §3.1 deprecates it)
// is ignored, as §7.8 lets a server do: the request is served over
// HTTP/1.1 and the offer is never forwarded.
func (f *front) upgrade(r *http.Request) string {
	var protos []string
	for _, v := range r.Header.Values("Upgrade") {
		for p := range strings.SplitSeq(v, ",") {
			if p = textproto.TrimString(p); p != "" && !strings.EqualFold(p, "h2c") {
				protos = append(protos, p)
			}
		}
	}
	if len(protos) == 0 {
		r.Header.Del("Upgrade")
		r.Header.Del("Http2-Settings")
		dropConnectionOptions(r.Header, "upgrade", "http2-settings")
		return ""
	}
	if rt := f.routeOf(r); rt == nil || !rt.Websocket {
		return fmt.Sprintf("Upgrade: %s: this route takes no protocol upgrade", strings.Join(protos, ", "))
	}
	if len(protos) != 1 || !strings.EqualFold(protos[0], "websocket") || r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return "this route upgrades only a GET over HTTP/1.1 to websocket (RFC 6455 §4.1)"
	}
	r.Header.Set("Upgrade", "websocket")
	r.Header.Del("Http2-Settings")
	return ""
}

// dropConnectionOptions removes the options opts from Connection.
func dropConnectionOptions(h http.Header, opts ...string) {
	var keep []string
	for _, v := range h["Connection"] {
		for opt := range strings.SplitSeq(v, ",") {
			if opt = textproto.TrimString(opt); opt != "" && !slices.Contains(opts, strings.ToLower(opt)) {
				keep = append(keep, opt)
			}
		}
	}
	if len(keep) == 0 {
		h.Del("Connection")
		return
	}
	h.Set("Connection", strings.Join(keep, ", "))
}

// checkPath says what in the escaped path p a service might decode or
// normalise into another path ("" if nothing): an encoded '.', '/', '\',
// '%', ';' or NUL; '\' or ';' (Tomcat and Spring read /open/..;/v1/ as /v1/);
// once decoded, a byte sequence that is not UTF-8 (the overlong %c0%ae is
// a '.' to legacy decoders), a control character (%0d%0a, %09), or a
// character that Unicode normalisation (NFKC) turns into ASCII
// (U+FF0E FULLWIDTH FULL STOP is '.', U+FF56 is 'v'). Literal dot
// segments are ServeMux's: it redirects to the clean path.
func checkPath(p string) string {
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		switch strings.ToLower(p[i+1 : i+3]) {
		case "2e", "2f", "5c", "25", "00", "3b":
			return "the path holds an encoded '.', '/', '\\', '%', ';' or NUL, which a service could decode into another path"
		}
	}
	if strings.ContainsAny(p, "\\;") {
		return "the path holds '\\' or ';', which a service could read as another path"
	}
	d, err := url.PathUnescape(p)
	if err != nil {
		return "the path holds a malformed escape"
	}
	if !utf8.ValidString(d) {
		return "the path is not UTF-8 once decoded (an overlong or invalid sequence such as %c0%ae), which a service could decode into another path"
	}
	for _, c := range d {
		switch {
		case c < 0x20 || c == 0x7f || 0x80 <= c && c < 0xa0:
			return "the path holds a control character (such as %0d%0a or %09)"
		case c > 0x7f && strings.ContainsFunc(norm.NFKC.String(string(c)), func(r rune) bool { return r <= 0x7f }):
			return fmt.Sprintf("the path holds %U, which Unicode normalisation (NFKC) turns into %q: a service that normalises could read another path", c, norm.NFKC.String(string(c)))
		}
	}
	return ""
}
