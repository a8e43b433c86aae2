package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// Kind says where a rule applies.
type Kind string

const (
	// Edge rules apply to HTTP requests, in Middleware, keyed by request
	// attributes (By).
	Edge Kind = "edge"
	// Business rules apply to operations the application names, through
	// Limiter.Allow(ctx, rule, identity): "100 swaps a minute per key".
	Business Kind = "business"
)

// FailureMode says what a rule does when the shared store fails.
type FailureMode string

const (
	// FailOpen falls back to a limiter local to this instance (each
	// instance then admits up to the whole limit) and counts the fallback:
	// the edge keeps serving. The default for edge rules.
	FailOpen FailureMode = "open"
	// FailClosed refuses (ErrUnavailable; 503 in Middleware): a business
	// rule such as a withdrawal limit is not lifted by an outage. The
	// default for business rules.
	FailClosed FailureMode = "closed"
)

// By names a part of an edge rule's key.
type By string

const (
	// ByAddr is the client address (ClientAddr: trusted proxies,
	// X-Forwarded-For from the right), an IPv6 client by its /64.
	ByAddr By = "addr"
	// ByCredential is the credential the request presents (an API key in
	// X-API-Key or a bearer token), hashed: it limits a stolen credential
	// before authentication, wherever it is used from.
	ByCredential By = "credential"
	// ByClient is the authenticated client (after apikey or token
	// middleware); a rule keyed by it does not apply to requests without
	// one.
	ByClient By = "client"
	// ByRoute is the route pattern the request matches among the rule's
	// Routes.
	ByRoute By = "route"
)

// Rule is a named limit, its key and its failure mode.
type Rule struct {
	// Name names the rule in keys, headers, metrics and errors:
	// lowercase letters, digits, '.', '_' and '-'.
	Name string
	// Limit is the rule's rate and burst; the zero Limit admits nothing
	// and is refused ([Limit.Validate]).
	Limit Limit
	// Kind is Edge or Business; "" means Edge when By or Routes is set,
	// else Business.
	Kind Kind
	// By lists the parts of an edge rule's key, all of them; nil means
	// ByAddr.
	By []By
	// Routes, for an edge rule, are http.ServeMux patterns
	// ("POST /v1/swaps", "/oauth2/"); the rule applies only to requests
	// matching one. Empty: every request.
	Routes []string
	// Failure is FailOpen or FailClosed; "" means FailOpen for edge
	// rules and FailClosed for business rules.
	Failure FailureMode
	// Shadow rules decide and count but never refuse: to see what a new
	// limit would do before enforcing it.
	Shadow bool
}

var ruleName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// check validates r and fills in its defaults.
func (r *Rule) check() error {
	if !ruleName.MatchString(r.Name) {
		return fmt.Errorf("ratelimit: rule %q: want a name of 1 to 64 of a-z 0-9 . _ -", r.Name)
	}
	if err := r.Limit.Validate(); err != nil {
		return fmt.Errorf("ratelimit: rule %s: %w", r.Name, err)
	}
	if r.Kind == "" {
		r.Kind = Business
		if len(r.By) > 0 || len(r.Routes) > 0 {
			r.Kind = Edge
		}
	}
	switch r.Kind {
	case Edge:
		if len(r.By) == 0 {
			r.By = []By{ByAddr}
		}
		for _, b := range r.By {
			switch b {
			case ByAddr, ByCredential, ByClient, ByRoute:
			default:
				return fmt.Errorf("ratelimit: rule %s: by %q: want addr, credential, client or route", r.Name, b)
			}
		}
		if r.Failure == "" {
			r.Failure = FailOpen
		}
	case Business:
		if len(r.By) > 0 || len(r.Routes) > 0 {
			return fmt.Errorf("ratelimit: rule %s: a business rule is keyed by the identity given to Allow, not by request attributes", r.Name)
		}
		if r.Failure == "" {
			r.Failure = FailClosed
		}
	default:
		return fmt.Errorf("ratelimit: rule %s: kind %q: want edge or business", r.Name, r.Kind)
	}
	if r.Failure != FailOpen && r.Failure != FailClosed {
		return fmt.Errorf("ratelimit: rule %s: failure %q: want open or closed", r.Name, r.Failure)
	}
	return nil
}

// Errors of Allow.
var (
	// ErrUnknownRule is returned for a rule the Limiter does not have.
	ErrUnknownRule = errors.New("ratelimit: unknown rule")
	// ErrUnavailable is what a FailClosed rule's error is when the store
	// cannot be reached ([UnavailableError], errors.Is): the operation
	// must not go ahead.
	ErrUnavailable = errors.New("ratelimit: rate-limit store unavailable")
)

// UnavailableError is the error of a FailClosed rule whose store cannot
// be reached. errors.Is(err, ErrUnavailable) reports it; errors.As finds
// the rule.
type UnavailableError struct {
	// Rule is the rule that could not decide.
	Rule string
	// Err is the store's error.
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (rule %s): %v", ErrUnavailable, e.Rule, e.Err)
}

