// Package httpx guards Rampart's HTTP servers (rampart gateway, rampart
// serve, the payment example) against requests whose framing another HTTP
// implementation could read differently: request smuggling (RFC 9112
// §6.1, §6.3 and §11.2, CWE-444).
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

import (
	"encoding/json"
	"net/http"
)

// Verdict is what [Framing] does with a request.
type Verdict int

const (
	// Keep serves the request and keeps the connection.
	Keep Verdict = iota
	// Close serves the request and closes the connection after the
	// response (HTTP/1.x).
	Close
	// Refuse answers 400 and closes the connection (HTTP/1.x).
	Refuse
)

// Check says what [Framing] does with r, and why (empty for Keep).
func Check(r *http.Request) (Verdict, string) {
	// A message may have one length (RFC 9110 §8.6, RFC 9113 §8.1.1):
	// net/http's HTTP/1 server merges identical values and refuses others,
	// its HTTP/2 server passes several on.
	if cl := r.Header.Values("Content-Length"); len(cl) > 1 {
		return Refuse, "the request has more than one Content-Length"
	} else if len(cl) == 1 && !digits(cl[0]) {
		return Refuse, "the request's Content-Length is not a number"
	}
	// Neither server leaves Transfer-Encoding in the header (HTTP/1
	// moves it to r.TransferEncoding, HTTP/2 refuses it): if a handler
	// is ever served by something that does, the request has two
	// framings.
	if r.Header.Get("Transfer-Encoding") != "" || len(r.TransferEncoding) > 0 && r.Header.Get("Content-Length") != "" {
		return Refuse, "the request has both Transfer-Encoding and Content-Length"
	}
	if r.ProtoMajor != 1 {
		return Keep, ""
	}
	switch {
	case r.ProtoMinor == 0:
		// Keep-alive in HTTP/1.0 is an extension, and a Transfer-Encoding
		// it had is gone.
		return Close, "HTTP/1.0"
	case len(r.TransferEncoding) > 0:
		// Perhaps it also had a Content-Length, deleted by net/http.
		return Close, "the body is chunked"
	case r.ContentLength > 0:
		// Perhaps its Content-Length was folded or repeated.
		return Close, "the request has a body"
	}
	return Keep, ""
}

// digits reports whether s is 1*DIGIT (RFC 9110 §8.6).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Framing applies [Check] to every request before next: a refused request
// is answered 400 with RFC 9457 problem details; Connection: close is set
// on the answer of every other request that is not kept.
func Framing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, why := Check(r)
		if v == Keep {
			next.ServeHTTP(w, r)
			return
		}
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if v == Refuse {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{
				"type": "about:blank", "title": "Bad Request", "status": http.StatusBadRequest,
				"detail": why + ": its framing is ambiguous (RFC 9112 §6.3)",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}
