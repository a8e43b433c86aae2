// Package authz gives the edge engines teams already run (Envoy and
// Istio, nginx, Caddy, Traefik) Rampart's decisions: the gateway's API
// keys, tokens, scopes and limits, and its refusals, with nothing of the
// policy written in the engine.
//
// Two services, each independent of any wire protocol:
//
//   - [Service] decides a request as rampart gateway would
//     (gateway.Decider): allowed, with the caller's identity for the
//     service ([IdentityHeaders]), or the gateway's refusal, status,
//     headers and body. [Service.ForwardAuth] serves it as HTTP forward
//     authentication (nginx auth_request, Caddy forward_auth, Traefik
//     ForwardAuth, Envoy's HTTP ext_authz); package authz/envoy as
//     Envoy's gRPC external authorization.
//   - [Limits] is a global rate limit service that reads
//     envoyproxy/ratelimit's configuration files and decides with GCRA in
//     a ratelimit.Store; package authz/envoy serves it as Envoy's
//     RateLimitService.
//
// gRPC and Envoy's protos stay in authz/envoy: this package imports
// neither.
package authz

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// The identity headers: what an allowed request carries to the service
// about its caller. The engine removes the client's copies of every one
// of them (Result.Remove), whether or not the caller has a value for it,
// so that the service never reads a forged one.
const (
	// HeaderClient is the OAuth2 client or API-key owner.
	HeaderClient = "X-Rampart-Client"
	// HeaderSubject is whom the credential speaks for.
	HeaderSubject = "X-Rampart-Subject"
	// HeaderMethod is how the caller authenticated: api-key or bearer.
	HeaderMethod = "X-Rampart-Auth-Method"
	// HeaderScopes are the credential's scopes, separated by spaces.
	HeaderScopes = "X-Rampart-Scopes"
	// HeaderCredential is the API key's ID or the token's jti.
	HeaderCredential = "X-Rampart-Credential-Id"
	// HeaderRoute is the Rampart route whose rules applied.
	HeaderRoute = "X-Rampart-Route"
)

// IdentityHeaders are the identity headers' names.
var IdentityHeaders = []string{HeaderClient, HeaderSubject, HeaderMethod, HeaderScopes, HeaderCredential, HeaderRoute}

// Options configure a Service.
type Options struct {
	// Gateway are the routes, hosts, CORS policy and limits, and the
	// verifiers and store they need, as for rampart gateway; routes need
	// no upstream (gateway.NewDecider).
	Gateway gateway.Options
	// Logger receives what goes wrong on the service's side (a route the
	// engine names that does not exist). Nil means slog.Default().
	Logger *slog.Logger
}

// Service decides requests for engines in front. Build it with New.
type Service struct {
	d   *gateway.Decider
	log *slog.Logger
}

// New builds a Service; its errors are gateway.NewDecider's.
func New(o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Gateway.Logger == nil {
		o.Gateway.Logger = o.Logger
	}
	d, err := gateway.NewDecider(o.Gateway)
	if err != nil {
		return nil, err
	}
	return &Service{d: d, log: o.Logger}, nil
}

// Reload replaces the gateway options; on error the old ones stay.
func (s *Service) Reload(o gateway.Options) error {
	if o.Logger == nil {
		o.Logger = s.log
	}
	return s.d.Reload(o)
}

// Routes returns the routes' prefixes.
func (s *Service) Routes() []string { return s.d.Routes() }

// Request is what an engine says of a request it holds.
type Request struct {
	// Method is the request's method.
	Method string
	// Target is the request target in origin form, as the client sent
	// it: path and query (/v1/payments?id=7).
	Target string
	// Host is the Host header or :authority.
	Host string
	// Header are the request's header fields, but Host.
	Header http.Header
	// Client is the client's address, as the engine determined it (its
	// own trusted-proxy rules applied).
	Client netip.Addr
	// Proto is "HTTP/1.1", "HTTP/2" or "HTTP/1.0"; "" means HTTP/1.1.
	Proto string
	// PeerCertificate is the client's certificate, where the engine
	// terminated mutual TLS: tokens bound to a certificate (RFC 8705
	// §3) are valid only with it.
	PeerCertificate *x509.Certificate
	// Route, if set, names the Rampart route whose rules apply, whatever
	// the path.
	Route string

	// owned says Header is Check's to change, in canonical form (a
	// copy ForwardAuth made): it is not copied again.
	owned bool
}

