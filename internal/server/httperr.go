package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
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

func writeError(w http.ResponseWriter, he *Error) {
	for k, vs := range he.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, he.Code, map[string]string{"error": he.Msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// discardLogger is the logger of a Server without one.
var discardLogger = slog.New(slog.DiscardHandler)
