package auth

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

// ErrorCode is an error code of RFC 6750 §3.1. It reaches the client in
// the WWW-Authenticate header and in the JSON body, so that a client can
// tell "get a new credential" (InvalidToken) from "ask for more scope"
// (InsufficientScope) from "fix your request" (InvalidRequest).
type ErrorCode string

const (
	// InvalidRequest: the request is malformed, HTTP 400. A broken
	// Authorization header, two credentials, or a token in the URI.
	InvalidRequest ErrorCode = "invalid_request"
	// InvalidToken: the credential is expired, revoked, unknown,
	// malformed, or fails a check; HTTP 401. The client should get a new
	// one.
	InvalidToken ErrorCode = "invalid_token"
	// InsufficientScope: the credential is good but lacks a scope the
	// resource requires; HTTP 403. A new one will not help unless it is
	// requested with that scope.
	InsufficientScope ErrorCode = "insufficient_scope"
	// TemporarilyUnavailable: the credential could not be checked for
	// reasons that are not the client's (a key store, the issuer's keys,
	// a revocation check); HTTP 503 with Retry-After. RFC 6750 has no
	// code for this; RFC 6749 §4.1.2.1 has this one, and clients already
	// know it.
	TemporarilyUnavailable ErrorCode = "temporarily_unavailable"
)

// Error is why a request was refused, in the terms RFC 6750 §3 gives the
// client. Authenticators return it for everything a client can cause,
// and [Middleware], [RequireScope] and [WriteError] send it as it is:
// Status, a WWW-Authenticate challenge and a JSON body with Code,
// Description and Scope.
type Error struct {
	// Code is the RFC 6750 §3.1 code. It is empty when the request had
	// no credentials at all, because §3.1 says not to send one then, and
	// TemporarilyUnavailable (Status 503) when the credential could not
	// be checked for reasons that are not the client's.
	Code ErrorCode
	// Description is for the client's developer. It is fixed text,
	// never content of the credential, so it cannot reflect input back.
	Description string
	// Scope is the scope the resource requires (InsufficientScope).
	Scope string
	// Status is the HTTP status of the answer: 400, 401, 403 or 503.
	// One outside 400-599 is answered 401 invalid_token: refusing is the
	// only safe reading of a refusal that does not say how.
	Status int
	// RetryAfter is when a 503 is worth retrying; 0 means 1 s.
	RetryAfter time.Duration
	// Err is the cause, for the server's logs; it never reaches the
	// client.
	Err error
}

// Error describes the refusal, with its cause, for logs.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("auth: ")
	if e.Code != "" {
		b.WriteString(string(e.Code))
		b.WriteString(": ")
	}
	b.WriteString(e.Description)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func badRequest(desc string) *Error {
	return &Error{Code: InvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

// ErrNoCredential is what every [*NoCredentialError] is ([errors.Is]).
var ErrNoCredential = errors.New("auth: no credential this authenticator checks")

// NoCredentialError is the error of an [Authenticator] for a request that
// carries no credential it checks: none at all, or one of another kind.
// [Middleware] then asks the next Authenticator, and when none takes the
// request it answers 401: with no error code and a description of what
// the route accepts (Accepts) when the request carries no credential
// (RFC 6750 §3.1), invalid_token when it carries one the route does not
// take (Found).
type NoCredentialError struct {
	// Accepts are the kinds of credential the Authenticator checks.
	Accepts []Method
	// Found is the kind of credential the request carries; "" when it
	// carries none.
	Found Method
}

func (e *NoCredentialError) Error() string {
	if e.Found == "" {
		return "auth: the request carries no credential"
	}
	return "auth: the request's " + describe(e.Found) + " is not checked here"
}

// Is reports whether target is ErrNoCredential.
func (e *NoCredentialError) Is(target error) bool { return target == ErrNoCredential }

// refusal is the Error that answers e.
func (e *NoCredentialError) refusal() *Error {
	if e.Found != "" {
		return &Error{Code: InvalidToken, Status: http.StatusUnauthorized, Description: describe(e.Found) + "s are not accepted here", Err: e}
	}
	return &Error{Status: http.StatusUnauthorized, Description: required(e.Accepts), Err: e}
}

// describe names a kind of credential.
func describe(m Method) string {
	switch m {
	case APIKey:
		return "API key"
	case Bearer:
		return "bearer token"
	}
	return "credential"
}

// Descriptions of what a route accepts, for a request without
// credentials.
const (
	needKey    = "an API key is required: X-API-Key: rk_... or Authorization: Bearer rk_..."
	needToken  = "a bearer token is required: Authorization: Bearer <access token>"
	needEither = "an API key (X-API-Key: rk_... or Authorization: Bearer rk_...) or an OAuth2 bearer token (Authorization: Bearer) is required"
)

func required(accepts []Method) string {
	key, tok := slices.Contains(accepts, APIKey), slices.Contains(accepts, Bearer)
	switch {
	case key && tok:
		return needEither
	case key:
		return needKey
	case tok:
		return needToken
	}
	return "credentials are required"
}

// WriteError answers a request that err refuses, in realm ("" means
// "rampart"): an [*Error] as it is, a [*NoCredentialError] as
// [Middleware] answers it, anything else as 500 server_error with nothing
// of err: an Authenticator that fails otherwise is misconfigured, which
// the client can do nothing about and must learn nothing of.
func WriteError(w http.ResponseWriter, realm string, err error) {
	e := refusal(err)
	if realm == "" {
		realm = "rampart"
	}
	var retry time.Duration
	if e.Status == http.StatusServiceUnavailable {
		retry = max(e.RetryAfter, time.Second)
	}
	httpx.WriteOAuthError(w, httpx.OAuthError{
		Status: e.Status, Code: string(e.Code), Description: e.Description, Scope: e.Scope,
		Realm: realm, RetryAfter: retry,
	})
}

// refusal is the Error sent for err.
func refusal(err error) *Error {
	if nc, ok := errors.AsType[*NoCredentialError](err); ok {
		return nc.refusal()
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return &Error{Code: "server_error", Description: "the server cannot check credentials", Status: http.StatusInternalServerError, Err: err}
	}
	if 400 <= e.Status && e.Status <= 599 {
		return e
	}
	// Not a refusal status: refusing is the only safe reading.
	return &Error{Code: InvalidToken, Description: e.Description, Scope: e.Scope, Status: http.StatusUnauthorized, Err: e.Err}
}
