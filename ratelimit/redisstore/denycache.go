package redisstore

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/rampartsec/rampart/ratelimit"
)

// cacheKey is a caller's key, or the SHA-256 of a long one: the two never
// compare equal, as their names in Redis never do.
type cacheKey struct {
	key    string
	hashed bool
}

// denial is a denial Redis made, valid until its retry-after.
type denial struct {
	l ratelimit.Limit
	n int
	// until is when the events would be admitted, reset when the key's
	// budget would be whole, both on the cache's clock.
	until, reset int64
}

// denyCache remembers keys Redis denied, for their retry-after. It is
// sharded by a hash of the key so that a flood on many keys from many
// goroutines does not queue on one lock.
type denyCache struct {
	now      func() time.Time
	epoch    time.Time
	seed     maphash.Seed
	perShard int
	shards   []denyShard
}

type denyShard struct {
	mu sync.Mutex
	m  map[cacheKey]denial
	_  [48]byte // keeps shards on separate cache lines
}

func newDenyCache(size int, now func() time.Time) *denyCache {
	n := 64
	if size < n {
		n = 1
	}
	c := &denyCache{
		now:      now,
		epoch:    now(),
		seed:     maphash.MakeSeed(),
		perShard: size / n,
		shards:   make([]denyShard, n),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]denial)
	}
	return c
}

// clock is the time in nanoseconds since the cache was made, on the
// monotonic clock when Now is time.Now.
func (c *denyCache) clock() int64 { return int64(c.now().Sub(c.epoch)) }

func (c *denyCache) shard(k cacheKey) *denyShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, k.key)%uint64(len(c.shards))]
}

// get answers for k, l and n if Redis denied exactly that question less
// than its retry-after ago.
func (c *denyCache) get(k cacheKey, l ratelimit.Limit, n int) (ratelimit.Decision, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	if !ok {
		s.mu.Unlock()
		return ratelimit.Decision{}, false
	}
	now := c.clock()
	if now >= e.until {
		delete(s.m, k)
		s.mu.Unlock()
		return ratelimit.Decision{}, false
	}
	s.mu.Unlock()
	if e.l != l || e.n != n {
		return ratelimit.Decision{}, false
	}
	// What the script would answer if nothing had happened to the key
	// since: its theoretical arrival time is reset, and decide's
	// arithmetic follows.
	interval := int64(l.Period / time.Duration(l.Rate))
	rel := max(e.reset-now, 0)
	return ratelimit.Decision{
		Remaining:  int((interval*int64(l.Burst) - rel) / interval),
		RetryAfter: time.Duration(e.until - now),
		ResetAfter: time.Duration(rel),
		Limit:      l,
	}, true
}

// put remembers that Redis denied n events for k under l, for retry.
func (c *denyCache) put(k cacheKey, l ratelimit.Limit, n int, retry, reset time.Duration) {
	now := c.clock()
	e := denial{l: l, n: n, until: now + int64(retry), reset: now + int64(reset)}
	s := c.shard(k)
	s.mu.Lock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		s.makeRoom(now, c.perShard)
	}
	s.m[k] = e
	s.mu.Unlock()
}

// makeRoom drops expired entries, then, if the shard is still full,
// arbitrary ones (Go's map iteration order), an eighth of the shard at
// least so that the next insertions find room. Dropping an entry only
// sends its key's next request to Redis.
func (s *denyShard) makeRoom(now int64, limit int) {
	for k, e := range s.m {
		if now >= e.until {
			delete(s.m, k)
		}
	}
	excess := len(s.m) - limit + max(1, limit/8)
	for k := range s.m {
		if excess <= 0 {
			break
		}
		delete(s.m, k)
		excess--
	}
}

// len returns the number of entries, for tests.
func (c *denyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
