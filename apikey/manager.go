package apikey

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Manager makes, rotates and revokes keys. Store is required; every other
// zero value is documented with its field. A Manager starts nothing and
// needs no Close.
type Manager struct {
	// Store keeps the clients and keys. Required.
	Store Store
	// Pepper is the HMAC key of stored hashes: the Verifier's. Nil means
	// plain SHA-256 (see [Hash]), as the Verifier's nil does.
	Pepper []byte
	// Env is the environment of new keys; "" means Live.
	Env Env
	// Scopes, if set, is the catalogue of scopes clients may hold. Nil:
	// any well-formed scope.
	Scopes []string
	// MaxAge is the rotation policy: keys older are due (Due); 0 means
	// 90 days.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limits of the management API.
const (
	// MaxGrace bounds a rotation's grace period.
	MaxGrace = 30 * 24 * time.Hour
	// MaxTokenLifetime bounds a client's access-token lifetime.
	MaxTokenLifetime = 24 * time.Hour
	// MinSelfRotationGrace is the least grace a key that rotates itself
	// may ask for (less only when the server's own grace is less): a
	// thief who rotates a stolen key must not end its owner's at once.
	MinSelfRotationGrace = time.Hour
	// MaxKeysInGrace bounds the keys of a client in their grace period
	// that self-rotation may leave: each is a working credential.
	MaxKeysInGrace = 10
)

var (
	clientID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// scopeToken is RFC 6749 §3.3's scope-token.
	scopeToken = regexp.MustCompile(`^[\x{21}\x{23}-\x{5B}\x{5D}-\x{7E}]+$`)
)

// ErrRefused is wrapped by the errors of a Manager that refuses what it
// was asked (a malformed client ID, a scope outside the catalogue, a
// grace too long...), as against a store that failed: the caller can fix
// the request.
var ErrRefused = errors.New("apikey: request refused")

// refusedError is an error wrapping ErrRefused, with its own message.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return "apikey: " + e.msg }
func (e *refusedError) Unwrap() error { return ErrRefused }

func refusedf(format string, args ...any) error {
	return &refusedError{fmt.Sprintf(format, args...)}
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// CheckScopes reports the first scope that is not a scope-token (RFC 6749
// §3.3) or not in the catalogue.
func (m *Manager) CheckScopes(scopes []string) error {
	for _, s := range scopes {
		if !scopeToken.MatchString(s) {
			return refusedf("scope %q: not a scope token (RFC 6749 §3.3)", s)
		}
		if m.Scopes != nil && !slices.Contains(m.Scopes, s) {
			return refusedf("scope %q is not one of %s", s, strings.Join(m.Scopes, ", "))
		}
	}
	return nil
}

// CreateClient registers a client.
func (m *Manager) CreateClient(ctx context.Context, c Client) (*Client, error) {
	if !clientID.MatchString(c.ID) {
		return nil, refusedf("client ID %q: want 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit", c.ID)
	}
	if len(c.Scopes) == 0 {
		return nil, refusedf("a client needs at least one scope")
	}
	if err := m.CheckScopes(c.Scopes); err != nil {
		return nil, err
	}
	if c.TokenLifetime < 0 || c.TokenLifetime > MaxTokenLifetime {
		return nil, refusedf("token lifetime %v: want up to %v", c.TokenLifetime, MaxTokenLifetime)
	}
	n := 0
	for _, v := range []string{c.CertSubject, c.CertURI, c.CertDNS} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return nil, refusedf("name the client certificate one way: subject, URI or DNS name")
	}
	c.Scopes = slices.Compact(slices.Sorted(slices.Values(c.Scopes)))
	c.CreatedAt = m.now().UTC()
	if err := m.Store.CreateClient(ctx, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Create makes a key for a client, with scopes (all the client's when
// empty) and an expiry (none when zero). The key is returned once; only
// its hash is stored.
func (m *Manager) Create(ctx context.Context, client string, scopes []string, expires time.Time) (Key, *Record, error) {
	c, err := m.Store.Client(ctx, client)
	if err != nil {
		return Key{}, nil, err
	}
	if c.Disabled {
		return Key{}, nil, refusedf("client %s is disabled", client)
	}
	if len(scopes) == 0 {
		scopes = c.Scopes
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return Key{}, nil, refusedf("scope %q is not one of client %s's (%s)", s, client, strings.Join(c.Scopes, " "))
		}
	}
	now := m.now().UTC()
	if !expires.IsZero() && !expires.After(now) {
		return Key{}, nil, refusedf("the expiry is in the past")
	}
	k, rec, err := m.newKey(client, scopes, expires, now)
	if err != nil {
		return Key{}, nil, err
	}
	if err := m.Store.CreateKey(ctx, rec); err != nil {
		return Key{}, nil, err
	}
	return k, rec, nil
}

func (m *Manager) newKey(client string, scopes []string, expires, now time.Time) (Key, *Record, error) {
	env := m.Env
	if env == "" {
		env = Live
	}
	k, err := Generate(env)
	if err != nil {
		return Key{}, nil, err
	}
	id, err := newID()
	if err != nil {
		return Key{}, nil, err
	}
	return k, &Record{
		ID: id, ClientID: client, Hash: Hash(k, m.Pepper), Hint: k.Hint(),
		Scopes: slices.Compact(slices.Sorted(slices.Values(scopes))), CreatedAt: now, ExpiresAt: expires,
	}, nil
}

// newID makes a key ID: "key_" and 16 base62 characters.
func newID() (string, error) {
	b := make([]byte, 16)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(62))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[n.Int64()]
	}
	return "key_" + string(b), nil
}

// Rotate replaces a key with a new one of the same client, scopes and
// lifetime; the old key keeps working for grace. The new key is returned
// once.
func (m *Manager) Rotate(ctx context.Context, id string, grace time.Duration) (Key, *Record, error) {
	if grace < 0 || grace > MaxGrace {
		return Key{}, nil, refusedf("grace %v: want 0 to %v", grace, MaxGrace)
	}
	old, err := m.Store.Key(ctx, id)
	if err != nil {
		return Key{}, nil, err
	}
	switch {
	case !old.RevokedAt.IsZero():
		return Key{}, nil, fmt.Errorf("%w: key %s is revoked", ErrConflict, id)
	case old.ReplacedBy != "":
		return Key{}, nil, fmt.Errorf("%w: key %s was already rotated (to %s)", ErrConflict, id, old.ReplacedBy)
	}
	now := m.now().UTC()
	// The new key keeps the old one's expiry: rotation refreshes the
	// secret, it does not extend its life (or a stolen key could keep
	// itself alive by rotating).
	k, rec, err := m.newKey(old.ClientID, old.Scopes, old.ExpiresAt, now)
	if err != nil {
		return Key{}, nil, err
	}
	if err := m.Store.RotateKey(ctx, id, now.Add(grace), rec); err != nil {
		return Key{}, nil, err
	}
	return k, rec, nil
}

// Revoke ends a key at once, on every instance sharing the store (within
// their Verifier's RevocationCheck).
func (m *Manager) Revoke(ctx context.Context, id string) error {
	return m.Store.RevokeKey(ctx, id, m.now().UTC())
}

// RevokeChain revokes a key and every key it was rotated into: what to
// do when a key was stolen, since its thief may have rotated it. It
// returns the IDs revoked; keys already revoked are passed over.
func (m *Manager) RevokeChain(ctx context.Context, id string) ([]string, error) {
	var done []string
	seen := map[string]bool{}
	for id != "" && !seen[id] {
		seen[id] = true
		k, err := m.Store.Key(ctx, id)
		if err != nil {
			return done, err
		}
		if k.RevokedAt.IsZero() {
			if err := m.Store.RevokeKey(ctx, id, m.now().UTC()); err != nil && !errors.Is(err, ErrConflict) {
				return done, err
			}
			done = append(done, id)
		}
		id = k.ReplacedBy
	}
	return done, nil
}

// Due returns the keys the rotation policy says to rotate: working, not
// yet rotated, and older than MaxAge or expiring within a tenth of it.
func (m *Manager) Due(ctx context.Context) ([]Record, error) {
	keys, err := m.Store.Keys(ctx, "")
	if err != nil {
		return nil, err
	}
	maxAge := m.MaxAge
	if maxAge <= 0 {
		maxAge = 90 * 24 * time.Hour
	}
	now := m.now()
	var due []Record
	for _, k := range keys {
		if !k.RevokedAt.IsZero() || k.ReplacedBy != "" || !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
			continue
		}
		if now.Sub(k.CreatedAt) >= maxAge || !k.ExpiresAt.IsZero() && k.ExpiresAt.Sub(now) < maxAge/10 {
			due = append(due, k)
		}
	}
	return due, nil
}

