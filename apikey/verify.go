package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/rampartsec/rampart/auth"
)

// Principal is the authenticated caller.
//
// Deprecated: Use [auth.Principal], the same type.
type Principal = auth.Principal

// FromContext returns the caller that Middleware authenticated, or nil.
//
// Deprecated: Use [auth.FromContext].
func FromContext(ctx context.Context) *Principal { return auth.FromContext(ctx) }

// Errors of Verify, the Reasons of its [*RefusedError]s, besides
// ErrInvalid and ErrChecksum for malformed keys.
var (
	ErrUnknown        = errors.New("apikey: " + unknownKey)
	ErrRevoked        = errors.New("apikey: " + keyRevoked)
	ErrExpired        = errors.New("apikey: " + keyExpired)
	ErrRotated        = errors.New("apikey: " + keyRotated)
	ErrClientDisabled = errors.New("apikey: " + clientDisabled)
)

// What the client is told of each.
const (
	unknownKey     = "unknown key"
	keyRevoked     = "key revoked"
	keyExpired     = "key expired"
	keyRotated     = "key rotated out; its grace period is over"
	clientDisabled = "client disabled"
)

// RefusedError is a key that [Parse] or [Verifier.Verify] refuses: the
// key's fault (malformed, unknown, revoked, expired, rotated out, its
// client disabled), as against a store that failed, which is any other
// error. Every error of Parse, and of Verify about the key, is one.
type RefusedError struct {
	// Reason is why: ErrInvalid, ErrChecksum, ErrUnknown, ErrRevoked,
	// ErrExpired, ErrRotated or ErrClientDisabled. errors.Is sees it.
	Reason error
	// Description says why for the client ("key revoked", "not an API
	// key: 12 characters, want 57"): what Error says, without the
	// package's prefix. It never holds the key.
	Description string
}

func (e *RefusedError) Error() string { return "apikey: " + e.Description }

// Unwrap returns Reason.
func (e *RefusedError) Unwrap() error { return e.Reason }

func keyRefused(reason error, desc string) *RefusedError {
	return &RefusedError{Reason: reason, Description: desc}
}

func keyRefusedf(reason error, format string, args ...any) *RefusedError {
	return keyRefused(reason, fmt.Sprintf(format, args...))
}

// Verified is a key that Verify accepted.
type Verified struct {
	Principal *auth.Principal
	// Record is the stored key (Hash included, never the key).
	Record Record
	// Deprecated is set for a key that has been rotated and works only
	// until Sunset; RotatedAt is when it was replaced.
	Deprecated bool
	RotatedAt  time.Time
	Sunset     time.Time
}

// Verifier checks API keys against a key store. The zero value is not
// usable: Store is required ([Verifier.Check]). Set the fields before
// first use; they must not change afterwards.
//
// A Verifier starts nothing and needs no Start: the last-used times of
// the keys it accepts are written to the store in one batch, at most
// TouchInterval after the first of them, by a goroutine that ends once the
// batch is written. [Verifier.Close] writes what is still pending and
// waits for a write in progress; a Verifier that is idle holds no
// goroutine.
type Verifier struct {
	// Store is where keys are looked up: any [Store] is a Lookup.
	// Required: with nil, Verify returns Check's error.
	Store Lookup
	// Pepper is the HMAC key of the stored hashes (see Hash). Every
	// instance and the CLI must use the same one. Nil means no pepper:
	// plain SHA-256 hashes, which a stolen database lets anyone test
	// guesses against; use one.
	Pepper []byte
	// CacheTTL is how long a key found in the store is trusted without
	// asking again; 0 means 30 s. Revocations are seen sooner, through
	// RevocationCheck.
	CacheTTL time.Duration
	// RevocationCheck is how often the store's Generation is read: when it
	// has moved (a key revoked or rotated, a client disabled, on any
	// instance), the cache is dropped. 0 means 100 ms; negative, every
	// request.
	RevocationCheck time.Duration
	// CacheSize bounds the cached keys; 0 means 10,000, negative turns
	// the cache off.
	CacheSize int
	// TouchInterval is how long last-used times are collected before
	// they are written to the store, in one batch; 0 means 1 minute.
	TouchInterval time.Duration
	// Logger receives store errors; nil means slog.Default(). Keys are
	// never logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once sync.Once
	mu   sync.Mutex
	// cache maps HMACs to what the store said; nil rec: not found.
	cache   map[[sha256.Size]byte]cacheEntry
	misses  map[[sha256.Size]byte]cacheEntry // keys the store does not have
	epoch   uint64                           // counts cache drops
	gen     int64
	genRead time.Time
	genMu   sync.Mutex // one store read of the generation at a time
	touched map[string]time.Time
	flush   *time.Timer    // the write of touched, scheduled; nil: none
	flushes sync.WaitGroup // scheduled writes that have not ended
	closed  bool
	dummy   []byte
	hashers sync.Pool // of hash.Hash: HMACs keyed with Pepper, reset between uses
}

