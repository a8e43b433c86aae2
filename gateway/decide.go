package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/ratelimit"
)

// Decider is the gateway's controls without the proxy: it decides a
// request as a Gateway built from the same Options would, and says what
// the Gateway would have answered, for an engine in front (Envoy, nginx,
// Caddy: package authz) to apply. Routes need no Upstream.
//
// Everything a Gateway checks before it proxies is checked, in the same
// order, by the same code: the request itself (method, path, Host,
// Connection, Upgrade), CORS, the edge limits, the route's methods and
// declared body size, authentication, scopes, the limits keyed by client.
// What belongs to the connection (framing, deadlines, the body as it
// arrives) is the engine's, and so are the access log and the request
// metrics.
type Decider struct {
	g *Gateway
}

// NewDecider checks o as [New] does, but for the routes' upstreams and
// the mutual TLS they need, and builds a Decider. Logger and Registry are
// read as New reads them (the limits' store failures, the limits'
// metrics); AccessLog is not used.
func NewDecider(o Options) (*Decider, error) {
	g := &Gateway{log: o.Logger, reg: o.Registry, fallback: &ratelimit.Memory{}}
	if g.log == nil {
		g.log = slog.Default()
	}
	var cs collectors
	g.metrics = newMetrics(&cs)
	h, err := g.buildMode(o, true)
	if err != nil {
		return nil, err
	}
	if g.reg != nil {
		if err := cs.registerWith(g.reg); err != nil {
			return nil, fmt.Errorf("gateway: Registry: %w", err)
		}
	}
	g.current.Store(h)
	return &Decider{g: g}, nil
}

// Reload checks o as NewDecider does and decides new requests with it;
// on error the old Options stay. The limits' state stays: a reload gives
// nobody a fresh budget.
func (d *Decider) Reload(o Options) error {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	old := d.g.deps
	h, err := d.g.buildMode(o, true)
	if err != nil {
		d.g.deps = old
		return err
	}
	d.g.current.Store(h)
	return nil
}

// Routes returns the prefixes of the routes, in the order of Options.
func (d *Decider) Routes() []string {
	h := d.g.current.Load()
	ps := make([]string, 0, len(h.routes))
	for _, r := range h.routes {
		ps = append(ps, r.Prefix)
	}
	return ps
}

// ErrUnknownRoute is Decide's error for a route the Options do not have.
var ErrUnknownRoute = errors.New("gateway: no such route")

// Decision is what the gateway makes of a request.
type Decision struct {
	// Allowed says the request would have gone to the service.
	Allowed bool
	// Status is the refusal's status code (or a preflight's 204, which
	// is answered, not forwarded); 0 when allowed.
	Status int
	// Header holds, for a refusal, its response headers
	// (WWW-Authenticate, Retry-After, RateLimit, Allow, CORS, ...); when
	// allowed, those the gateway adds to the service's answer
	// (RateLimit-Policy and RateLimit, Deprecation and Sunset, CORS).
	Header http.Header
	// Body is the refusal's body, as the gateway writes it (problem
	// details, or the OAuth error of RFC 6750 §3); nil when allowed.
	Body []byte
	// Caller is who authenticated, on a route that authenticates; nil
	// otherwise.
	Caller *auth.Principal
	// Route is the prefix of the route that took the request; "" for
	// none.
	Route string
	// Drop are the request's header fields the service must not
	// receive, allowed or not: credentials the gateway did not check and
	// cookies (unless the route forwards them), and every field with '_'
	// in its name (X_API_Key reads as X-API-Key to CGI-style stacks). In
	// canonical form.
	Drop []string
}

// maxRefusalBody bounds what a refusal's body may hold in a Decision;
// the gateway's refusals are a few hundred bytes.
const maxRefusalBody = 16 << 10

// Decide decides r, whose RemoteAddr is the client's address as the
// engine saw it (host:port), whose Host, URL, Method and Header are the
// request's, and whose TLS, if set, holds the client's certificate where
// the engine terminated mutual TLS (for certificate-bound tokens, RFC
// 8705 §3). The body is never read. route, if not "", is the prefix of
// the route whose rules apply, whatever the path (an Envoy route saying
// which Rampart route it is); else the path chooses, as in the gateway.
// Decide changes r's headers; the error is ErrUnknownRoute, or r's
// context's.
func (d *Decider) Decide(r *http.Request, route string) (*Decision, error) {
	h := d.g.current.Load()
	ctx := r.Context()
	if route != "" {
		if h.byPrefix[route] == nil {
			return nil, fmt.Errorf("%w %q", ErrUnknownRoute, route)
		}
		ctx = context.WithValue(ctx, chosenKey{}, route)
	}
	var names [32]string
	before := names[:0]
	for name := range r.Header {
		before = append(before, name)
	}
	holder := &principalHolder{}
	w := getCapture()
	defer putCapture(w)
	r = r.WithContext(withHolder(ctx, holder))
	r.Body = http.NoBody
	h.http.ServeHTTP(w, r)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The capture's header map goes to the Decision; the pool gets a
	// new one.
	dec := &Decision{Route: holder.route, Header: w.header}
	w.header = nil
	for _, name := range before {
		if _, kept := r.Header[name]; !kept || strings.ContainsRune(name, '_') {
			dec.Drop = append(dec.Drop, name)
		}
	}
	if len(dec.Drop) > 1 {
		slices.Sort(dec.Drop)
	}
	if holder.allowed && w.status == 0 {
		dec.Allowed, dec.Caller = true, holder.p
		return dec, nil
	}
	dec.Status = w.status
	if dec.Status == 0 {
		dec.Status = http.StatusOK
	}
	dec.Body = bytes.Clone(w.body.Bytes())
	return dec, nil
}

// allowed ends a Decider's chain: the request passed every check.
func allowed(w http.ResponseWriter, r *http.Request) {
	if h := holderOf(r.Context()); h != nil {
		h.allowed = true
		h.p = auth.FromContext(r.Context())
	}
}

type chosenKey struct{}

// chosenOf returns the route Decide was asked to apply, or "".
func chosenOf(ctx context.Context) string {
	s, _ := ctx.Value(chosenKey{}).(string)
	return s
}

// chosenRoute sends a request to the route Decide was given, or where
// mux routes it.
func chosenRoute(h *handler, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := chosenOf(r.Context()); c != "" {
			h.byPrefix[c].ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// capture is the ResponseWriter of Decide: the headers, status and (a
// bounded prefix of the) body of a refusal.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

var captures = sync.Pool{New: func() any { return new(capture) }}

func getCapture() *capture {
	c := captures.Get().(*capture)
	c.header = make(http.Header, 4)
	return c
}

func putCapture(c *capture) {
	c.header, c.status = nil, 0
	c.body.Reset()
	captures.Put(c)
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := maxRefusalBody - c.body.Len(); room > 0 {
		c.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}