// RotateHandler lets a client rotate its own key: POST with the current
// key (as for any request) answers the new key, once, and the old one
// enters its grace period. A client's scheduled job can so keep its keys
// fresh without an operator. grace is the grace period given; the body
// may ask for less, down to MinSelfRotationGrace: {"grace": "24h"}.
//
// A key that replaced another cannot rotate itself while that one still
// works, and no client gets more than MaxKeysInGrace keys in their grace
// period this way: someone holding a key cannot grow a chain of working
// keys. Put the handler under a failed-authentication limit (rampart
// serve uses the token endpoint's, authserver.Server.LimitFailedAuth): it
// answers whether a key is valid.
func (m *Manager) RotateHandler(v *Verifier, grace time.Duration) http.Handler {
	minGrace := min(MinSelfRotationGrace, grace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			refuse(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
			return
		}
		ver, err := v.VerifyRequest(r)
		if err != nil {
			auth.WriteError(w, "", err)
			return
		}
		g := grace
		var req struct {
			Grace string `json:"grace"`
		}
		err = json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&req)
		if err != nil && !errors.Is(err, io.EOF) {
			refuse(w, http.StatusBadRequest, "invalid_request", `the body is {"grace": "24h"} or empty`)
			return
		}
		if req.Grace != "" {
			d, err := time.ParseDuration(req.Grace)
			if err != nil || d < minGrace || d > grace {
				refuse(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("grace: want a duration from %v to %v", minGrace, grace))
				return
			}
			g = d
		}
		if msg, err := m.selfRotationRefused(r.Context(), &ver.Record); err != nil {
			auth.WriteError(w, "", refusal(err))
			return
		} else if msg != "" {
			refuse(w, http.StatusConflict, "conflict", msg)
			return
		}
		k, rec, err := m.Rotate(r.Context(), ver.Record.ID, g)
		switch {
		case errors.Is(err, ErrConflict):
			refuse(w, http.StatusConflict, "conflict", "this key was already rotated; use its replacement")
			return
		case err != nil:
			auth.WriteError(w, "", refusal(err))
			return
		}
		v.Forget()
		w.Header().Set("Cache-Control", "no-store")
		until := m.now().UTC().Add(g)
		if e := ver.Record.ExpiresAt; !e.IsZero() && e.Before(until) {
			until = e
		}
		out := map[string]any{"key": k.String(), "id": rec.ID, "hint": rec.Hint, "scopes": rec.Scopes,
			"replaces": ver.Record.ID, "old_key_works_until": until}
		if !rec.ExpiresAt.IsZero() {
			out["expires_at"] = rec.ExpiresAt
		}
		writeJSON(w, http.StatusCreated, out)
	})
}

