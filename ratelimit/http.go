package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/principal"
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
			p := principal.From(r.Context())
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

// credential returns the API key or bearer token a request presents.
func credential(r *http.Request) string {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return h[7:]
	}
	return ""
}

// Middleware applies the edge rules to every request, in order. Every
// response carries the RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers) of the rules that applied. The
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
			http.Error(w, "rate limiter misconfigured", http.StatusInternalServerError)
			return
		}
		var policies, states []string
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
			policies = append(policies, policyField(cr.Name, cr.Limit))
			states = append(states, stateField(cr.Name, d))
			if !d.Allowed {
				w.Header().Set("RateLimit-Policy", strings.Join(policies, ", "))
				w.Header().Set("RateLimit", strings.Join(states, ", "))
				writeProblem(w, http.StatusTooManyRequests, "Too Many Requests",
					fmt.Sprintf("rate limit %q exceeded: %s; retry in %d s", cr.Name, describe(cr.Limit), seconds(d.RetryAfter)),
					cr.Name, d.RetryAfter)
				return
			}
		}
		if len(policies) > 0 {
			w.Header().Set("RateLimit-Policy", strings.Join(policies, ", "))
			w.Header().Set("RateLimit", strings.Join(states, ", "))
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
	h.Add("RateLimit-Policy", policyField(d.Rule, d.Limit))
	h.Add("RateLimit", stateField(d.Rule, d))
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

// Unavailable answers an ErrUnavailable from Allow: 503 and Retry-After.
func Unavailable(w http.ResponseWriter, err error) {
	rule := ""
	if errors.Is(err, ErrUnavailable) {
		if _, after, ok := strings.Cut(err.Error(), "(rule "); ok {
			rule, _, _ = strings.Cut(after, ")")
		}
	}
	writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable", "the rate limiter cannot decide; retry shortly", rule, time.Second)
}

// policyField is one item of RateLimit-Policy: the quota q per window w
// seconds (the rate; a burst above it is not expressible in the field).
func policyField(name string, l Limit) string {
	return fmt.Sprintf("%q;q=%d;w=%d", name, l.Rate, seconds(l.Period))
}

// stateField is one item of RateLimit: r remaining, t seconds until the
// quota is whole again.
func stateField(name string, d Decision) string {
	return fmt.Sprintf("%q;r=%d;t=%d", name, max(d.Remaining, 0), seconds(d.ResetAfter))
}

func describe(l Limit) string {
	s := fmt.Sprintf("%d per %v", l.Rate, l.Period)
	if l.Burst != l.Rate {
		s += fmt.Sprintf(" (burst %d)", l.Burst)
	}
	return s
}

// seconds rounds up to whole seconds, as Retry-After and the fields want.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	Rule       string `json:"rule,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, title, detail, rule string, retry time.Duration) {
	secs := max(seconds(retry), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: title, Status: status, Detail: detail, Rule: rule, RetryAfter: secs})
}
