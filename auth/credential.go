package auth

import (
	"errors"
	"net/http"
	"strings"
)

// APIKeyPrefix begins every API key (package apikey): a bearer credential
// that begins with it is an API key, and is checked as one.
const APIKeyPrefix = "rk_"

// The headers a credential is read from.
const (
	// HeaderAPIKey carries an API key.
	HeaderAPIKey = "X-API-Key"
	// HeaderAuthorization carries a bearer credential (RFC 6750 §2.1):
	// an access token, or an API key.
	HeaderAuthorization = "Authorization"
)

// ErrTwoCredentials is wrapped by the refusal of a request that carries
// more than one credential: X-API-Key or Authorization given twice, or
// both. RFC 6750 §2 allows one method per request, and a request that two
// readers could take for two different callers is refused (400
// invalid_request) rather than read either way.
var ErrTwoCredentials = errors.New("auth: " + twoCredentials)

const twoCredentials = "more than one credential in the request: send one X-API-Key or one Authorization header"

// Credential is the credential a request carries. The zero Credential is
// a request without one.
type Credential struct {
	// Method is its kind: APIKey for an X-API-Key header or a bearer
	// credential that begins with APIKeyPrefix, Bearer for any other
	// bearer credential; "" for none.
	Method Method
	// Value is the API key or the token, as sent. An X-API-Key header
	// may be empty: it is still a credential (and not a valid key).
	Value string
	// Header is where it came from: HeaderAPIKey or HeaderAuthorization;
	// "" for none.
	Header string
}

// ParseCredential returns the credential of r. It is the one reader of
// the credential headers, and strict, so that no two readers can take
// one request for two callers:
//
//   - more than one X-API-Key or Authorization header, or one of each (an
//     Authorization of any scheme, even empty, next to an X-API-Key), is
//     refused: RFC 6750 §2, one method per request ([ErrTwoCredentials]);
//   - an access_token in the URI query (RFC 6750 §2.3) is refused, since
//     URIs end up in logs and Referer headers; a form body (§2.2) is not
//     read, so that the body stays unread;
//   - an Authorization header is read by [ParseAuthorization].
//
// A request without a credential, or whose Authorization header has
// another scheme (Basic, say: not a bearer credential, and not this
// package's to judge), gives the zero Credential and no error. The error
// is an [*Error], 400 invalid_request.
func ParseCredential(r *http.Request) (Credential, error) {
	keys, auths := r.Header.Values(HeaderAPIKey), r.Header.Values(HeaderAuthorization)
	if len(keys) > 1 || len(auths) > 1 || len(keys) > 0 && len(auths) > 0 {
		return Credential{}, &Error{Code: InvalidRequest, Status: http.StatusBadRequest, Description: twoCredentials, Err: ErrTwoCredentials}
	}
	if r.URL != nil && strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return Credential{}, badRequest("access tokens in the URI are not accepted; use the Authorization header")
	}
	if len(keys) == 1 {
		return Credential{Method: APIKey, Value: keys[0], Header: HeaderAPIKey}, nil
	}
	if len(auths) == 1 {
		return ParseAuthorization(auths[0])
	}
	return Credential{}, nil
}

// ParseAuthorization reads an Authorization header value in the syntax of
// RFC 6750 §2.1: the scheme "Bearer" (in any case, RFC 9110 §11.1),
// exactly one space, and a b64token. Strictness is the point: a header
// that two parsers could read differently is refused.
//
// An empty header, or one of another scheme, gives the zero Credential
// and no error. The error is an [*Error], 400 invalid_request, for a
// malformed header.
func ParseAuthorization(header string) (Credential, error) {
	if header == "" {
		return Credential{}, nil
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !isToken(scheme) {
		return Credential{}, badRequest("malformed Authorization header")
	}
	if !strings.EqualFold(scheme, "Bearer") {
		// Basic, or an API-key scheme: not a bearer credential.
		return Credential{}, nil
	}
	if !found || rest == "" {
		return Credential{}, badRequest("the Authorization header has no bearer token")
	}
	if !isB64Token(rest) {
		return Credential{}, badRequest("the bearer token is not an RFC 6750 b64token after exactly one space")
	}
	m := Bearer
	if strings.HasPrefix(rest, APIKeyPrefix) {
		m = APIKey
	}
	return Credential{Method: m, Value: rest, Header: HeaderAuthorization}, nil
}

// isB64Token reports whether s matches RFC 6750 §2.1:
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
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

// isToken reports whether s is an RFC 9110 §5.6.2 token, the syntax of
// an authentication scheme.
func isToken(s string) bool {
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
