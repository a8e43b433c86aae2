package server

import (
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/rampartsec/rampart/ratelimit"
)

// loggingWriter remembers the status and size of an answer, for the
// access log.
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush keeps http.Flusher working through the wrapper.
func (w *loggingWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxLoggedPath bounds the path in a log line; the server allows longer
// request lines than anyone reads.
const maxLoggedPath = 256

// logRequest writes the access log line of r.
func (s *Server) logRequest(log *slog.Logger, r *http.Request, w *loggingWriter, d time.Duration) {
	status := w.status
	if status == 0 {
		// Nothing written: net/http answers 200 with an empty body.
		status = http.StatusOK
	}
	log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", cleanText(r.Method, 32)),
		slog.String("path", cleanText(r.URL.Path, maxLoggedPath)),
		slog.Int("status", status),
		// In milliseconds, named so: a bare number of nanoseconds in
		// JSON says nothing of its unit.
		slog.Float64("duration_ms", math.Round(float64(d)/float64(time.Microsecond))/1000),
		slog.Int64("bytes", w.bytes),
		slog.String("remote", ratelimit.ClientAddr(r, s.cfg.TrustedProxies).String()),
	)
}