// hash is Hash(k, v.Pepper) appended to dst, without re-keying an HMAC
// each time.
func (v *Verifier) hash(k Key, dst []byte) []byte {
	if v.Pepper == nil {
		return append(dst, Hash(k, nil)...)
	}
	h, _ := v.hashers.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, v.Pepper)
	}
	h.Reset()
	io.WriteString(h, k.s)
	dst = h.Sum(dst)
	v.hashers.Put(h)
	return dst
}

type cacheEntry struct {
	rec     *Record
	rotated time.Time
	loaded  time.Time
}

func (v *Verifier) init() {
	v.once.Do(func() {
		v.cache = make(map[[sha256.Size]byte]cacheEntry)
		v.misses = make(map[[sha256.Size]byte]cacheEntry)
		v.touched = make(map[string]time.Time)
		v.dummy = make([]byte, sha256.Size)
		v.gen = -1
	})
}

// errNoStore is Check's error for a Verifier without a Store.
var errNoStore = errors.New("apikey: Verifier.Store is nil")

// Check reports a Verifier that cannot verify any key: one without a
// Store. It has no side effects.
func (v *Verifier) Check() error {
	if v == nil || v.Store == nil {
		return errNoStore
	}
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Verify checks the key s. Malformed keys are refused before any lookup
// (ErrInvalid, ErrChecksum); a well-formed key costs the same work whether
// it exists or not: its HMAC, one lookup (or cache hit), one constant-time
// comparison. A key refused is a [*RefusedError]; any other error is the
// store's.
func (v *Verifier) Verify(ctx context.Context, s string) (*Verified, error) {
	k, err := Parse(s)
	if err != nil {
		return nil, err
	}
	if v.Store == nil {
		return nil, errNoStore
	}
	v.init()
	now := v.now()
	if err := v.checkGeneration(ctx, now); err != nil {
		return nil, err
	}
	var id [sha256.Size]byte
	h := v.hash(k, id[:0])

	v.mu.Lock()
	e, ok := v.cache[id]
	if !ok {
		e, ok = v.misses[id]
	}
	epoch := v.epoch
	v.mu.Unlock()
	ttl := durationOr(v.CacheTTL, 30*time.Second)
	if !ok || now.Sub(e.loaded) >= ttl || now.Before(e.loaded) {
		e, err = v.load(ctx, h, now)
		if err != nil {
			return nil, err
		}
		v.remember(id, e, epoch)
	}
	stored := v.dummy
	if e.rec != nil {
		stored = e.rec.Hash
	}
	// The lookup was by hash, so equality is known; comparing anyway, in
	// constant time, keeps the work the same for every outcome.
	if subtle.ConstantTimeCompare(stored, h) != 1 || e.rec == nil {
		return nil, keyRefused(ErrUnknown, unknownKey)
	}
	r := e.rec
	switch {
	case !r.RevokedAt.IsZero():
		return nil, keyRefused(ErrRevoked, keyRevoked)
	case r.ClientDisabled:
		return nil, keyRefused(ErrClientDisabled, clientDisabled)
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
		return nil, keyRefused(ErrExpired, keyExpired)
	case r.ReplacedBy != "" && !now.Before(r.GraceUntil):
		return nil, keyRefused(ErrRotated, keyRotated)
	}
	v.touch(r.ID, now)
	// Scopes are shared with the cache: principals are read, never
	// changed.
	out := &Verified{Record: *r, Principal: &auth.Principal{
		Subject: r.ClientID, ClientID: r.ClientID, Scopes: r.Scopes,
		Method: auth.APIKey, KeyID: r.ID, Expires: r.ExpiresAt,
	}}
	if r.ReplacedBy != "" {
		out.Deprecated, out.Sunset, out.RotatedAt = true, r.GraceUntil, e.rotated
		out.Principal.Sunset, out.Principal.Deprecation = r.GraceUntil, e.rotated
		if out.Principal.Expires.IsZero() || r.GraceUntil.Before(out.Principal.Expires) {
			out.Principal.Expires = r.GraceUntil
		}
	}
	return out, nil
}

// remember caches what the store said about a key, unless the cache was
// dropped since the lookup began (epoch): a lookup that started before a
// revocation must not put the key back once the revocation is known.
// Unknown keys go to a cache of their own, so that a flood of made-up
// keys cannot push the real ones out.
func (v *Verifier) remember(id [sha256.Size]byte, e cacheEntry, epoch uint64) {
	limit := v.CacheSize
	if limit == 0 {
		limit = 10000
	}
	if limit < 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.epoch != epoch {
		return
	}
	m := v.cache
	if e.rec == nil {
		m = v.misses
	}
	if len(m) >= limit {
		clear(m) // simpler than LRU; a refill costs one lookup per key
	}
	m[id] = e
}

// load asks the store for the key of hash h.
func (v *Verifier) load(ctx context.Context, h []byte, now time.Time) (cacheEntry, error) {
	rec, err := v.Store.KeyByHash(ctx, h)
	switch {
	case errors.Is(err, ErrNotFound):
		return cacheEntry{loaded: now}, nil
	case err != nil:
		return cacheEntry{}, fmt.Errorf("apikey: looking up a key: %w", err)
	}
	e := cacheEntry{rec: rec, loaded: now}
	if rec.ReplacedBy != "" {
		// The Deprecation header says when the key was replaced: when its
		// replacement was made.
		if next, err := v.Store.Key(ctx, rec.ReplacedBy); err == nil {
			e.rotated = next.CreatedAt
		}
	}
	return e, nil
}

// checkGeneration drops the cache when the store says something was
// revoked, rotated or disabled since it was filled.
func (v *Verifier) checkGeneration(ctx context.Context, now time.Time) error {
	every := durationOr(v.RevocationCheck, 100*time.Millisecond)
	v.mu.Lock()
	fresh := every > 0 && v.gen >= 0 && now.Sub(v.genRead) < every && !now.Before(v.genRead)
	v.mu.Unlock()
	if fresh {
		return nil
	}
	v.genMu.Lock()
	defer v.genMu.Unlock()
	v.mu.Lock()
	fresh = every > 0 && v.gen >= 0 && now.Sub(v.genRead) < every && !now.Before(v.genRead)
	v.mu.Unlock()
	if fresh {
		return nil // another request read it meanwhile
	}
	g, err := v.Store.Generation(ctx)
	if err != nil {
		// Fail closed: without knowing what was revoked, cached keys
		// cannot be trusted.
		return fmt.Errorf("apikey: reading the revocation generation: %w", err)
	}
	v.mu.Lock()
	if g != v.gen {
		v.dropLocked()
		v.gen = g
	}
	v.genRead = now
	v.mu.Unlock()
	return nil
}

// Forget drops every cached key, for a process that just revoked or
// rotated one itself.
func (v *Verifier) Forget() {
	v.init()
	v.mu.Lock()
	v.dropLocked()
	v.gen = -1
	v.mu.Unlock()
}

func (v *Verifier) dropLocked() {
	clear(v.cache)
	clear(v.misses)
	v.epoch++
}

// touch records that key id was used at at, and schedules the write of
// the batch if none is scheduled: the write runs on the timer's
// goroutine, which ends with it.
func (v *Verifier) touch(id string, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if at.After(v.touched[id]) {
		v.touched[id] = at
	}
	if v.flush == nil && !v.closed {
		v.flushes.Add(1)
		v.flush = time.AfterFunc(durationOr(v.TouchInterval, time.Minute), v.scheduledFlush)
	}
}

// scheduledFlush is the write a touch scheduled. Uses after it has begun
// schedule the next.
func (v *Verifier) scheduledFlush() {
	defer v.flushes.Done()
	v.mu.Lock()
	v.flush = nil
	v.mu.Unlock()
	v.flushTouched(context.Background())
}

// flushTouched writes the last-used times collected since the last flush.
func (v *Verifier) flushTouched(ctx context.Context) {
	v.mu.Lock()
	batch := v.touched
	v.touched = make(map[string]time.Time)
	v.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := v.Store.TouchKeys(ctx, batch); err != nil {
		v.logger().Warn("apikey: recording last use failed", "keys", len(batch), "err", err)
	}
}

// Close writes the pending last-used times, after waiting for a write in
// progress; once it returns the Verifier runs nothing. Keys verified
// after Close are still checked, but their use is not recorded. Close may
// be called twice.
func (v *Verifier) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	t := v.flush
	v.flush = nil
	v.mu.Unlock()
	if t != nil && t.Stop() {
		v.flushes.Done() // it will not run
	}
	v.flushes.Wait()
	v.flushTouched(context.Background())
	return nil
}
