package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// compiledRule is a rule ready for requests: its routes in a ServeMux,
// which finds the pattern a request matches.
type compiledRule struct {
	Rule
	routes *http.ServeMux
}

func compile(r Rule) (cr *compiledRule, err error) {
	cr = &compiledRule{Rule: r}
	if len(r.Routes) == 0 {
		return cr, nil
	}
	cr.routes = http.NewServeMux()
	defer func() {
		// ServeMux panics on a malformed or conflicting pattern.
		if v := recover(); v != nil {
			cr, err = nil, fmt.Errorf("ratelimit: rule %s: routes: %v", r.Name, v)
		}
	}()
	for _, p := range r.Routes {
		cr.routes.Handle(p, http.NotFoundHandler())
	}
	return cr, nil
}

// key returns the rule's key for r, and false when the rule does not
// apply to it (another route; no client for a ByClient rule).
func (cr *compiledRule) key(r *http.Request, trusted []netip.Prefix) (string, bool) {
	pattern := "*"
	if cr.routes != nil {
		_, p := cr.routes.Handler(r)
		if p == "" {
			return "", false
		}
		pattern = p
	}
	var b strings.Builder
	for i, part := range cr.By {
		if i > 0 {
			b.WriteByte('|')
		}
		switch part {
		case ByAddr:
			b.WriteString(AddrKey(ClientAddr(r, trusted)))
		case ByCredential:
			c := credential(r)
			if c == "" {
				return "", false
			}
			sum := sha256.Sum256([]byte(c))
			b.WriteString(hex.EncodeToString(sum[:12]))
		case ByClient:
			p := auth.FromContext(r.Context())
			if p == nil || p.ClientID == "" {
				return "", false
			}
			b.WriteString(p.ClientID)
		case ByRoute:
			b.WriteString(pattern)
		}
	}
	return b.String(), true
}

// credential returns the API key or bearer token a request presents, as
// auth.ParseCredential reads it, the way every authenticating middleware
// does: a request it refuses (more than one credential, a malformed
// Authorization header) has no one credential, and keying it on either
// value would let the other go uncounted; authentication refuses it.
//
// A bearer token in JWS compact form is keyed without its signature, on
// what was signed: an ECDSA signature (r, s) has a twin (r, n-s) that
// verifies too, and token.Validator takes the twin for the same token, so
// the limit must as well (else a token would have two budgets).
func credential(r *http.Request) string {
	c, err := auth.ParseCredential(r)
	if err != nil {
		return ""
	}
	if c.Method == auth.Bearer && strings.Count(c.Value, ".") == 2 {
		signed := c.Value[:strings.LastIndexByte(c.Value, '.')]
		return "jws:" + signed
	}
	return c.Value
}

// Middleware applies the edge rules to every request, in order. Every
// response carries the RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers) of the rules that applied, added
// to those already set (by an earlier Middleware, say). The
// first rule that denies answers 429 with Retry-After (delta seconds) and
// an RFC 9457 problem+json body; rules before it have counted the
// request. A FailClosed rule whose store fails answers 503.
//
// Rules keyed ByClient need the client: put this middleware after the
// authentication middleware for them (and before it for the others, to
// stop floods before the costlier authentication).
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := l.Init(); err != nil {
			writeProblem(w, http.StatusInternalServerError, "Internal Server Error", "the rate limiter is misconfigured", "", time.Second)
			return
		}
		// The fields are built in place: this runs on every request.
		var pbuf, sbuf [128]byte
		policies, states := pbuf[:0], sbuf[:0]
		for _, cr := range l.edge {
			key, ok := cr.key(r, l.TrustedProxies)
			if !ok {
				continue
			}
			d, err := l.decide(r.Context(), cr, key, 1)
			if err != nil {
				if r.Context().Err() != nil {
					return
				}
				writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable",
					"the rate limiter cannot decide; retry shortly", cr.Name, time.Second)
				return
			}
			policies = appendPolicyField(policies, cr.Name, cr.Limit)
			states = appendStateField(states, cr.Name, d)
			if !d.Allowed {
				setFields(w.Header(), policies, states)
				writeProblem(w, http.StatusTooManyRequests, "Too Many Requests",
					fmt.Sprintf("rate limit %q exceeded: %s; retry in %d s", cr.Name, describe(cr.Limit), seconds(d.RetryAfter)),
					cr.Name, d.RetryAfter)
				return
			}
		}
		if len(policies) > 0 {
			setFields(w.Header(), policies, states)
		}
		next.ServeHTTP(w, r)
	})
}

