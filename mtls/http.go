package mtls

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

type peerKey struct{}

// PeerID returns the SPIFFE ID of the client whose request [Authorize] let
// through; ok is false for a context that did not go through Authorize.
func PeerID(ctx context.Context) (id spiffeid.ID, ok bool) {
	id, ok = ctx.Value(peerKey{}).(spiffeid.ID)
	return id, ok
}

// Authorize returns middleware that lets a request through only if it came
// over TLS with a client certificate that verifies, as an X509-SVID for
// client authentication at the time of the request, against the bundle
// bundles holds for its SPIFFE ID's own trust domain (the rule of
// [ServerConfig]), and whose ID is one of ids; it puts that ID in the
// request's context ([PeerID]). Anything else gets 403 with a JSON body
// {"error": "forbidden", "error_description": "..."}.
//
// Authorize verifies r.TLS.PeerCertificates itself, so it does not depend
// on how the server checked them: behind [ServerConfig], or a server that
// only asks for a certificate (tls.RequestClientCert; crypto/tls still
// checks that the client holds its key), or one whose pool holds every
// partner's roots, the rule is the same. The verification of a
// connection's chain is remembered for the requests that follow on it; the
// chain's validity and its root's place in today's bundle are checked
// again on each.
//
// Authorize panics if bundles is nil or without ids: a middleware that
// refuses everyone is a mistake, and one that accepts everyone would be a
// worse one.
func Authorize(bundles x509bundle.Source, ids ...spiffeid.ID) func(http.Handler) http.Handler {
	return authorize(bundles, time.Now, ids...)
}

func authorize(bundles x509bundle.Source, now func() time.Time, ids ...spiffeid.ID) func(http.Handler) http.Handler {
	if bundles == nil {
		panic("mtls: Authorize needs a bundle source")
	}
	if len(ids) == 0 {
		panic("mtls: Authorize needs at least one SPIFFE ID")
	}
	allowed := slices.Clone(ids)
	cache := &chainCache{m: make(map[[sha256.Size]byte]verified)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				writeError(w, http.StatusForbidden, "forbidden", "a client certificate is required")
				return
			}
			id, err := cache.verify(r.TLS.PeerCertificates, bundles, now())
			if err == nil && !slices.Contains(allowed, id) {
				err = &IDMismatchError{Got: id, Want: allowed}
			}
			if err != nil {
				var desc string
				var mismatch *IDMismatchError
				switch {
				case errors.As(err, &mismatch):
					desc = fmt.Sprintf("SPIFFE ID %s may not call this endpoint", id)
				case !id.IsZero() && id.Path() != "":
					desc = fmt.Sprintf("the client certificate for %s does not verify against the roots of its trust domain, or has expired", id)
				default:
					desc = "the client certificate carries no workload SPIFFE ID"
				}
				writeError(w, http.StatusForbidden, "forbidden", desc)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, id)))
		})
	}
}

// maxCachedChains bounds a chainCache; when full, it starts again empty.
const maxCachedChains = 4096

// chainCache remembers client chains that verified, so that each request
// on a connection does not verify its signatures again (a few hundred
// microseconds). It is keyed by the certificates' content, never by
// pointers, and what it remembers is checked against the present on every
// use: the time, within every certificate of the chain, and the chain's
// root, still in the bundle of the ID's trust domain.
type chainCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verified
}

type verified struct {
	id     spiffeid.ID
	chains [][]*x509.Certificate
}

func (c *chainCache) verify(certs []*x509.Certificate, bundles x509bundle.Source, now time.Time) (spiffeid.ID, error) {
	h := sha256.New()
	for _, cert := range certs {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(cert.Raw))))
		h.Write(cert.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok && stillValid(v, bundles, now) {
		return v.id, nil
	}
	id, chains, err := verifySVID(certs, bundles, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return id, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedChains {
		clear(c.m)
	}
	c.m[key] = verified{id: id, chains: chains}
	c.mu.Unlock()
	return id, nil
}

// stillValid reports whether one of v's chains is valid at now and ends at
// a root of the bundle of v's trust domain.
func stillValid(v verified, bundles x509bundle.Source, now time.Time) bool {
	b, err := bundles.GetX509BundleForTrustDomain(v.id.TrustDomain())
	if err != nil || b == nil || b.TrustDomain() != v.id.TrustDomain() {
		return false
	}
	for _, chain := range v.chains {
		if !b.HasX509Authority(chain[len(chain)-1]) {
			continue
		}
		if !slices.ContainsFunc(chain, func(c *x509.Certificate) bool {
			return now.Before(c.NotBefore) || now.After(c.NotAfter)
		}) {
			return true
		}
	}
	return false
}

// writeError writes a JSON error {"error": kind, "error_description":
// desc}, as the other Rampart middleware does.
func writeError(w http.ResponseWriter, code int, kind, desc string) {
	httpx.WriteOAuthError(w, httpx.OAuthError{Status: code, Code: kind, Description: desc})
}
