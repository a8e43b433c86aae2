// Package authserver is an OAuth2 authorization server for the
// client-credentials grant (RFC 6749 §4.4), issuing the short-lived
// access tokens that package token checks.
//
// # Issuing
//
// [Server] authenticates clients with an API key as client secret
// (client_secret_basic, client_secret_post) or with a client certificate
// (tls_client_auth, RFC 8705 §2.1), and gives them a JWT access token
// (RFC 9068) for a subset of their scopes. It also serves the JWKS,
// RFC 8414 metadata, RFC 7662 introspection and RFC 7009 revocation, and
// rotates its signing keys ([RotateKeys]) so that resource servers always
// know the next key before it signs. Its refusals are RFC 6749 §5.2
// error responses, the one place they are sent.
//
// # Token format
//
// A JWS in compact serialization, signed ES256 (or EdDSA):
//
//	header  {"alg": "ES256", "kid": "<RFC 7638 thumbprint>", "typ": "at+jwt"}
//	claims  {"iss": "https://auth.example.com", "sub": "<client id>",
//	         "aud": "https://api.example.com", "client_id": "<client id>",
//	         "iat": 1764072000, "exp": 1764072900, "jti": "<random>",
//	         "scope": "payment.read payment.write",
//	         "cnf": {"x5t#S256": "<base64url SHA-256 of the client certificate>"}}
//
// cnf is present when the client authenticated with its certificate
// (tls_client_auth): such a token is bound to that certificate (RFC 8705
// §3) and useless without it. A client that authenticated with its secret
// gets an unbound token, whatever certificate its TLS stack sent.
//
// Tokens are canonical: strict base64url, and ES256 signatures with low S.
// The Server writes an audit line per token issued, refused or revoked
// (see [Server.Logger]).
//
// # Revocation
//
// A [RevocationStore] holds revoked tokens (by jti) and revocations of
// every token of a client up to a time (by iat); a disabled client's
// tokens are revoked too. The Server's introspection and a
// token.Validator whose Revoked is the store's TokenRevoked ask the same
// question, so they agree.
package authserver