// Headers sets the RateLimit-Policy and RateLimit fields of a business
// decision on a response, for handlers that call Allow.
func Headers(h http.Header, d Decision) {
	if d.Rule == "" {
		return
	}
	h[policyHeader] = append(h[policyHeader], string(appendPolicyField(nil, d.Rule, d.Limit)))
	h[stateHeader] = append(h[stateHeader], string(appendStateField(nil, d.Rule, d)))
}

// Deny answers a denied business decision: 429, Retry-After, the fields,
// and problem details. A FailClosed rule's ErrUnavailable is answered 503
// by the caller (Unavailable).
func Deny(w http.ResponseWriter, d Decision) {
	Headers(w.Header(), d)
	writeProblem(w, http.StatusTooManyRequests, "Too Many Requests",
		fmt.Sprintf("rate limit %q exceeded: %s; retry in %d s", d.Rule, describe(d.Limit), seconds(d.RetryAfter)),
		d.Rule, d.RetryAfter)
}

// Unavailable answers an error of Allow, an [*UnavailableError]: 503,
// Retry-After, and problem details naming its rule.
func Unavailable(w http.ResponseWriter, err error) {
	rule := ""
	if ue, ok := errors.AsType[*UnavailableError](err); ok {
		rule = ue.Rule
	}
	writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable", "the rate limiter cannot decide; retry shortly", rule, time.Second)
}

// The fields' names in canonical form, so that setting them does not
// canonicalize (and allocate) on every response.
var (
	policyHeader = http.CanonicalHeaderKey("RateLimit-Policy")
	stateHeader  = http.CanonicalHeaderKey("RateLimit")
)

// setFields adds the RateLimit-Policy and RateLimit items of this
// middleware's rules to those already on the response: another Limiter's
// (the gateway runs one before authentication and one after it), a
// business rule's. Both are lists (draft-ietf-httpapi-ratelimit-headers
// §4, §5; RFC 9110 §5.3: field lines of a list combine).
func setFields(h http.Header, policies, states []byte) {
	h[policyHeader] = append(h[policyHeader], string(policies))
	h[stateHeader] = append(h[stateHeader], string(states))
}

// appendPolicyField appends an item of RateLimit-Policy to a list: the
// quota q per window w seconds. A rule's name is an sf-string that needs
// no escaping: Rule.validate allows only a-z 0-9 . _ -.
func appendPolicyField(b []byte, name string, l Limit) []byte {
	b = appendItem(b, name)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, int64(l.Rate), 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, seconds(l.Period), 10)
}

// appendStateField appends an item of RateLimit: r remaining, t seconds
// until the quota is whole again.
func appendStateField(b []byte, name string, d Decision) []byte {
	b = appendItem(b, name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(d.Remaining, 0)), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, seconds(d.ResetAfter), 10)
}

func appendItem(b []byte, name string) []byte {
	if len(b) > 0 {
		b = append(b, ", "...)
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"')
}

func describe(l Limit) string {
	s := fmt.Sprintf("%d per %v", l.Rate, l.Period)
	if l.Burst != l.Rate {
		s += fmt.Sprintf(" (burst %d)", l.Burst)
	}
	return s
}

// seconds rounds up to whole seconds, as Retry-After and the fields want.
func seconds(d time.Duration) int64 { return httpx.Seconds(d) }

// writeProblem answers with RFC 9457 problem details naming the rule,
// and Retry-After (at least a second).
func writeProblem(w http.ResponseWriter, status int, title, detail, rule string, retry time.Duration) {
	httpx.WriteProblem(w, httpx.Problem{Status: status, Title: title, Detail: detail, Rule: rule, RetryAfter: max(retry, time.Second)})
}
