// Package token checks short-lived OAuth2 access tokens (RFC 9068 JWTs)
// with scopes, such as payment.read, payment.write and payment.withdraw,
// for resource servers. It depends on go-jose, a JSON decoder and the
// standard library only; the authorization server that issues the tokens
// is package [github.com/rampartsec/rampart/token/authserver].
//
// # Checking
//
// A [Validator] checks tokens: signature with a key from the JWKS
// (fetched and cached; an unknown kid triggers one rate-limited
// refetch), an algorithm allow-list, typ, iss, aud, exp and nbf with a
// small skew, the certificate binding (RFC 8705 §3), one canonical
// spelling per token, revocation ([Validator.Revoked]), and a size limit
// before any parsing.
//
// A Validator is an [auth.Authenticator]: [Validator.Authenticate] reads
// the bearer token with [auth.ParseCredential], one credential per
// request (RFC 6750 §2), and [Validator.Middleware] (or [auth.Middleware],
// with API keys too) authenticates requests; [auth.RequireScope]
// authorizes them by exact scope, for bearer tokens and API keys alike.
// Refusals are [Error]s, RFC 6750 §3.
package token
