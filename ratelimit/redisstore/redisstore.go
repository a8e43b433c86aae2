// Package redisstore is a [ratelimit.Store] shared through Redis, so that
// every instance of a service keeps one limit between them rather than
// one limit each.
//
//	rdb := redis.NewClient(&redis.Options{
//		Addr:          "127.0.0.1:6379",
//		MaxRetries:    -1, // see Failure behaviour
//		DialerRetries: 1,
//		DialTimeout:   100 * time.Millisecond,
//		ReadTimeout:   100 * time.Millisecond,
//	})
//	store := redisstore.New(rdb, redisstore.Options{Prefix: "rampart:rl:gateway"})
//	d, err := store.AllowN(ctx, "swap:key_abc", ratelimit.PerMinute(100, 100), 1)
//
// This is the only package of the module that imports a Redis client.
//
// # The Lua script
//
// Each decision is one round trip: an EVALSHA of a Lua script (sent
// whole once, the first time a Redis server lacks it) that runs the
// generic cell rate algorithm on the key atomically, with
// redis.call('TIME') as its clock.
// Instances whose clocks disagree therefore still agree on every decision,
// and a wall-clock step on one of them changes nothing. The script does
// what [ratelimit.Memory] does, in the same integer nanoseconds: the same
// Allowed, Remaining, RetryAfter and ResetAfter for the same history of
// events (Redis's clock has microsecond resolution), and a denied request
// consumes nothing and writes nothing. Lua numbers are doubles, exact to
// 2^53, too few for nanoseconds since 1970, so the script keeps every time
// as a pair of seconds and nanoseconds; the divisions of the decision are
// done in Go, on the int64 durations the script returns.
//
// Concurrent decisions share round trips: while a few pipelines are in
// flight, the decisions that arrive meanwhile queue and go together in
// the next one, each still its own EVALSHA, atomic and independent. On a
// loaded host the write and the read of a connection cost more than the
// script; sharing them gives 1.6 to 2 times the decisions per second of
// one command per round trip at 64-way concurrency. A lone decision is
// sent at once.
//
// # Key layout
//
// The key is the caller's key, already namespaced by rule and identity
// ("swap:key_abc"), inside a Redis Cluster hash tag, after
// [Options.Prefix]:
//
//	rampart:rl:gateway:{swap:key_abc}
//
// The value is the key's theoretical arrival time in nanoseconds since the
// Unix epoch, and the key expires (PX) when its budget is whole again, so
// idle keys take no room in Redis. In a Redis Cluster the slot of a key
// is the hash of its hash tag, the text between its first '{' and the
// next '}': here the caller's key, so that the slot depends on the rule
// and identity alone and not on the prefix. Keys spread over the slots by
// identity, the same identity and rule land on one slot under every
// policy, and whatever the Store may one day keep beside a key (a second
// limit of the same rule, checked in the same script) can share its slot,
// which a multi-key script requires. The script of today touches only its
// one key and would run in a cluster without the tag. (A caller's key
// holding a '}' has a shorter tag: its slot changes, nothing else.) A key
// longer than 256 bytes is replaced by the hexadecimal SHA-256 of it,
// marked so that it never meets a short key of the same spelling:
//
//	rampart:rl:gateway:h{9f86d081884c7d65…}
//
// so that neither Redis nor the deny cache holds unbounded keys.
//
// # Local deny cache
//
// When Redis denies a key with retry-after R, the Store remembers "denied
// until now+R" for that key, [ratelimit.Limit] and event count, and
// answers the same question locally until then, without Redis: a flood of
// requests from a client over its limit costs one round trip per
// retry-after, not one per request. The answer is what Redis would give if
// nothing else had happened to the key (Allowed false, RetryAfter and
// ResetAfter counted down on the local clock, Remaining from those);
// since a key's theoretical arrival time only moves forward, no instance
// can have admitted anything that would make it wrong, except a Redis
// that lost the key (a restart without persistence, a FLUSHALL), and then
// only until the retry-after. The cache is per Store and only ever
// repeats a denial Redis made: it cannot deny what Redis admits. Its size
// is bounded ([Options.DenyCacheSize]); past the bound, expired entries go
// first, then arbitrary ones, which only sends their next request to
// Redis.
//
// # Failure behaviour
//
// AllowN tries Redis once. An unreachable, slow or failing Redis and an
// expired or cancelled context come back as an error, prefixed
// "redisstore: " and wrapping the cause (errors.Is works on
// [context.DeadlineExceeded]); what to do then, fail open with a local
// limiter or closed with a 503, is the caller's rule (see
// [ratelimit.Limiter]). A call returns by its context's deadline even
// when the Redis it waits for hangs; without a deadline, the client's
// DialTimeout, ReadTimeout and WriteTimeout bound it, so set them to what
// a request can afford. The go-redis client retries by itself: commands
// after some network errors (MaxRetries, 3 by default) and dials
// (DialerRetries, 5). Set MaxRetries to -1 and DialerRetries to 1, as in
// the example above, so that a dead Redis is reported at once rather than
// after the client's backoff, and so that a script whose connection broke
// after it ran is not run twice, which would count its events twice. The
// client reconnects by itself once Redis is back: the Store needs no
// restart. Denials already in the deny cache keep being answered while
// Redis is down; everything else fails.
package redisstore

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/ratelimit"
)

