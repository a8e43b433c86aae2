package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin/bundle"
)

// bundleName is the syntax of bundle names; anything else is a 404
// without a database query.
var bundleName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// maxBundleSize bounds a published bundle.
const maxBundleSize = 1 << 20

// bundleCache serves bundles from memory. Entries live for ttl, after
// which the database is asked again, so that a bundle published through
// another instance is served within ttl.
type bundleCache struct {
	st  store.BundleStore
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]*cachedBundle
}

type cachedBundle struct {
	found   bool
	version int64
	body    []byte
	etag    string
	loaded  time.Time
}

// maxCachedNames bounds the cache; past it, misses are not cached.
const maxCachedNames = 1024

func newBundleCache(st store.BundleStore, ttl time.Duration, now func() time.Time) *bundleCache {
	return &bundleCache{st: st, ttl: ttl, now: now, m: make(map[string]*cachedBundle)}
}

func (c *bundleCache) get(r *http.Request, name string) (*cachedBundle, error) {
	now := c.now()
	c.mu.Lock()
	e := c.m[name]
	c.mu.Unlock()
	if e != nil && now.Sub(e.loaded) < c.ttl {
		return e, nil
	}
	b, err := c.st.Latest(r.Context(), name)
	e = &cachedBundle{loaded: now}
	switch {
	case err == nil:
		sum := sha256.Sum256([]byte(b.JWS))
		e.found, e.version, e.body = true, b.Version, []byte(b.JWS)
		e.etag = fmt.Sprintf(`"%d-%s"`, b.Version, hex.EncodeToString(sum[:8]))
	case errors.Is(err, store.ErrNotFound):
	default:
		return nil, err
	}
	c.mu.Lock()
	if e.found || len(c.m) < maxCachedNames {
		c.m[name] = e
	}
	c.mu.Unlock()
	return e, nil
}

func (c *bundleCache) forget(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.mu.Unlock()
}

// getBundle serves the latest bundle of a name, with an ETag so that
// clients and CDNs revalidate cheaply.
func (s *Server) getBundle(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !bundleName.MatchString(name) {
		s.metrics.bundleRequests.WithLabelValues("404").Inc()
		return httpError(http.StatusNotFound, "no such bundle")
	}
	e, err := s.bundles.get(r, name)
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the client hung up; nothing to answer, nothing wrong
		}
		return err
	}
	if !e.found {
		s.metrics.bundleRequests.WithLabelValues("404").Inc()
		return httpError(http.StatusNotFound, "no such bundle")
	}
	h := w.Header()
	h.Set("ETag", e.etag)
	h.Set("Cache-Control", s.live.Load().BundleCacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatch(r.Header.Get("If-None-Match"), e.etag) {
		s.metrics.bundleRequests.WithLabelValues("304").Inc()
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/jose")
	h.Set("Content-Length", strconv.Itoa(len(e.body)))
	s.metrics.bundleRequests.WithLabelValues("200").Inc()
	if r.Method != http.MethodHead {
		w.Write(e.body)
	}
	return nil
}

// etagMatch implements If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// publishedBundle describes a published bundle in the admin API.
func publishedBundle(b store.Bundle) api.PublishedBundle {
	return api.PublishedBundle{
		Bundle:      api.Bundle{Name: b.Name, Version: b.Version, KeyID: b.KeyID, IssuedAt: api.NewTime(b.IssuedAt), ExpiresAt: api.NewTime(b.ExpiresAt)},
		PublishedAt: api.NewTime(b.PublishedAt),
	}
}

// publishBundle verifies a signed bundle with the configured keys and
// publishes it if its version is newer than the latest.
func (s *Server) publishBundle(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query(), nil); err != nil {
		return err
	}
	keys := s.live.Load().BundleKeys
	if keys == nil {
		return httpError(http.StatusForbidden, "this server has no bundle keys configured, so it accepts no bundle; start it with --bundle-key PUBLIC.pem")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBundleSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return httpError(http.StatusRequestEntityTooLarge, "bundle larger than 1 MiB")
		}
		return &Error{Code: http.StatusBadRequest, Msg: "could not read the body", Err: err}
	}
	now := s.now()
	b, err := bundle.Verify(strings.TrimSpace(string(body)), keys, now)
	if err != nil {
		// Verification errors describe the bundle the client sent, never
		// server state: safe to return.
		return &Error{Code: http.StatusBadRequest, Msg: "bundle refused: " + err.Error(), Err: err}
	}
	sb := store.Bundle{
		Name: b.Name, Version: b.Version, KeyID: b.KeyID,
		IssuedAt: b.IssuedAt, ExpiresAt: b.ExpiresAt, PublishedAt: now, JWS: b.JWS,
	}
	if err := s.st.Bundles().Publish(r.Context(), sb); err != nil {
		if errors.Is(err, store.ErrStaleVersion) {
			msg := fmt.Sprintf("bundle %s version %d is not newer than the latest published", b.Name, b.Version)
			if latest, lerr := s.st.Bundles().Latest(r.Context(), b.Name); lerr == nil {
				msg += fmt.Sprintf(" (version %d); sign it with --version %d or higher", latest.Version, latest.Version+1)
			}
			return httpError(http.StatusConflict, msg)
		}
		return err
	}
	s.bundles.forget(b.Name)
	s.log.Info("bundle published", "bundle", b.Name, "version", b.Version, "kid", b.KeyID)
	return writeJSON(w, http.StatusCreated, publishedBundle(sb))
}

func (s *Server) listBundles(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query(), []string{"name"}); err != nil {
		return err
	}
	name := r.URL.Query().Get("name")
	if name != "" && !bundleName.MatchString(name) {
		return httpError(http.StatusBadRequest, "name: not a bundle name")
	}
	bs, err := s.st.Bundles().List(r.Context(), name, 100)
	if err != nil {
		return err
	}
	out := api.Bundles{Bundles: make([]api.PublishedBundle, len(bs))}
	for i, b := range bs {
		out.Bundles[i] = publishedBundle(b)
	}
	return writeJSON(w, http.StatusOK, out)
}