// Result is a decision, as an engine applies it.
type Result struct {
	// Allowed says the request goes on to the service.
	Allowed bool
	// Status is a refusal's status code (or 204 for a preflight, answered
	// at the edge).
	Status int
	// Header are, for a refusal, its headers; when allowed, the headers
	// to add to the service's answer (RateLimit fields, Deprecation and
	// Sunset, CORS).
	Header http.Header
	// Body is a refusal's body.
	Body []byte
	// Upstream are the headers to set on the request to the service: the
	// caller's identity. Only when allowed.
	Upstream http.Header
	// Remove are the request's headers the service must not receive:
	// every identity header, and the fields of gateway.Decision.Drop.
	Remove []string
	// Caller is who authenticated; nil on an anonymous route.
	Caller *auth.Principal
	// Route is the route that took the request; "" for none.
	Route string
}

// ErrBadRequest is Check's error for a request that cannot be decided:
// no method, a target that is not in origin form, a header field the
// HTTP grammar refuses, too many or too large fields. A Result answering
// it (BadRequest) is 400.
var ErrBadRequest = errors.New("authz: malformed request")

// Bounds of a Request, as an HTTP server sets them (Go's defaults, and
// more than nginx's).
const (
	maxHeaderFields = 256
	maxHeaderBytes  = 64 << 10
	maxTarget       = 16 << 10
)

// Check decides r. Its error is ErrBadRequest (answer it with
// BadRequest), or the context's; a route r names that does not exist is
// answered 404 and logged.
func (s *Service) Check(ctx context.Context, r *Request) (*Result, error) {
	hr, err := r.httpRequest(ctx)
	if err != nil {
		return nil, err
	}
	d, err := s.d.Decide(hr, r.Route)
	if errors.Is(err, gateway.ErrUnknownRoute) {
		s.log.Warn("authz: the engine names a route this service does not have", "route", r.Route)
		return BadRequest(http.StatusNotFound, "no route for this request"), nil
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Allowed: d.Allowed, Status: d.Status, Header: d.Header, Body: d.Body,
		Caller: d.Caller, Route: d.Route, Remove: removed(d.Drop)}
	if d.Allowed {
		res.Upstream = identity(d.Caller, d.Route)
	}
	return res, nil
}

// removed is the identity headers and drop, in canonical form.
func removed(drop []string) []string {
	out := make([]string, 0, len(IdentityHeaders)+len(drop))
	out = append(out, IdentityHeaders...)
	for _, d := range drop {
		if !strings.HasPrefix(d, "X-Rampart-") {
			out = append(out, d)
		}
	}
	return out
}

// identity is the identity headers of p on route.
func identity(p *auth.Principal, route string) http.Header {
	h := make(http.Header, 6)
	// The names are canonical constants: set directly.
	set := func(name, v string) {
		if v != "" {
			h[name] = []string{headerValue(v)}
		}
	}
	set(HeaderRoute, route)
	if p == nil {
		return h
	}
	set(HeaderClient, p.ClientID)
	set(HeaderSubject, p.Subject)
	set(HeaderMethod, string(p.Method))
	set(HeaderScopes, strings.Join(p.Scopes, " "))
	if p.Method == auth.APIKey {
		set(HeaderCredential, p.KeyID)
	} else {
		set(HeaderCredential, p.TokenID)
	}
	return h
}