// Is reports whether target is ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the store's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Limiter applies rules. Set the fields, then call Init (or let the first
// use do it); do not change them afterwards. [Limiter.Check] reports
// rules that cannot work without changing anything. A Limiter starts
// nothing and needs no Close.
type Limiter struct {
	// Store keeps the limits; nil means a Memory (this instance only).
	Store Store
	// Fallback decides for FailOpen rules while Store is failing; nil
	// means a Memory.
	Fallback *Memory
	// Rules are the rules, each named once. Nil: none, and every Allow
	// is ErrUnknownRule.
	Rules []Rule
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// for ByAddr. Empty: none, the client is the connection's peer.
	TrustedProxies []netip.Prefix
	// RetryStore is how long, after a store error, the store is left
	// alone before it is tried again; 0 means 1 s. Recovery is
	// automatic: the first call after it tries the store.
	RetryStore time.Duration
	// Metrics, if set, counts decisions, store errors and fallbacks per
	// rule.
	Metrics *Metrics
	// Logger receives store failures and recoveries; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock of the store circuit; nil means time.Now.
	Now func() time.Time

	once    sync.Once
	initErr error
	rules   map[string]*compiledRule
	edge    []*compiledRule
	down    atomic.Int64 // the store is not tried before this time (Unix ns); 0: up
}

// Check reports rules that cannot work (a bad name, limit, kind, key or
// route pattern, a name given twice), as Init does, but changes nothing.
func (l *Limiter) Check() error {
	_, _, err := compileRules(l.Rules)
	return err
}

// Init checks the rules and fills in the nil stores. Allow and Middleware
// call it too.
func (l *Limiter) Init() error {
	l.once.Do(func() {
		if l.Store == nil {
			l.Store = &Memory{Now: l.Now}
		}
		if l.Fallback == nil {
			l.Fallback = &Memory{Now: l.Now}
		}
		l.rules, l.edge, l.initErr = compileRules(l.Rules)
	})
	return l.initErr
}

// compileRules checks rules and compiles them, by name and the edge ones
// in order.
func compileRules(rules []Rule) (map[string]*compiledRule, []*compiledRule, error) {
	byName := make(map[string]*compiledRule)
	var edge []*compiledRule
	for i := range rules {
		r := rules[i]
		if err := r.check(); err != nil {
			return nil, nil, err
		}
		if _, dup := byName[r.Name]; dup {
			return nil, nil, fmt.Errorf("ratelimit: rule %s: named twice", r.Name)
		}
		cr, err := compile(r)
		if err != nil {
			return nil, nil, err
		}
		byName[r.Name] = cr
		if r.Kind == Edge {
			edge = append(edge, cr)
		}
	}
	return byName, edge, nil
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Limiter) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

// Allow decides one operation of a business rule for identity (an API
// key ID, a client, an account): limiter.Allow(ctx, "swap", keyID). A
// denial is a Decision with Allowed false, not an error; the error is
// ErrUnknownRule, or an [*UnavailableError] (ErrUnavailable) when a
// FailClosed rule's store fails.
func (l *Limiter) Allow(ctx context.Context, rule, identity string) (Decision, error) {
	return l.AllowN(ctx, rule, identity, 1)
}

// AllowN is Allow for n operations at once.
func (l *Limiter) AllowN(ctx context.Context, rule, identity string, n int) (Decision, error) {
	if err := l.Init(); err != nil {
		return Decision{}, err
	}
	r := l.rules[rule]
	if r == nil {
		return Decision{}, fmt.Errorf("%w %q", ErrUnknownRule, rule)
	}
	return l.decide(ctx, r, identity, n)
}

// decide runs rule r for key identity, with the failure mode and shadow
// mode around the store.
func (l *Limiter) decide(ctx context.Context, r *compiledRule, identity string, n int) (Decision, error) {
	key := r.Name + ":" + identity
	var d Decision
	var err error
	if until := l.down.Load(); until == 0 || l.now().UnixNano() >= until {
		d, err = l.Store.AllowN(ctx, key, r.Limit, n)
		if err == nil && until != 0 && l.down.CompareAndSwap(until, 0) {
			l.logger().Info("ratelimit: the store answers again")
		}
		if err != nil && ctx.Err() == nil {
			if l.down.Swap(l.now().Add(durationOr(l.RetryStore, time.Second)).UnixNano()) == 0 {
				l.logger().Warn("ratelimit: the store failed; open rules fall back to this instance, closed rules refuse", "err", err)
			}
			l.Metrics.storeError(r.Name)
		}
	} else {
		err = errStoreDown
	}
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, ctx.Err()
		}
		if r.Failure == FailClosed {
			return Decision{Limit: r.Limit, Rule: r.Name}, &UnavailableError{Rule: r.Name, Err: err}
		}
		l.Metrics.fallback(r.Name)
		d, err = l.Fallback.AllowN(ctx, key, r.Limit, n)
		if err != nil {
			return Decision{}, err
		}
	}
	d.Rule = r.Name
	switch {
	case d.Allowed:
		l.Metrics.decision(r.Name, "allowed")
	case r.Shadow:
		l.Metrics.decision(r.Name, "shadow_denied")
		d.Allowed, d.Shadowed = true, true
	default:
		l.Metrics.decision(r.Name, "denied")
	}
	return d, nil
}

var errStoreDown = errors.New("the store failed moments ago")

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