// DefaultPrefix is the key namespace when [Options.Prefix] is empty.
const DefaultPrefix = "rampart:rl"

// MaxKeyLen is the longest key stored as it is; longer keys are replaced
// by their SHA-256.
const MaxKeyLen = 256

//go:embed gcra.lua
var gcraSource string

// gcra is shared by every Store: go-redis computes its SHA-1 once.
var gcra = redis.NewScript(gcraSource)

// Options configures a [Store]. The zero value is ready to use.
type Options struct {
	// Prefix is the key namespace, the policy: "rampart:rl:gateway".
	// Stores with the same prefix share their limits, stores with
	// different prefixes do not. Empty means [DefaultPrefix]. It must not
	// contain '{' or '}', which would take the Redis Cluster hash tag
	// from the keys: [Options.Check] refuses it, and New panics on it.
	Prefix string
	// DenyCacheSize bounds how many keys over their limit are remembered
	// locally, each taking about 100 bytes plus its key (36 MB at worst
	// for the default). 0 means 100,000; a negative value disables the
	// cache, so that every decision goes to Redis, a flood's too.
	DenyCacheSize int
	// Now is the local clock, used only to expire the deny cache:
	// decisions themselves use Redis's clock. Nil means time.Now.
	Now func() time.Time
}

// Store is a [ratelimit.Store] in Redis. It is safe for concurrent use.
type Store struct {
	c      redis.UniversalClient
	prefix string // with the trailing ':'
	deny   *denyCache
	batch  *batcher
}

var _ ratelimit.Store = (*Store)(nil)

// Check reports Options that New refuses: a Prefix with a brace. Check
// options that come from a file or a flag before calling New.
func (o Options) Check() error {
	if strings.ContainsAny(o.Prefix, "{}") {
		return fmt.Errorf("redisstore: prefix %q contains a brace, which would become the Redis Cluster hash tag of every key", o.Prefix)
	}
	return nil
}

// New returns a Store keeping its keys in c. c may be a client, a
// failover client or a cluster client; see the package documentation
// for the options it should have. It panics on Options that Check
// refuses, as regexp.MustCompile does on a bad pattern: a constant prefix
// is the program's, and one from outside must be checked first. A Store
// starts nothing and needs no Close; c is the caller's to close.
func New(c redis.UniversalClient, o Options) *Store {
	if err := o.Check(); err != nil {
		panic(err.Error())
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{c: c, prefix: prefix + ":", batch: &batcher{c: c}}
	size := o.DenyCacheSize
	if size == 0 {
		size = 100_000
	}
	if size > 0 {
		now := o.Now
		if now == nil {
			now = time.Now
		}
		s.deny = newDenyCache(size, now)
	}
	return s
}

// errNegative is returned for a negative event count, which would give
// back budget.
var errNegative = errors.New("redisstore: negative event count")

// AllowN admits or denies n events for key under l, with one round trip
// to Redis unless key is in the deny cache. Denied events consume
// nothing. It returns an error, without retrying, when Redis cannot
// answer; see the package documentation.
func (s *Store) AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error) {
	if err := l.Validate(); err != nil {
		return ratelimit.Decision{}, fmt.Errorf("redisstore: %w", err)
	}
	if n < 0 {
		return ratelimit.Decision{}, fmt.Errorf("%w %d", errNegative, n)
	}
	ck := cacheKey{key: key}
	if len(key) > MaxKeyLen {
		sum := sha256.Sum256([]byte(key))
		ck = cacheKey{key: hex.EncodeToString(sum[:]), hashed: true}
	}
	if s.deny != nil {
		if d, ok := s.deny.get(ck, l, n); ok {
			return d, nil
		}
	}

	interval := int64(l.Period / time.Duration(l.Rate))
	inc := interval * int64(n)
	tol := interval * int64(l.Burst)
	res, err := s.batch.do(&call{
		ctx:  ctx,
		key:  s.redisKey(ck),
		args: [4]any{inc / 1e9, inc % 1e9, tol / 1e9, tol % 1e9},
	})
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("redisstore: %w", err)
	}
	if !(len(res) == 3 && res[0] == 1) && !(len(res) == 5 && res[0] == 0) {
		return ratelimit.Decision{}, fmt.Errorf("redisstore: unexpected script reply %v", res)
	}
	// rel is TAT-now: after the events when allowed, unchanged when
	// denied. The rest is decide's arithmetic.
	rel := res[1]*1e9 + res[2]
	d := ratelimit.Decision{
		Allowed:    res[0] == 1,
		Remaining:  int((tol - rel) / interval),
		ResetAfter: time.Duration(rel),
		Limit:      l,
	}
	if !d.Allowed {
		d.RetryAfter = time.Duration(res[3]*1e9 + res[4])
		if s.deny != nil {
			s.deny.put(ck, l, n, d.RetryAfter, d.ResetAfter)
		}
	}
	return d, nil
}

// redisKey is the name of k in Redis; see the package documentation.
func (s *Store) redisKey(k cacheKey) string {
	if k.hashed {
		return s.prefix + "h{" + k.key + "}"
	}
	return s.prefix + "{" + k.key + "}"
}