// headerValue makes v safe as a field value: bytes outside visible ASCII
// and space, and '%', are percent-encoded (a token's sub may hold
// anything).
func headerValue(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// BadRequest is the refusal of a request the service cannot decide: the
// gateway's problem details with status.
func BadRequest(status int, detail string) *Result {
	rec := &recorder{h: http.Header{}}
	httpx.WriteProblem(rec, httpx.Problem{Status: status, Detail: detail})
	return &Result{Status: rec.status, Header: rec.h, Body: rec.body.Bytes(), Remove: removed(nil)}
}

// recorder keeps an answer written to it.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(code int)        { r.status = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// RequestError is the error of a request the service cannot decide
// (errors.Is ErrBadRequest): Reason says what is wrong, for the engine's
// logs and the 400's detail.
type RequestError struct{ Reason string }

func (e *RequestError) Error() string        { return "authz: malformed request: " + e.Reason }
func (e *RequestError) Is(target error) bool { return target == ErrBadRequest }

// Reason is what is wrong with a request err refused, or "" when err is
// not a RequestError.
func Reason(err error) string {
	if re, ok := errors.AsType[*RequestError](err); ok {
		return re.Reason
	}
	return ""
}

func badRequest(format string, args ...any) error {
	return &RequestError{Reason: fmt.Sprintf(format, args...)}
}

// httpRequest is r as the gateway's controls read it.
func (r *Request) httpRequest(ctx context.Context) (*http.Request, error) {
	if r.Method == "" {
		return nil, badRequest("no method")
	}
	if len(r.Target) > maxTarget {
		return nil, badRequest("the request target is %d bytes, at most %d", len(r.Target), maxTarget)
	}
	if !strings.HasPrefix(r.Target, "/") {
		return nil, badRequest("request target %q: want a path (origin form)", trim(withoutQuery(r.Target)))
	}
	u, err := url.ParseRequestURI(r.Target)
	if err != nil {
		return nil, badRequest("request target %q: %v", trim(withoutQuery(r.Target)), errors.Unwrap(err))
	}
	if err := checkHeader(r.Header); err != nil {
		return nil, err
	}
	proto, major, minor := "HTTP/1.1", 1, 1
	switch r.Proto {
	case "", "HTTP/1.1":
	case "HTTP/1.0":
		proto, minor = "HTTP/1.0", 0
	case "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0":
		proto, major, minor = "HTTP/2.0", 2, 0
	default:
		return nil, badRequest("protocol %q", trim(r.Proto))
	}
	h := r.Header
	if !r.owned {
		h = make(http.Header, len(r.Header))
		for name, vs := range r.Header {
			for _, v := range vs {
				h.Add(name, v)
			}
		}
	}
	delete(h, "Host")
	hr := (&http.Request{
		Method: r.Method, URL: u, RequestURI: r.Target, Host: r.Host, Header: h,
		Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Body: http.NoBody,
	}).WithContext(ctx)
	if r.Client.IsValid() {
		hr.RemoteAddr = net.JoinHostPort(r.Client.String(), "0")
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || len(h.Values("Content-Length")) > 1 {
			return nil, badRequest("Content-Length %q", trim(cl))
		}
		hr.ContentLength = n
	}
	if r.PeerCertificate != nil {
		hr.TLS = peerState(r.PeerCertificate)
	}
	return hr, nil
}

// checkHeader refuses fields an HTTP server would have refused.
func checkHeader(h http.Header) error {
	if len(h) > maxHeaderFields {
		return badRequest("%d header fields, at most %d", len(h), maxHeaderFields)
	}
	size := 0
	for name, vs := range h {
		if !validFieldName(name) {
			return badRequest("header field name %q", trim(name))
		}
		for _, v := range vs {
			size += len(name) + len(v) + 4
			if !validFieldValue(v) {
				return badRequest("header field %s: a value with a control character", name)
			}
		}
	}
	if size > maxHeaderBytes {
		return badRequest("the header fields are %d bytes, at most %d", size, maxHeaderBytes)
	}
	return nil
}

// validFieldName reports whether s is a token (RFC 9110 §5.1).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validFieldValue reports whether s is a field value (RFC 9110 §5.5): no
// control character but tab.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// peerState is the TLS state of a connection whose client presented c.
func peerState(c *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{c}}
}

// withoutQuery is a request target without its query, for messages that
// are logged: a query may hold a credential (?api_key=...).
func withoutQuery(target string) string {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i] + "?…"
	}
	return target
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
