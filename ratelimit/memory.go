package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

const shards = 256

// Memory is an in-process [Store]. The zero value is ready to use; set
// the fields before first use.
type Memory struct {
	// MaxKeys bounds the keys kept; 0 means 1,000,000 (about 100 MB at
	// worst). Keys whose budget is full again take no room; when the
	// bound is reached with every key active, the keys whose budget
	// refills soonest are forgotten, which lets them through sooner:
	// memory stays bounded under a flood of distinct keys.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once   sync.Once
	seed   maphash.Seed
	epoch  time.Time
	shards [shards]shard
}

type shard struct {
	mu sync.Mutex
	// tat holds each key's theoretical arrival time, in nanoseconds since
	// the Memory's epoch. Keys are held by a 64-bit keyed hash, not as
	// strings: no key bytes to chase in memory, no key kept alive. Two
	// keys would share a budget only if their hashes collided, which,
	// with a random seed, the odds for a million active keys put at
	// 3 in 100 million.
	tat table
	ops int
	_   [40]byte // keeps shards on separate cache lines
}

func (m *Memory) init() {
	m.once.Do(func() {
		m.seed = maphash.MakeSeed()
		m.epoch = time.Now()
		if m.Now != nil {
			m.epoch = m.Now()
		}
	})
}

// now is the time in nanoseconds since the epoch, on the monotonic clock:
// a wall-clock step (NTP, an operator) changes no decision.
func (m *Memory) now() int64 {
	if m.Now != nil {
		return int64(m.Now().Sub(m.epoch))
	}
	return int64(time.Since(m.epoch))
}

func (m *Memory) shard(key string) (*shard, uint64) {
	m.init()
	h := fixHash(maphash.String(m.seed, key))
	return &m.shards[(h>>56)%shards], h
}

// Allow admits or denies one event for key under l.
func (m *Memory) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	return m.AllowN(ctx, key, l, 1)
}

// AllowN admits or denies n events for key under l. It never fails for a
// valid limit.
func (m *Memory) AllowN(_ context.Context, key string, l Limit, n int) (Decision, error) {
	if err := l.Validate(); err != nil {
		return Decision{}, err
	}
	if n < 0 {
		// A negative cost would give budget back; 0 asks without taking.
		return Decision{}, fmt.Errorf("%w: %d events, want 0 or more", ErrInvalidLimit, n)
	}
	s, h := m.shard(key)
	now := m.now()
	s.mu.Lock()
	tat, known := s.tat.get(h)
	if !known {
		tat = now
	}
	d, tat := decide(l, tat, now, n)
	if d.Allowed {
		if !known {
			s.makeRoom(now, m.maxPerShard())
		}
		s.tat.set(h, tat)
	}
	s.ops++
	if s.ops >= 8192 {
		s.ops = 0
		s.sweep(now)
	}
	s.mu.Unlock()
	return d, nil
}

// Peek returns what Allow would decide for key now, without counting an
// event.
func (m *Memory) Peek(key string, l Limit) (Decision, error) {
	if err := l.Validate(); err != nil {
		return Decision{}, err
	}
	s, h := m.shard(key)
	now := m.now()
	s.mu.Lock()
	tat, known := s.tat.get(h)
	if !known {
		tat = now
	}
	d, _ := decide(l, tat, now, 1)
	s.mu.Unlock()
	return d, nil
}

func (m *Memory) maxPerShard() int {
	if m.MaxKeys > 0 {
		return max(1, m.MaxKeys/shards)
	}
	return 1_000_000 / shards
}

// sweep forgets keys whose budget is full again: forgetting them changes
// no decision.
func (s *shard) sweep(now int64) {
	s.tat.retain(func(_ uint64, tat int64) bool { return tat > now })
}

// makeRoom keeps the shard under its bound before a key is added.
func (s *shard) makeRoom(now int64, limit int) {
	if s.tat.n < limit {
		return
	}
	s.sweep(now)
	if s.tat.n < limit {
		return
	}
	// Every key is active: forget those whose budget refills soonest,
	// the earliest quarter, so the cost falls on the least limited and
	// the next additions find room.
	var cut int64
	var tats []int64
	for _, sl := range s.tat.slots {
		if sl.h != 0 {
			tats = append(tats, sl.tat)
		}
	}
	slices.Sort(tats)
	cut = tats[len(tats)/4]
	s.tat.retain(func(_ uint64, tat int64) bool { return tat > cut })
}

// Len returns the number of keys held, for tests and metrics.
func (m *Memory) Len() int {
	m.init()
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += s.tat.n
		s.mu.Unlock()
	}
	return n
}
