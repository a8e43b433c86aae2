package token

import (
	"net/http"
	"time"

	"github.com/rampartsec/rampart/auth"
)

// ErrorCode is an error code of RFC 6750 §3.1: the type of [Error]'s
// Code, the same as auth.ErrorCode.
type ErrorCode = auth.ErrorCode

// The error codes of RFC 6750 §3.1 (see [auth.ErrorCode]).
const (
	InvalidRequest    = auth.InvalidRequest
	InvalidToken      = auth.InvalidToken
	InsufficientScope = auth.InsufficientScope
)

// Error is why a request was refused, in the terms RFC 6750 §3 gives the
// client: the same type as auth.Error, so that bearer tokens and API keys
// are refused alike. [Validator.Validate], [Validator.Authenticate] and
// [ParseBearer] return it for everything a client can cause, and
// [Validator.Middleware] sends it as it is: Status, a WWW-Authenticate
// header and a JSON body with Code and Description. Any other error from
// Validate is a configuration error of the Validator.
type Error = auth.Error

func invalid(desc string, err error) *Error {
	return &Error{Code: InvalidToken, Description: desc, Status: http.StatusUnauthorized, Err: err}
}

// missingToken is what a request without a bearer token is told.
const missingToken = "a bearer token is required: Authorization: Bearer <access token>"

// noCredentials is the answer to a request without a bearer token: 401
// and no error code (RFC 6750 §3.1), so that a client that did not know
// it had to authenticate learns how.
func noCredentials() *Error {
	return &Error{Description: missingToken, Status: http.StatusUnauthorized}
}

func unavailableNow(desc string, retry time.Duration, err error) *Error {
	return &Error{Code: auth.TemporarilyUnavailable, Description: desc, Status: http.StatusServiceUnavailable, Err: err, RetryAfter: retry}
}

// ParseBearer returns the token of an Authorization header value in the
// syntax of RFC 6750 §2.1: the scheme "Bearer" (in any case, RFC 9110
// §11.1), exactly one space, and a b64token. It reads the header as
// [auth.ParseAuthorization] does, the one reader every Rampart middleware
// uses: a header that two parsers could read differently is refused.
//
// The error is an [*Error]: 401 with no code for an empty header or
// another scheme (the request carries no bearer credentials, which is not
// an error of its own), 400 invalid_request for a malformed header.
func ParseBearer(header string) (token string, err error) {
	c, err := auth.ParseAuthorization(header)
	if err != nil {
		return "", err
	}
	if c.Method == "" {
		return "", noCredentials()
	}
	return c.Value, nil
}
