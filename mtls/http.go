package mtls

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type peerKey struct{}

// PeerID returns the SPIFFE ID of the client whose request [Authorize] let
// through; ok is false for a context that did not go through Authorize.
func PeerID(ctx context.Context) (id spiffeid.ID, ok bool) {
	id, ok = ctx.Value(peerKey{}).(spiffeid.ID)
	return id, ok
}

// Authorize returns middleware that lets a request through only if it came
// over TLS with a verified client certificate (r.TLS.VerifiedChains, so
// the server must verify client certificates: [ServerConfig] does) whose
// SPIFFE ID is one of ids, vouched for by a root of its own trust domain
// (as [ServerConfig] checks), and puts that ID in the request's context
// ([PeerID]). Anything else gets 403 with a JSON body
// {"error": "forbidden", "error_description": "..."}.
//
// Authorize panics without ids: a middleware that refuses everyone is a
// mistake, and one that accepts everyone would be a worse one.
func Authorize(ids ...spiffeid.ID) func(http.Handler) http.Handler {
	if len(ids) == 0 {
		panic("mtls: Authorize needs at least one SPIFFE ID")
	}
	allowed := slices.Clone(ids)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				writeError(w, http.StatusForbidden, "forbidden", "a verified client certificate is required")
				return
			}
			id, err := checkPeer(r.TLS.VerifiedChains, allowed)
			if err != nil {
				desc := "the client certificate carries no workload SPIFFE ID"
				if !id.IsZero() {
					desc = fmt.Sprintf("SPIFFE ID %s may not call this endpoint", id)
				}
				writeError(w, http.StatusForbidden, "forbidden", desc)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, id)))
		})
	}
}

// writeError writes a JSON error as the other Rampart middleware does.
func writeError(w http.ResponseWriter, code int, kind, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": kind, "error_description": desc})
}
