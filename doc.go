// Package rampart is a map of the Rampart module: a toolkit that makes
// attacks on payment APIs fail at the boundary. It has no code; the
// packages below do the work. Read them in this order.
//
// # Clients: certificate and public-key pinning
//
//   - [github.com/rampartsec/rampart/pin]: pins, policies and the Verifier,
//     which checks pins on the verified chain in tls.Config.VerifyConnection;
//     Transport, Client and DialContext glue.
//   - [github.com/rampartsec/rampart/pin/report]: RFC 7469 (and TrustKit)
//     failure reports in both directions: the asynchronous Reporter that
//     sends them, and Parse, which the control plane reads them with.
//   - [github.com/rampartsec/rampart/pin/export]: one policy rendered for
//     Android, iOS, TrustKit, OkHttp, curl, .NET and more.
//   - [github.com/rampartsec/rampart/pin/bundle]: signed, versioned pin
//     bundles (JWS) and the Updater that applies them to a Verifier.
//
// # Services: who is calling, and how often
//
//   - [github.com/rampartsec/rampart/auth]: the authenticated caller
//     (Principal), the one credential parser, the Authenticator interface,
//     Middleware and RequireScope.
//   - [github.com/rampartsec/rampart/apikey]: API keys, their Verifier (an
//     Authenticator) and the Manager that rotates them with a grace period.
//   - [github.com/rampartsec/rampart/token]: the access-token Validator (an
//     Authenticator); go-jose and the standard library only.
//   - [github.com/rampartsec/rampart/token/authserver]: the OAuth 2.0
//     authorization server: client credentials, signing keys, revocation,
//     introspection, metadata.
//   - [github.com/rampartsec/rampart/ratelimit]: GCRA limits, rules, the
//     Limiter, its middleware and the in-memory store;
//     [github.com/rampartsec/rampart/ratelimit/redisstore] shares them
//     across instances.
//   - [github.com/rampartsec/rampart/mtls]: the internal CA, SPIFFE-ID
//     certificates that renew while serving, server and client configs,
//     Authorize.
//   - [github.com/rampartsec/rampart/gateway]: the edge reverse proxy built
//     from typed Options: every control above, in front of services.
//
// # The rampart command
//
// cmd/rampart calls internal/app/cli, which turns flags into the options of
// the application layer. Nothing outside internal/ may import it:
//
//   - internal/app: the assemblies. controlplane (rampart serve), edge
//     (rampart gateway), demo (rampart demo builds both with demo options)
//     and cli (the commands).
//   - internal/controlplane: the control plane's HTTP server (reports, pin
//     bundles, admin API, dashboard) and api, the admin API's wire types
//     shared with the CLI.
//   - internal/store: storage interfaces and their SQLite and PostgreSQL
//     backends.
//   - internal/util: small shared helpers (the refusal writers in httpx,
//     the master key and its purposes in secrets, key generation, PKI
//     building, text and duration rules).
//   - internal/testing: test-only helpers (test PKIs, PostgreSQL, golden
//     files) and meta, the tests about the repository itself; the rampart
//     binary links none of them.
//
// examples/payments is a payment service written the way Rampart asks
// services to be written; nothing imports it.
package rampart
