package apikey

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/rampartsec/rampart/internal/principal"
)

// ErrNoKey is returned by Authenticate for a request without an API key.
var ErrNoKey = errors.New("apikey: no API key in the request")

// FromRequest returns the API key a request carries: the X-API-Key header,
// or an "Authorization: Bearer rk_..." header. ok is false when there is
// none (a bearer token that is not an API key is not one).
func FromRequest(r *http.Request) (key string, ok bool) {
	if vs := r.Header.Values("X-API-Key"); len(vs) > 0 {
		return vs[0], true
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") && strings.HasPrefix(h[7:], "rk_") {
		return h[7:], true
	}
	return "", false
}

// Authenticate verifies the API key of r; ErrNoKey when it has none, so
// that a caller accepting other credentials too can try those.
func (v *Verifier) Authenticate(r *http.Request) (*Verified, error) {
	if len(r.Header.Values("X-API-Key")) > 1 {
		return nil, ErrInvalid
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
		next.ServeHTTP(w, r.WithContext(principal.With(r.Context(), ver.Principal)))
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
// err.
func Unauthorized(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	code, body := http.StatusUnauthorized, map[string]string{"error": "invalid_token"}
	switch {
	case errors.Is(err, ErrNoKey):
		h.Set("WWW-Authenticate", `Bearer realm="rampart"`)
		body = map[string]string{"error": "unauthorized", "error_description": "an API key is required (X-API-Key or Authorization: Bearer)"}
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnknown), errors.Is(err, ErrRevoked),
		errors.Is(err, ErrExpired), errors.Is(err, ErrRotated), errors.Is(err, ErrClientDisabled):
		desc := strings.TrimPrefix(err.Error(), "apikey: ")
		h.Set("WWW-Authenticate", `Bearer realm="rampart", error="invalid_token", error_description="`+desc+`"`)
		body["error_description"] = desc
	default:
		// The store failed: not the client's fault, and nothing to tell.
		code, body = http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"}
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
