// Package ratelimit limits how often a key (a client address, an API key,
// a client and an operation) may act, with the generic cell rate
// algorithm (GCRA): a rate and a burst per key, no fixed windows that
// admit twice the limit across a boundary, and one timestamp of state per
// key.
//
// # Semantics
//
// A [Limit] of Rate events per Period with Burst b admits b events at once
// and then one every Period/Rate. Over any interval of length w a key is
// admitted at most b + w·Rate/Period events. Denied events consume
// nothing: a client that keeps retrying while denied is admitted as soon
// as its budget allows, not later.
//
// # Stores
//
// A [Store] keeps the state: [Memory] in this process (bounded memory,
// idle keys evicted, sharded for low contention, an injectable clock), or
// package redisstore, shared by every instance through Redis.
//
// # Rules
//
// A [Limiter] applies named [Rule]s: edge rules to HTTP requests, keyed by
// client address, credential, client or route ([Limiter.Middleware], with
// the IETF RateLimit-Policy and RateLimit fields and RFC 9457 problem
// details on 429), and business rules to operations
// ([Limiter.Allow](ctx, "swap", apiKeyID)). When the shared store fails, a
// rule either falls back to a local limiter (open, the default for edge
// rules) or refuses (closed, the default for business rules); shadow rules
// only count.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is a rate and a burst. Every field must be positive
// ([Limit.Validate]): the zero Limit admits nothing and is refused where
// a limit is enforced. A configuration field of type Limit says what its
// zero value means there (often a default).
type Limit struct {
	// Rate events are admitted per Period once the burst is spent; at
	// least 1.
	Rate int
	// Period is the time Rate events take; positive.
	Period time.Duration
	// Burst is how many events are admitted at once; at least 1.
	Burst int
}

// PerSecond returns a limit of n events per second with the given burst.
func PerSecond(n, burst int) Limit { return Limit{Rate: n, Period: time.Second, Burst: burst} }

// PerMinute returns a limit of n events per minute with the given burst.
func PerMinute(n, burst int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: burst} }

// ErrInvalidLimit is returned for a limit that admits nothing or cannot
// be computed.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Validate checks that l can be enforced.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1:
		return fmt.Errorf("%w: rate %d, want at least 1", ErrInvalidLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: period %v, want a positive duration", ErrInvalidLimit, l.Period)
	case l.Burst < 1:
		return fmt.Errorf("%w: burst %d, want at least 1", ErrInvalidLimit, l.Burst)
	case l.interval() <= 0:
		return fmt.Errorf("%w: %d per %v is faster than one per nanosecond", ErrInvalidLimit, l.Rate, l.Period)
	}
	return nil
}

// interval is the GCRA emission interval: the time one event costs.
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// String formats l as "100/1m0s burst 100".
func (l Limit) String() string { return fmt.Sprintf("%d/%v burst %d", l.Rate, l.Period, l.Burst) }

// Decision is the outcome of one rate-limit check.
type Decision struct {
	Allowed bool
	// Remaining is how many more events would be admitted right now.
	Remaining int
	// RetryAfter, when denied, is how long until the event would be
	// admitted; 0 when allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its full burst.
	ResetAfter time.Duration
	Limit      Limit
	// Rule names the rule that decided, when a Limiter did.
	Rule string
	// Shadowed is set when a shadow rule would have denied: Allowed is
	// then true all the same.
	Shadowed bool
}

// decide runs GCRA for n events at time now (nanoseconds) on a key whose
// theoretical arrival time is tat (0 for a new key). It returns the
// decision and the new tat (unchanged when denied).
func decide(l Limit, tat, now int64, n int) (Decision, int64) {
	t := int64(l.interval())
	if tat < now {
		tat = now
	}
	tolerance := t * int64(l.Burst)
	newTAT := tat + t*int64(n)
	d := Decision{Limit: l}
	if excess := newTAT - now - tolerance; excess > 0 {
		d.RetryAfter = time.Duration(excess)
		d.ResetAfter = time.Duration(tat - now)
		d.Remaining = int((tolerance - (tat - now)) / t)
		return d, tat
	}
	d.Allowed = true
	d.ResetAfter = time.Duration(newTAT - now)
	d.Remaining = int((tolerance - (newTAT - now)) / t)
	return d, newTAT
}

// Store keeps the GCRA state of keys: Memory in this process, or
// redisstore shared between instances.
type Store interface {
	// AllowN admits or denies n events for key under l. Denied events
	// consume nothing.
	AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error)
}
