// Package dedup remembers recently seen keys for a fixed time, in bounded
// memory, so that a repeated event (the same pin failure on every
// connection) is logged or reported once per window instead of every time.
package dedup

import (
	"sync"
	"time"
)

// Window remembers keys for TTL. It holds at most Max keys; past that the
// oldest are forgotten early. The zero Window remembers for 24 hours and
// holds 4096 keys. A Window is safe for concurrent use.
type Window struct {
	TTL time.Duration // 0 means 24 hours
	Max int           // 0 means 4096

	mu    sync.Mutex
	seen  map[string]time.Time // key -> when it was recorded
	order []entry              // recording order, oldest first; may hold stale entries
	head  int                  // index of the oldest live slot in order
}

type entry struct {
	key string
	at  time.Time
}

// First reports whether key was not recorded within the window ending at
// now, and records it if so: the caller acts (logs, reports) only when
// First returns true.
func (w *Window) First(key string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ttl, max := w.limits()
	if at, ok := w.seen[key]; ok && now.Sub(at) < ttl {
		return false
	}
	if w.seen == nil {
		w.seen = make(map[string]time.Time)
	}
	w.seen[key] = now
	w.order = append(w.order, entry{key, now})
	w.evict(now, ttl, max)
	return true
}

// Forget removes key, so that its next occurrence counts as the first (used
// when acting on it failed and should be retried).
func (w *Window) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.seen, key)
}

// Len returns the number of keys held.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func (w *Window) limits() (time.Duration, int) {
	ttl, max := w.TTL, w.Max
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if max <= 0 {
		max = 4096
	}
	return ttl, max
}

// evict drops expired keys and, beyond max, the oldest ones. Entries in
// order whose key was re-recorded later (or forgotten) are stale and only
// advance head.
func (w *Window) evict(now time.Time, ttl time.Duration, max int) {
	for w.head < len(w.order) {
		e := w.order[w.head]
		at, live := w.seen[e.key]
		stale := !live || !at.Equal(e.at)
		if !stale && now.Sub(e.at) < ttl && len(w.seen) <= max {
			break
		}
		if !stale {
			delete(w.seen, e.key)
		}
		w.order[w.head] = entry{}
		w.head++
	}
	// Forgotten and re-recorded keys leave stale entries behind a live
	// oldest one; drop them when they outnumber the live keys.
	if len(w.order)-w.head > 2*max {
		live := w.order[:0]
		for _, e := range w.order[w.head:] {
			if at, ok := w.seen[e.key]; ok && at.Equal(e.at) {
				live = append(live, e)
			}
		}
		clear(w.order[len(live):])
		w.order = live
		w.head = 0
	}
	// Compact when the dead prefix dominates, keeping appends amortized O(1).
	if w.head > 64 && w.head*2 > len(w.order) {
		n := copy(w.order, w.order[w.head:])
		clear(w.order[n:])
		w.order = w.order[:n]
		w.head = 0
	}
}
