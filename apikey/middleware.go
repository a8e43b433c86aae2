package apikey

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/rampartsec/rampart/auth"
)

// ErrNoKey is returned by Authenticate for a request without an API key.
var ErrNoKey = errors.New("apikey: no API key in the request")

// ErrTwoCredentials is returned by Authenticate for a request that
// carries more than one credential: X-API-Key or Authorization given
// twice, or both. RFC 6750 §2 allows one method per request, and a
// request that two readers could take for two different callers is
// refused (HTTP 400 invalid_request) rather than read either way.
var ErrTwoCredentials = errors.New("apikey: more than one credential in the request: send one X-API-Key or one Authorization header")

// CheckOneCredential returns ErrTwoCredentials when r carries more than
// one credential header: two X-API-Key headers, two Authorization
// headers, or an X-API-Key next to an Authorization header of any scheme
// (even empty). Every authenticating middleware of Rampart refuses such a
// request.
func CheckOneCredential(r *http.Request) error {
	keys, auths := len(r.Header.Values("X-API-Key")), len(r.Header.Values("Authorization"))
	if keys > 1 || auths > 1 || keys > 0 && auths > 0 {
		return ErrTwoCredentials
	}
	return nil
}

// FromRequest returns the API key a request carries: the X-API-Key header,
// or an "Authorization: Bearer rk_..." header. ok is false when there is
// none (a bearer token that is not an API key is not one), and when there
// is more than one credential (see [CheckOneCredential]): such a request
// has no one key.
func FromRequest(r *http.Request) (key string, ok bool) {
	if CheckOneCredential(r) != nil {
		return "", false
	}
	if vs := r.Header.Values("X-API-Key"); len(vs) == 1 {
		return vs[0], true
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") && strings.HasPrefix(h[7:], "rk_") {
		return h[7:], true
	}
	return "", false
}

// Authenticate verifies the API key of r; ErrNoKey when it has none, so
// that a caller accepting other credentials too can try those, and
// ErrTwoCredentials when it has more than one.
func (v *Verifier) Authenticate(r *http.Request) (*Verified, error) {
	if err := CheckOneCredential(r); err != nil {
		return nil, err
	}
	s, ok := FromRequest(r)
	if !ok {
		return nil, ErrNoKey
	}
	return v.Verify(r.Context(), s)
}

// Middleware authenticates every request by API key and puts the caller in
// the request's context (FromContext). Without a valid key: 401, with
// WWW-Authenticate as for a bearer token (RFC 6750 §3), since keys may be
// sent as one. A key in its rotation grace period works, and the answer
// says so: Deprecation (RFC 9745) and Sunset (RFC 8594) headers.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ver, err := v.Authenticate(r)
		if err != nil {
			Unauthorized(w, err)
			return
		}
		Deprecate(w, ver)
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), ver.Principal)))
	})
}

// Deprecate sets the Deprecation and Sunset headers for a key in its
// rotation grace period, so that the client's operators see it is time to
// switch.
func Deprecate(w http.ResponseWriter, ver *Verified) {
	if !ver.Deprecated {
		return
	}
	if !ver.RotatedAt.IsZero() {
		w.Header().Set("Deprecation", "@"+strconv.FormatInt(ver.RotatedAt.Unix(), 10))
	} else {
		w.Header().Set("Deprecation", "@"+strconv.FormatInt(ver.Sunset.Unix(), 10))
	}
	w.Header().Set("Sunset", ver.Sunset.UTC().Format(http.TimeFormat))
}

// Unauthorized writes the 401 (or, when the store failed, 503) answer for
// err: RFC 6750 §3.1, with no error code for a request without a key, and
// 400 invalid_request for one with more than one credential.
func Unauthorized(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	code, body := http.StatusUnauthorized, map[string]string{"error": "invalid_token"}
	switch {
	case errors.Is(err, ErrNoKey):
		h.Set("WWW-Authenticate", `Bearer realm="rampart"`)
		// §3.1: no error code when the request had no credentials.
		body = map[string]string{"error_description": "an API key is required: X-API-Key: rk_... or Authorization: Bearer rk_..."}
	case errors.Is(err, ErrTwoCredentials):
		code = http.StatusBadRequest
		desc := strings.TrimPrefix(err.Error(), "apikey: ")
		h.Set("WWW-Authenticate", `Bearer realm="rampart", error="invalid_request", error_description="`+quotable(desc)+`"`)
		body = map[string]string{"error": "invalid_request", "error_description": desc}
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnknown), errors.Is(err, ErrRevoked),
		errors.Is(err, ErrExpired), errors.Is(err, ErrRotated), errors.Is(err, ErrClientDisabled):
		desc := strings.TrimPrefix(err.Error(), "apikey: ")
		h.Set("WWW-Authenticate", `Bearer realm="rampart", error="invalid_token", error_description="`+quotable(desc)+`"`)
		body["error_description"] = desc
	default:
		// The store failed: not the client's fault, and nothing to tell.
		// The code is the one the token Validator answers a 503 with.
		code, body = http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "the key store cannot answer now; retry shortly"}
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// quotable keeps s within an RFC 6750 §3 quoted attribute value,
// %x20-21 / %x23-5B / %x5D-7E: anything else becomes '?'.
func quotable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c != 0x20 && c != 0x21 && (c < 0x23 || c > 0x5B) && (c < 0x5D || c > 0x7E) {
			b[i] = '?'
		}
	}
	return string(b)
}
