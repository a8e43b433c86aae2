package token

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrorCode is an error code of RFC 6750 §3.1. It reaches the client in
// the WWW-Authenticate header and in the JSON body, so that a client can
// tell "get a new token" (InvalidToken) from "ask for more scope"
// (InsufficientScope) from "fix your request" (InvalidRequest).
type ErrorCode string

const (
	// InvalidRequest: the request is malformed, HTTP 400. A broken
	// Authorization header, two of them, or a token in the URI.
	InvalidRequest ErrorCode = "invalid_request"
	// InvalidToken: the token is expired, revoked, malformed, or fails
	// a check; HTTP 401. The client should get a new token.
	InvalidToken ErrorCode = "invalid_token"
	// InsufficientScope: the token is good but lacks a scope the
	// resource requires; HTTP 403. A new token will not help unless it
	// is requested with that scope.
	InsufficientScope ErrorCode = "insufficient_scope"
)

// valUnavailable is the code of a 503: the check could not be made (the
// JWKS could not be fetched, Revoked failed). RFC 6750 has no code for
// this; RFC 6749 §4.1.2.1 has this one, and clients already know it.
const valUnavailable ErrorCode = "temporarily_unavailable"

// Error is why a request was refused, in the terms RFC 6750 §3 gives the
// client. [Validator.Validate] and [ParseBearer] return it for everything
// a client can cause, and [Validator.Middleware] and [RequireScope] send
// it as it is: Status, a WWW-Authenticate header and a JSON body with
// Code and Description. Any other error from Validate is a configuration
// error of the Validator.
type Error struct {
	// Code is the RFC 6750 §3.1 code. It is empty when the request had
	// no bearer credentials at all, because §3.1 says not to send one
	// then, and "temporarily_unavailable" (Status 503) when the token
	// could not be checked for reasons that are not the client's.
	Code ErrorCode
	// Description is for the client's developer. It is fixed text,
	// never content of the token, so it cannot reflect input back.
	Description string
	// Scope is the scope the resource requires (InsufficientScope).
	Scope string
	// Status is the HTTP status of the answer: 400, 401, 403 or 503.
	Status int

	// err is the cause, for the server's logs; it never reaches the
	// client.
	err error
	// retryAfter is when a 503 is worth retrying.
	retryAfter time.Duration
}

// Error describes the refusal, with its cause, for logs.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("token: ")
	if e.Code != "" {
		b.WriteString(string(e.Code))
		b.WriteString(": ")
	}
	b.WriteString(e.Description)
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

// Unwrap returns the cause: a go-jose error, a JWKS fetch error, the
// error of Revoked.
func (e *Error) Unwrap() error { return e.err }

func valInvalid(desc string, err error) *Error {
	return &Error{Code: InvalidToken, Description: desc, Status: http.StatusUnauthorized, err: err}
}

func valBadRequest(desc string) *Error {
	return &Error{Code: InvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

// valMissingToken is what a request without a bearer token is told.
const valMissingToken = "a bearer token is required: Authorization: Bearer <access token>"

// valNoCredentials is the answer to a request without a bearer token:
// 401 and no error code (RFC 6750 §3.1), so that a client that did not
// know it had to authenticate learns how.
func valNoCredentials() *Error {
	return &Error{Description: valMissingToken, Status: http.StatusUnauthorized}
}

// valTwoCredentials is the answer to a request with more than one
// credential (RFC 6750 §2: one method per request; §3.1:
// invalid_request).
func valTwoCredentials() *Error {
	return valBadRequest("more than one credential in the request: send one X-API-Key or one Authorization header")
}

func valUnavailableErr(desc string, retry time.Duration, err error) *Error {
	return &Error{Code: valUnavailable, Description: desc, Status: http.StatusServiceUnavailable, err: err, retryAfter: retry}
}

// ParseBearer returns the token of an Authorization header value in the
// syntax of RFC 6750 §2.1: the scheme "Bearer" (in any case, RFC 9110
// §11.1), exactly one space, and a b64token. Strictness is the point: a
// header that two parsers could read differently is refused.
//
// The error is an [*Error]: 401 with no code for an empty header or
// another scheme (the request carries no bearer credentials, which is not
// an error of its own), 400 invalid_request for a malformed header.
func ParseBearer(header string) (token string, err error) {
	if header == "" {
		return "", valNoCredentials()
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !valIsToken(scheme) {
		return "", valBadRequest("malformed Authorization header")
	}
	if !strings.EqualFold(scheme, "Bearer") {
		// Basic, or an API-key scheme: not ours to judge, and not a
		// bearer token.
		return "", valNoCredentials()
	}
	if !found || rest == "" {
		return "", valBadRequest("the Authorization header has no bearer token")
	}
	if !valIsB64Token(rest) {
		return "", valBadRequest("the bearer token is not an RFC 6750 b64token after exactly one space")
	}
	return rest, nil
}

// valIsB64Token reports whether s matches RFC 6750 §2.1:
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func valIsB64Token(s string) bool {
	end := len(s)
	for end > 0 && s[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// valIsToken reports whether s is an RFC 9110 §5.6.2 token, the syntax
// of an authentication scheme.
func valIsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// valQuoted returns s as the content of a quoted-string that is safe in
// any RFC 6750 §3 attribute: characters outside %x20-21 / %x23-5B /
// %x5D-7E (quotes, backslashes, CR, LF, non-ASCII) become '?', so that
// nothing can end the string or the header early.
func valQuoted(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !valQuotable(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !valQuotable(c) {
			b[i] = '?'
		}
	}
	return string(b)
}

func valQuotable(c byte) bool {
	return c == 0x20 || c == 0x21 || (0x23 <= c && c <= 0x5B) || (0x5D <= c && c <= 0x7E)
}

// valChallenge is the WWW-Authenticate value for e (RFC 6750 §3).
func valChallenge(realm string, e *Error) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(valQuoted(realm))
	b.WriteByte('"')
	if e.Code != "" {
		b.WriteString(`, error="`)
		b.WriteString(valQuoted(string(e.Code)))
		b.WriteByte('"')
		if e.Description != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(valQuoted(e.Description))
			b.WriteByte('"')
		}
		if e.Scope != "" {
			b.WriteString(`, scope="`)
			b.WriteString(valQuoted(e.Scope))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// valWriteError is the one place that decides what a refused client sees.
// An *Error is sent as it is; anything else is a misconfigured Validator,
// which the client can do nothing about and must learn nothing of.
func valWriteError(w http.ResponseWriter, realm string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: "server_error", Description: "the server cannot check tokens", Status: http.StatusInternalServerError}
	}
	if e.Status < 400 || e.Status > 599 {
		// Not one of ours; refusing is the only safe reading.
		e = &Error{Code: InvalidToken, Description: e.Description, Scope: e.Scope, Status: http.StatusUnauthorized}
	}
	if realm == "" {
		realm = "rampart"
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch e.Status {
	case http.StatusUnauthorized, http.StatusBadRequest, http.StatusForbidden:
		h.Set("WWW-Authenticate", valChallenge(realm, e))
	case http.StatusServiceUnavailable:
		secs := int((e.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	body, _ := json.Marshal(struct {
		Error       ErrorCode `json:"error,omitempty"`
		Description string    `json:"error_description,omitempty"`
		Scope       string    `json:"scope,omitempty"`
	}{e.Code, e.Description, e.Scope})
	w.WriteHeader(e.Status)
	w.Write(append(body, '\n'))
}
