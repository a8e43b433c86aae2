package token

import (
	"net/http"

	"github.com/rampartsec/rampart/auth"
)

// Authenticate authenticates requests that carry either an API key
// checked by keys (an apikey.Verifier) or a bearer token checked by v;
// either may be nil to refuse that kind.
//
// Deprecated: Use [auth.Middleware](keys, v), which this is.
func Authenticate(v *Validator, keys auth.Authenticator) func(http.Handler) http.Handler {
	var as []auth.Authenticator
	if keys != nil {
		as = append(as, keys)
	}
	if v != nil {
		as = append(as, v)
	}
	return auth.Middleware(as...)
}
