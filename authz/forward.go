package authz

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Engine is an engine that asks for forward authentication, each with
// its own way of saying what the original request was.
type Engine string

// The engines, and the path of ForwardAuth each asks.
const (
	// Nginx is nginx's auth_request, with the configuration of
	// docs/edge.md: X-Original-Method, X-Original-URI, X-Original-Host,
	// X-Original-Content-Length and X-Real-IP, each written by
	// proxy_set_header (which replaces the client's copy). nginx passes
	// only 2xx, 401 and 403 from the subrequest, so every refusal is a
	// 403 carrying the real status in X-Rampart-Status and the body in
	// X-Rampart-Refusal, and the configuration answers from them.
	Nginx Engine = "nginx"
	// Caddy is Caddy's forward_auth: X-Forwarded-Method, -Uri, -Host and
	// -For, which Caddy writes itself.
	Caddy Engine = "caddy"
	// Traefik is Traefik's ForwardAuth (trustForwardHeader false):
	// X-Forwarded-Method, -Uri, -Host and -For, as Caddy.
	Traefik Engine = "traefik"
	// EnvoyHTTP is Envoy's HTTP ext_authz service: the request comes
	// with its own method and path (under the path_prefix of Envoy's
	// configuration, ForwardOptions.EnvoyPathPrefix), the client in
	// X-Forwarded-For as Envoy appends it.
	EnvoyHTTP Engine = "envoy"
)

// Engines are the engines ForwardAuth serves.
var Engines = []Engine{Nginx, Caddy, Traefik, EnvoyHTTP}

// The headers of the Nginx refusal.
const (
	HeaderStatus  = "X-Rampart-Status"
	HeaderRefusal = "X-Rampart-Refusal"
)

// HeaderBodyType says, in an Nginx refusal, what X-Rampart-Refusal holds:
// problem (RFC 9457 problem details), json (RFC 6750's error object) or
// none; the configuration answers with the matching Content-Type.
const HeaderBodyType = "X-Rampart-Body-Type"

func bodyType(contentType string, body []byte) string {
	switch {
	case len(body) == 0:
		return "none"
	case strings.HasPrefix(contentType, httpx.ProblemType):
		return "problem"
	}
	return "json"
}

// HeaderUseRoute, set by the engine's configuration (never by the
// client: the configuration must overwrite it), names the Rampart route
// whose rules apply, as Envoy's context_extensions route does.
const HeaderUseRoute = "X-Rampart-Use-Route"

// ForwardOptions configure ForwardAuth.
type ForwardOptions struct {
	// EnvoyPathPrefix is the path_prefix of Envoy's http_service: it is
	// removed from the path of Envoy's requests.
	EnvoyPathPrefix string
}

// forwarding are the fields engines write to describe the original
// request: never passed to the decision as the client's.
var forwarding = []string{
	"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For",
	"X-Forwarded-Port", "X-Forwarded-Server", "X-Original-Method", "X-Original-Uri", "X-Original-Host",
	"X-Original-Content-Length", "X-Real-Ip", HeaderUseRoute, "Content-Length", "Connection",
}

// ForwardAuth serves HTTP forward authentication at /nginx, /caddy,
// /traefik and /envoy/ (one path per Engine, since each says what the
// original request was in other fields, and a field one engine writes
// another passes on from the client): 200 with the identity headers and
// the headers for the answer when allowed, the gateway's refusal
// otherwise. The request's own body is never read.
func (s *Service) ForwardAuth(o ForwardOptions) http.Handler {
	mux := http.NewServeMux()
	for _, e := range Engines {
		e := e
		pattern := "/" + string(e)
		if e == EnvoyHTTP {
			pattern += "/"
		}
		mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.forward(w, r, e, o)
		}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusNotFound,
			Detail: "forward authentication is served at /nginx, /caddy, /traefik and /envoy/"})
	})
	return httpx.Framing(mux)
}

