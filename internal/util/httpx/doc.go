// Package httpx is what Rampart's HTTP servers (rampart gateway, rampart
// serve, the payment example) and HTTP middleware share: a guard against
// requests whose framing another HTTP implementation could read
// differently, and the two writers of every refusal.
//
// # Refusals
//
// Every refusal Rampart answers is written by one of two functions, so
// that one refusal reads the same whichever package answers it:
//
//   - [WriteProblem]: RFC 9457 problem details (application/problem+json),
//     for the edge and the services: the gateway's refusals, rate limits,
//     the payment example, the framing guard;
//   - [WriteOAuthError]: the error object of OAuth 2.0 (RFC 6749 §5.2),
//     {"error", "error_description", "scope"}, which RFC 6750 §3 gives
//     resource servers with a Bearer challenge in WWW-Authenticate: every
//     refused credential (API keys and bearer tokens alike), the token
//     endpoint, and the control plane's and the mTLS endpoints' answers,
//     whose documented bodies have that shape.
//
// Both send Cache-Control: no-store and X-Content-Type-Options: nosniff,
// and Retry-After in whole seconds, rounded up, when there is a time to
// retry.
//
// # Request framing
//
// [Framing] guards against request smuggling (RFC 9112 §6.1, §6.3 and
// §11.2, CWE-444).
//
// # What net/http already refuses
//
// Go's HTTP/1 server answers and closes on its own: Content-Length values
// that differ (400), a Transfer-Encoding other than chunked or more than
// one Transfer-Encoding field (501), whitespace before a field's colon, a
// bare CR, a missing or repeated Host (400).
//
// # What it accepts, and the handler cannot see
//
// It also accepts, and normalises before any handler runs:
//
//   - Content-Length together with Transfer-Encoding: chunked. It frames
//     by Transfer-Encoding, as RFC 9112 §6.3 allows, but deletes
//     Content-Length from the request and keeps the connection, where
//     §6.1 says it MUST close it after responding;
//   - Transfer-Encoding: Chunked (any case), an obs-folded
//     Transfer-Encoding or Content-Length (RFC 9112 §5.2: unfolded), and
//     two identical Content-Length fields (RFC 9110 §8.6: merged);
//   - HTTP/1.0 with Transfer-Encoding, which it drops, framing by
//     Content-Length (§6.1: faulty framing, close the connection).
//
// A front proxy that frames one of those otherwise takes the bytes after
// the body as the next request (or the start of the body as this one's
// end). TLS is terminated inside net/http, so nothing below it sees the
// request head in clear, and the handler receives those requests exactly
// as it receives well-framed ones. So [Framing] decides on what the
// handler can see: every HTTP/1.x request framed by a body (a
// Content-Length over 0, or chunked) and every HTTP/1.0 request is
// answered with Connection: close, which makes net/http close the
// connection after the response, so that nothing that follows the request
// on its connection is ever read. Requests without a body (most GETs) keep
// their connections; HTTP/2 frames each message itself (RFC 9113 §8.1)
// and is left alone, except that a request with more than one
// Content-Length value (which Go's HTTP/2 server passes on) is refused.
package httpx
