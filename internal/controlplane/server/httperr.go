package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Error is an error with what the client may see. Msg goes to the client;
// Err, which may hold details that must not leak, goes to the log.
// Handlers return it; [handle] turns it into a response.
type Error struct {
	Code int
	Msg  string
	Err  error
	// Header is added to the response (Retry-After, WWW-Authenticate).
	Header http.Header
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func httpError(code int, msg string) *Error { return &Error{Code: code, Msg: msg} }

// handlerFunc is a handler that returns an error instead of writing one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts h to http.Handler. An *Error is sent as JSON
// {"error": Msg} with its code; a body too large for its
// http.MaxBytesReader is 413; anything else is logged and sent as a bare
// 500, so no internal detail reaches the client.
func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *Error
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &he):
		case errors.As(err, &mbe):
			he = &Error{Code: http.StatusRequestEntityTooLarge, Msg: "request body too large", Err: err}
		default:
			he = &Error{Code: http.StatusInternalServerError, Msg: "internal error", Err: err}
		}
		if he.Code >= 500 {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", err)
		} else if he.Err != nil {
			s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err)
		}
		writeError(w, he)
	})
}

// writeError sends he as the control plane's documented refusal,
// {"error": Msg}: the error object of OAuth (RFC 6749 §5.2), which every
// Rampart refusal of a credential has too, with the message as its
// error.
func writeError(w http.ResponseWriter, he *Error) {
	httpx.WriteOAuthError(w, httpx.OAuthError{Status: he.Code, Code: he.Msg, Header: he.Header})
}

// writeJSON sends v as JSON with status code. It encodes v before writing
// anything: an encoding error is returned, for [Server.handle] to answer
// 500 and log, instead of a status line already sent with a truncated
// body behind it. Handlers end with "return writeJSON(...)".
func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("server: encoding the answer: %w", err)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
	return nil
}

// discardLogger is the logger of a Server without one.
var discardLogger = slog.New(slog.DiscardHandler)
