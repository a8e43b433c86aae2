package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

const shards = 64

// Memory is an in-process [Limiter]. The zero value is ready to use; set
// the fields before first use.
type Memory struct {
	// MaxKeys bounds the keys kept; 0 means 1,000,000 (about 100 MB at
	// worst). Keys whose budget is full again take no room; when the
	// bound is reached with every key active, the oldest-looking keys are
	// forgotten, which lets them through sooner: memory stays bounded
	// under a flood of distinct keys.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once   sync.Once
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu  sync.Mutex
	tat map[string]time.Time
	ops int
}

func (m *Memory) init() {
	m.once.Do(func() {
		m.seed = maphash.MakeSeed()
		for i := range m.shards {
			m.shards[i].tat = make(map[string]time.Time)
		}
	})
}

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Allow admits or denies one event for key under l. It never fails for a
// valid limit.
func (m *Memory) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	return m.AllowN(ctx, key, l, 1)
}

// AllowN admits or denies an event of cost n.
func (m *Memory) AllowN(_ context.Context, key string, l Limit, n int) (Decision, error) {
	if err := l.Validate(); err != nil {
		return Decision{}, err
	}
	s := m.shard(key)
	now := m.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, tat := decide(l, s.tat[key], now, n)
	if d.Allowed {
		if _, ok := s.tat[key]; !ok {
			s.makeRoom(now, m.maxPerShard())
		}
		s.tat[key] = tat
	}
	s.ops++
	if s.ops >= 4096 {
		s.ops = 0
		s.sweep(now)
	}
	return d, nil
}

// Peek returns what Allow would decide for key now, without counting an
// event.
func (m *Memory) Peek(key string, l Limit) (Decision, error) {
	if err := l.Validate(); err != nil {
		return Decision{}, err
	}
	s := m.shard(key)
	now := m.now()
	s.mu.Lock()
	d, _ := decide(l, s.tat[key], now, 1)
	s.mu.Unlock()
	return d, nil
}

func (m *Memory) shard(key string) *shard {
	m.init()
	return &m.shards[maphash.String(m.seed, key)%shards]
}

func (m *Memory) maxPerShard() int {
	if m.MaxKeys > 0 {
		return max(1, m.MaxKeys/shards)
	}
	return 1_000_000 / shards
}

// sweep forgets keys whose budget is full again: forgetting them changes
// no decision.
func (s *shard) sweep(now time.Time) {
	for k, tat := range s.tat {
		if !tat.After(now) {
			delete(s.tat, k)
		}
	}
}

// makeRoom keeps the shard under its bound before a key is added.
func (s *shard) makeRoom(now time.Time, limit int) {
	if len(s.tat) < limit {
		return
	}
	s.sweep(now)
	// Every key is active: forget the one whose budget refills soonest
	// among a few (map order is random), so the cost falls on the least
	// limited.
	for len(s.tat) >= limit {
		var victim string
		var soonest time.Time
		i := 0
		for k, tat := range s.tat {
			if i == 0 || tat.Before(soonest) {
				victim, soonest = k, tat
			}
			if i++; i == 8 {
				break
			}
		}
		delete(s.tat, victim)
	}
}

// Len returns the number of keys held, for tests and metrics.
func (m *Memory) Len() int {
	m.init()
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
