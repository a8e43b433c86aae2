package token

import (
	"errors"
	"net/http"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
)

// Authenticate authenticates requests that carry either an API key
// (X-API-Key, or "Authorization: Bearer rk_...") checked by keys, or a
// bearer token checked by v; either may be nil to refuse that kind. The
// caller goes in the context (FromContext), so RequireScope authorizes
// both alike. Failures are answered as Validator.Middleware answers them
// (RFC 6750 §3); a key or token store that cannot be reached is a 503. A
// request with more than one credential (see
// [apikey.CheckOneCredential]) is 400 invalid_request, and one without
// any is told what this route accepts.
func Authenticate(v *Validator, keys *apikey.Verifier) func(http.Handler) http.Handler {
	missing := "an API key (X-API-Key: rk_... or Authorization: Bearer rk_...) or an OAuth2 bearer token (Authorization: Bearer) is required"
	switch {
	case v == nil:
		missing = "an API key is required: X-API-Key: rk_... or Authorization: Bearer rk_..."
	case keys == nil:
		missing = valMissingToken
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var p *Principal
			var err error
			if apikey.CheckOneCredential(r) != nil {
				err = valTwoCredentials()
			} else if _, isKey := apikey.FromRequest(r); isKey {
				if keys == nil {
					valWriteError(w, "rampart", valInvalid("API keys are not accepted here", nil))
					return
				}
				var ver *apikey.Verified
				if ver, err = keys.Authenticate(r); err == nil {
					apikey.Deprecate(w, ver)
					p = ver.Principal
				} else if isAPIKeyRefusal(err) {
					err = valInvalid(errorText(err), nil)
				} else {
					err = &Error{Code: valUnavailable, Description: "authentication is unavailable; retry shortly", Status: http.StatusServiceUnavailable, err: err}
				}
			} else if v == nil {
				if _, perr := ParseBearer(r.Header.Get("Authorization")); perr != nil {
					err = perr
				} else {
					err = valInvalid("bearer tokens are not accepted here", nil)
				}
			} else {
				p, err = v.authenticate(r)
			}
			if e, ok := errors.AsType[*Error](err); ok && e.Code == "" && e.Status == http.StatusUnauthorized {
				// No credentials (RFC 6750 §3.1: no error code): say what
				// this route takes.
				err = &Error{Description: missing, Status: http.StatusUnauthorized}
			}
			if err != nil {
				valWriteError(w, "rampart", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
		})
	}
}

func isAPIKeyRefusal(err error) bool {
	for _, e := range []error{apikey.ErrInvalid, apikey.ErrUnknown, apikey.ErrRevoked, apikey.ErrExpired, apikey.ErrRotated, apikey.ErrClientDisabled, apikey.ErrNoKey} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func errorText(err error) string {
	s := err.Error()
	if len(s) > 8 && s[:8] == "apikey: " {
		return s[8:]
	}
	return s
}