// selfRotationRefused says why key may not rotate itself now ("" when it
// may): the key it replaced still works, or its client has
// MaxKeysInGrace keys in their grace period.
func (m *Manager) selfRotationRefused(ctx context.Context, key *Record) (string, error) {
	keys, err := m.Store.Keys(ctx, key.ClientID)
	if err != nil {
		return "", err
	}
	now := m.now()
	inGrace := 0
	for _, k := range keys {
		if k.ReplacedBy == "" || !k.RevokedAt.IsZero() || !now.Before(k.GraceUntil) {
			continue
		}
		if k.ReplacedBy == key.ID {
			return fmt.Sprintf("this key replaced %s, which works until %s (its grace period): rotate again after that",
				k.ID, k.GraceUntil.UTC().Format(time.RFC3339)), nil
		}
		inGrace++
	}
	if inGrace >= MaxKeysInGrace {
		return fmt.Sprintf("client %s has %d keys in their grace period: rotate again when one has ended", key.ClientID, inGrace), nil
	}
	return "", nil
}

// refuse answers a refused rotation: {"error": code, "error_description":
// desc}, the shape of the key's own refusals.
func refuse(w http.ResponseWriter, status int, code, desc string) {
	httpx.WriteOAuthError(w, httpx.OAuthError{Status: status, Code: code, Description: desc})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
