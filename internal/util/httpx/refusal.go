package httpx

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Problem is an RFC 9457 problem details object. Its zero value is not
// an answer: Status is required.
type Problem struct {
	// Status is the HTTP status code, and the "status" member.
	Status int
	// Title is the "title" member; "" means the status's text
	// (http.StatusText).
	Title string
	// Detail is the "detail" member: what is wrong with this request,
	// for the client's developer. It is never an internal error's text.
	Detail string
	// Type is the "type" member; "" means "about:blank" (RFC 9457 §4.2.1:
	// the status says what kind of problem it is).
	Type string
	// Rule, if set, is the extension member "rule": the rate-limit rule
	// that refused (package ratelimit).
	Rule string
	// RetryAfter, if positive, is when the request is worth retrying: in
	// whole seconds, rounded up, it is the Retry-After header and the
	// extension member "retry_after".
	RetryAfter time.Duration
}

// problemJSON is the body of a Problem, members in RFC 9457's order.
type problemJSON struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	Rule       string `json:"rule,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// ProblemType is the media type of problem details (RFC 9457 §3).
const ProblemType = "application/problem+json"

// WriteProblem answers with p: Content-Type application/problem+json,
// Cache-Control no-store, X-Content-Type-Options nosniff, Retry-After when
// p has a RetryAfter, and the body.
func WriteProblem(w http.ResponseWriter, p Problem) {
	body := problemJSON{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail, Rule: p.Rule}
	if body.Type == "" {
		body.Type = "about:blank"
	}
	if body.Title == "" {
		body.Title = http.StatusText(p.Status)
	}
	h := w.Header()
	if p.RetryAfter > 0 {
		body.RetryAfter = Seconds(p.RetryAfter)
		h.Set("Retry-After", strconv.FormatInt(body.RetryAfter, 10))
	}
	h.Set("Content-Type", ProblemType)
	setNoStore(h)
	b, _ := json.Marshal(body) // strings and numbers always encode
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}

// OAuthError is a refusal in the JSON shape of OAuth 2.0's error response
// (RFC 6749 §5.2), which RFC 6750 §3 gives resource servers as well:
// {"error", "error_description", "scope"}, each member sent only when set.
// Its zero value is not an answer: Status is required.
type OAuthError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the "error" member: an error code of RFC 6750 §3.1 or RFC
	// 6749 §5.2 (the control plane's documented answers put their message
	// there). "" sends none: RFC 6750 §3.1 asks for no code when the
	// request carried no credentials.
	Code string
	// Description is the "error_description" member, for the client's
	// developer. It is sent as it is; the WWW-Authenticate challenge gets
	// a copy made safe for a quoted string ([Quote]).
	Description string
	// Scope is the "scope" member: the scopes the resource requires
	// (RFC 6750 §3, insufficient_scope).
	Scope string
	// Realm, if set, makes the answer to a 400, 401 or 403 carry the
	// challenge of RFC 6750 §3 in WWW-Authenticate: Bearer realm="Realm",
	// and the code, description and scope as attributes (none of them
	// without a code, §3.1). "" sends no challenge.
	Realm string
	// RetryAfter, if positive, is when the request is worth retrying
	// (a 429, a 503): the Retry-After header, in whole seconds, rounded
	// up.
	RetryAfter time.Duration
	// Header holds header fields set after the writer's own: RFC 6749
	// §5.2's Pragma, a Basic challenge for invalid_client.
	Header http.Header
}

// oauthJSON is the body of an OAuthError.
type oauthJSON struct {
	Code        string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
	Scope       string `json:"scope,omitempty"`
}

// WriteOAuthError answers with e: Content-Type application/json,
// Cache-Control no-store, X-Content-Type-Options nosniff, the challenge
// and Retry-After as e says, e.Header, and the body.
func WriteOAuthError(w http.ResponseWriter, e OAuthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	setNoStore(h)
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		if e.Realm != "" {
			h.Set("WWW-Authenticate", Challenge(e.Realm, e.Code, e.Description, e.Scope))
		}
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(Seconds(e.RetryAfter), 10))
	}
	for k, vs := range e.Header {
		h[k] = vs
	}
	b, _ := json.Marshal(oauthJSON{e.Code, e.Description, e.Scope}) // strings always encode
	w.WriteHeader(e.Status)
	w.Write(append(b, '\n'))
}

// Challenge is the WWW-Authenticate value of RFC 6750 §3 for realm: the
// Bearer scheme, the realm and, when code is set, the error, its
// description and the scope, each quoted with [Quote]. Without a code it
// is the realm alone (§3.1).
func Challenge(realm, code, description, scope string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(Quote(realm))
	b.WriteByte('"')
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(Quote(code))
		b.WriteByte('"')
		if description != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(Quote(description))
			b.WriteByte('"')
		}
		if scope != "" {
			b.WriteString(`, scope="`)
			b.WriteString(Quote(scope))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// SetDeprecation sets the Deprecation (RFC 9745) and Sunset (RFC 8594)
// headers of an answer to a request whose credential works only until
// sunset (an API key in its rotation grace period): Deprecation is since,
// or sunset when since is zero. Nothing is set when sunset is zero.
func SetDeprecation(h http.Header, since, sunset time.Time) {
	if sunset.IsZero() {
		return
	}
	if since.IsZero() {
		since = sunset
	}
	h.Set("Deprecation", "@"+strconv.FormatInt(since.Unix(), 10))
	h.Set("Sunset", sunset.UTC().Format(http.TimeFormat))
}

func setNoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// Seconds rounds d up to whole seconds, as Retry-After and the
// RateLimit fields want; 0 for d <= 0.
func Seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// Quote returns s as the content of a quoted-string that is safe in any
// RFC 6750 §3 attribute, and as an RFC 6749 §5.2 error_description:
// characters outside %x20-21 / %x23-5B / %x5D-7E (quotes, backslashes,
// CR, LF, non-ASCII) become '?', so that nothing can end the string or
// the header early.
func Quote(s string) string {
	i := 0
	for i < len(s) && quotable(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if !quotable(b[i]) {
			b[i] = '?'
		}
	}
	return string(b)
}

func quotable(c byte) bool {
	return c == 0x20 || c == 0x21 || (0x23 <= c && c <= 0x5B) || (0x5D <= c && c <= 0x7E)
}

// IsScopeToken reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func IsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0x20 || !quotable(c) {
			return false
		}
	}
	return true
}