func (s *Service) forward(w http.ResponseWriter, r *http.Request, e Engine, o ForwardOptions) {
	req, err := original(r, e, o)
	var res *Result
	if err == nil {
		res, err = s.Check(r.Context(), req)
	}
	switch {
	case errors.Is(err, ErrBadRequest):
		res = BadRequest(http.StatusBadRequest, Reason(err))
	case err != nil: // the engine went away
		return
	}
	h := w.Header()
	if res.Allowed {
		for name, vs := range res.Upstream {
			h[name] = vs
		}
		for name, vs := range res.Header {
			h[name] = vs
		}
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	for name, vs := range res.Header {
		h[name] = vs
	}
	if e == Nginx || res.Status < 400 {
		h.Set(HeaderStatus, strconv.Itoa(res.Status))
		// nginx passes only 2xx, 401 and 403 from its subrequest, and
		// takes no body from it; and to every engine a status below
		// 400 (a preflight's 204) would read as allowed. Those are 403s
		// with the real answer in X-Rampart-Status (and, for nginx,
		// X-Rampart-Refusal).
		h.Set(HeaderRefusal, strings.TrimSpace(string(res.Body)))
		h.Set(HeaderBodyType, bodyType(h.Get("Content-Type"), res.Body))
		w.WriteHeader(http.StatusForbidden)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(res.Status)
	w.Write(res.Body)
}

// original is the request engine e asks about, from r.
func original(r *http.Request, e Engine, o ForwardOptions) (*Request, error) {
	req := &Request{Header: r.Header.Clone(), Proto: "HTTP/1.1", Route: r.Header.Get(HeaderUseRoute), owned: true}
	var client string
	switch e {
	case Nginx:
		req.Method, req.Target, req.Host = r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-Uri"), r.Header.Get("X-Original-Host")
		client = r.Header.Get("X-Real-Ip")
		req.Header.Del("Content-Length")
		if cl := r.Header.Get("X-Original-Content-Length"); cl != "" {
			req.Header.Set("Content-Length", cl)
		}
	case Caddy, Traefik:
		req.Method, req.Target, req.Host = r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri"), r.Header.Get("X-Forwarded-Host")
		client = lastForwardedFor(r.Header)
	case EnvoyHTTP:
		req.Method, req.Host = r.Method, r.Host
		req.Target = strings.TrimPrefix(r.RequestURI, "/envoy")
		if o.EnvoyPathPrefix != "" {
			req.Target = strings.TrimPrefix(req.Target, o.EnvoyPathPrefix)
		}
		client = lastForwardedFor(r.Header)
		if r.Header.Get("Content-Length") == "0" {
			req.Header.Del("Content-Length")
		}
	}
	cl := req.Header.Get("Content-Length")
	for _, name := range forwarding {
		req.Header.Del(name)
	}
	if (e == Nginx || e == EnvoyHTTP) && cl != "" {
		req.Header.Set("Content-Length", cl)
	}
	if req.Method == "" || req.Target == "" {
		return nil, errMissing(e)
	}
	if client == "" {
		client = r.RemoteAddr
		if h, _, err := net.SplitHostPort(client); err == nil {
			client = h
		}
	}
	a, err := netip.ParseAddr(strings.TrimSpace(client))
	if err != nil {
		return nil, badRequest("the client's address %q", trim(client))
	}
	req.Client = a.Unmap()
	return req, nil
}

func errMissing(e Engine) error {
	switch e {
	case Nginx:
		return badRequest("nginx sent no X-Original-Method or X-Original-URI (docs/edge.md has the auth_request location)")
	case EnvoyHTTP:
		return badRequest("no path")
	}
	return badRequest("%s sent no X-Forwarded-Method or X-Forwarded-Uri", e)
}

// lastForwardedFor is the last address of X-Forwarded-For: the one the
// engine itself appended.
func lastForwardedFor(h http.Header) string {
	vs := h.Values("X-Forwarded-For")
	if len(vs) == 0 {
		return ""
	}
	last := vs[len(vs)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}
