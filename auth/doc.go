// Package auth is the authenticated caller of a request: who it is
// ([Principal]), how its credential is read from the request
// ([ParseCredential]), how it is checked ([Authenticator], implemented by
// apikey.Verifier and token.Validator), and how a route is authorized
// ([RequireScope]). One scope check serves API keys and bearer tokens
// alike.
//
// # The credential
//
// A request carries at most one credential (RFC 6750 §2): an API key in
// X-API-Key, or a bearer credential in Authorization (RFC 6750 §2.1; an
// API key may be sent that way too, and is recognised by its prefix,
// [APIKeyPrefix]). [ParseCredential] is the one reader of those headers:
// the API-key verifier, the token validator, the rate limiter's
// per-credential key and the control plane's admin check all call it, so
// that no two of them can read one request as two callers. A request with
// two credentials, a credential in the URI query, or a malformed
// Authorization header is refused with 400 invalid_request.
//
// # Authenticating
//
//	keys := &apikey.Verifier{Store: st, Pepper: pepper}
//	tokens := &token.Validator{Issuer: iss, Audience: aud, JWKSURL: jwks}
//	mux.Handle("POST /v1/payments", auth.RequireScope("payment.write")(create))
//	http.ListenAndServeTLS(addr, cert, key, auth.Middleware(keys, tokens)(mux))
//
// [Middleware] asks each [Authenticator] in turn; the first that takes
// the request's credential decides. The caller goes in the request's
// context ([FromContext]).
//
// # Refusals
//
// Every refusal is an RFC 6750 §3 error ([Error]): 401 invalid_token for
// a credential that does not authenticate, 400 invalid_request for a
// malformed request, 403 insufficient_scope for a caller without the
// scope a route requires, 503 with Retry-After when the credential cannot
// be checked now (a store or the issuer's keys are unreachable), and 401
// with no error code for a request without credentials (§3.1), whose
// description says what the route accepts. The answer carries a
// WWW-Authenticate challenge and a JSON body {"error",
// "error_description", "scope"}; the cause of a refusal goes to logs,
// never to the client.
package auth
