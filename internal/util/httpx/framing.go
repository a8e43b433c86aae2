package httpx

import "net/http"

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
			WriteProblem(w, Problem{Status: http.StatusBadRequest, Detail: why + ": its framing is ambiguous (RFC 9112 §6.3)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
