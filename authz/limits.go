package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampartsec/rampart/ratelimit"
)

// Limits is a global rate limit service: the descriptors of
// envoyproxy/ratelimit's configuration, decided with GCRA in a
// ratelimit.Store (memory, or Redis shared by every instance). Build it
// with NewLimits; it is safe for concurrent use.
type Limits struct {
	domains map[string]*node
	lim     *ratelimit.Limiter
	opts    LimitsOptions
	// overrides are the limiters of the limits requests bring with them
	// (RateLimitDescriptor.limit), by limit.
	mu        sync.Mutex
	overrides map[overrideKey]*ratelimit.Limiter
	denials   denials
}

// denials remembers the keys a limit refused, until the time the refusal
// said to retry. GCRA refuses without consuming, and nothing but time
// makes a key's state earlier (other instances sharing the store only
// make it later), so a remembered refusal is what the store would
// answer: a key over its limit costs no round trip until then.
type denials struct {
	shards [16]struct {
		sync.Mutex
		m map[string]denial
	}
}

type denial struct {
	until, reset int64 // Unix ns: when n hits fit again; when the quota is whole
	n            int   // the hits refused; fewer may fit sooner
	remaining    int
}

// maxDenials bounds each shard; a full shard is emptied (the keys are
// then asked of the store again).
const maxDenials = 1 << 14

func (d *denials) shard(key string) *struct {
	sync.Mutex
	m map[string]denial
} {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &d.shards[h%uint32(len(d.shards))]
}

// get returns the remembered refusal of n hits on key at now, if any.
func (d *denials) get(key string, n int, now int64) (denial, bool) {
	s := d.shard(key)
	s.Lock()
	defer s.Unlock()
	v, ok := s.m[key]
	if !ok || now >= v.until || n < v.n {
		return denial{}, false
	}
	return v, true
}

func (d *denials) put(key string, v denial) {
	s := d.shard(key)
	s.Lock()
	defer s.Unlock()
	if s.m == nil || len(s.m) >= maxDenials {
		s.m = make(map[string]denial)
	}
	s.m[key] = v
}

// LimitsOptions are what Limits run with.
type LimitsOptions struct {
	// Store keeps the counts; nil means memory, this instance only.
	Store ratelimit.Store
	// Failure is what a store outage does: ratelimit.FailOpen (the
	// default) decides in this instance's memory meanwhile;
	// ratelimit.FailClosed answers ErrUnavailable, which the gRPC
	// service sends as UNAVAILABLE (Envoy then applies its
	// failure_mode_deny).
	Failure ratelimit.FailureMode
	// Metrics, if set, counts decisions per rule.
	Metrics *ratelimit.Metrics
	// Logger receives store failures; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type node struct {
	children  map[string]*node // by key_value, or key alone
	wildcards []string         // the children's keys ending in '*', in file order
	limit     *leaf
	share     string // the wildcard pattern, with share_threshold
}

// leaf is a limit of the file.
type leaf struct {
	RateLimit
	rule       string // the ratelimit.Rule's name
	shadow     bool
	quota      bool
	zero       bool // RequestsPerUnit 0: nothing is admitted
	gcra       ratelimit.Limit
	unitPeriod time.Duration
}

type overrideKey struct {
	rpu  uint32
	unit Unit
}

// maxOverrides bounds how many distinct limits requests may bring.
const maxOverrides = 1024

// NewLimits builds the service of configs (one per domain; a domain
// twice is refused, as envoyproxy/ratelimit refuses it).
func NewLimits(o LimitsOptions, configs ...*LimitConfig) (*Limits, error) {
	if o.Failure == "" {
		o.Failure = ratelimit.FailOpen
	}
	if o.Failure != ratelimit.FailOpen && o.Failure != ratelimit.FailClosed {
		return nil, fmt.Errorf("%w: failure %q: want open or closed", ErrLimitConfig, o.Failure)
	}
	l := &Limits{domains: map[string]*node{}, opts: o, overrides: map[overrideKey]*ratelimit.Limiter{}}
	var rules []ratelimit.Rule
	for _, c := range configs {
		if _, dup := l.domains[c.Domain]; dup {
			return nil, fmt.Errorf("%w: duplicate domain '%s' in config file", ErrLimitConfig, c.Domain)
		}
		root := &node{}
		build(root, c.Domain+".", c.Descriptors, &rules, o.Failure)
		l.domains[c.Domain] = root
	}
	l.lim = l.limiter(rules)
	if err := l.lim.Init(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLimitConfig, err)
	}
	return l, nil
}

func (l *Limits) limiter(rules []ratelimit.Rule) *ratelimit.Limiter {
	return &ratelimit.Limiter{Store: l.opts.Store, Rules: rules, Metrics: l.opts.Metrics, Logger: l.opts.Logger, Now: l.opts.Now}
}

// build makes the tree of ds under n, and a rule per limit.
func build(n *node, path string, ds []Descriptor, rules *[]ratelimit.Rule, failure ratelimit.FailureMode) {
	n.children = map[string]*node{}
	for _, d := range ds {
		final := d.Key
		if d.Value != "" {
			final += "_" + d.Value
		}
		c := &node{}
		if d.ShareThreshold {
			c.share = strings.TrimPrefix(final, d.Key+"_")
		}
		if rl := d.RateLimit; rl != nil {
			lf := &leaf{RateLimit: *rl, rule: ruleName(path + final), shadow: d.ShadowMode, quota: d.QuotaMode}
			if !rl.Unlimited {
				lf.unitPeriod = rl.Unit.Duration()
				lf.zero = rl.RequestsPerUnit == 0
				if !lf.zero {
					lf.gcra = gcraLimit(rl.RequestsPerUnit, lf.unitPeriod)
					*rules = append(*rules, ratelimit.Rule{Name: lf.rule, Limit: lf.gcra, Kind: ratelimit.Business, Failure: failure})
				}
			}
			c.limit = lf
		}
		if strings.HasSuffix(final, "*") {
			n.wildcards = append(n.wildcards, final)
		}
		build(c, path+final+".", d.Descriptors, rules, failure)
		n.children[final] = c
	}
}

// gcraLimit is the GCRA limit of rpu requests per unit: see gcraBurst.
func gcraLimit(rpu uint32, unit time.Duration) ratelimit.Limit {
	return ratelimit.Limit{Rate: gcraBurst(rpu), Period: unit, Burst: gcraBurst(rpu)}
}

// Entry is one key and value of a request's descriptor.
type Entry struct{ Key, Value string }

// LimitRequest is one descriptor of a request (Envoy's
// RateLimitDescriptor).
type LimitRequest struct {
	Entries []Entry
	// Hits is how many requests this one counts as; 0 means 1.
	Hits uint64
	// Override, if set, is the limit the engine sends with the
	// descriptor, which applies instead of the file's.
	Override *RateLimit
}

// Code is a descriptor's or a request's outcome.
type Code int

// Codes, as Envoy's RateLimitResponse.Code.
const (
	Unknown Code = iota
	OK
	OverLimit
)

// LimitStatus is the outcome of one descriptor.
type LimitStatus struct {
	Code Code
	// Limit is the limit that applied; nil for none (no limit matched,
	// unlimited, replaced).
	Limit *RateLimit
	// Remaining is how many more requests would be admitted now.
	Remaining uint32
	// UntilReset is, when refused, how long until the request would be
	// admitted; when admitted, how long until the whole quota is back.
	UntilReset time.Duration
	// Rule is the limit's name in the RateLimit fields: its name in the
	// file, or the rule Rampart made of it.
	Rule string
	// Unlimited says an unlimited limit matched.
	Unlimited bool
	// gcra is the limit as enforced, for the RateLimit fields.
	gcra ratelimit.Limit
}

// Errors of ShouldRateLimit.
var (
	// ErrUnknownDomain is the error for a domain no file configures.
	// envoyproxy/ratelimit answers OK for it; Rampart refuses, since a
	// domain nobody configured is a mistake of the engine's
	// configuration that would otherwise limit nothing, silently.
	ErrUnknownDomain = errors.New("authz: unknown rate limit domain")
	// ErrBadLimitRequest is the error for a request that cannot be
	// decided: no domain or no descriptors, an empty key, too many or too
	// long entries, negative hits, an unusable override.
	ErrBadLimitRequest = errors.New("authz: malformed rate limit request")
)

// Bounds of a request: Envoy's descriptors are a few short entries.
const (
	maxDescriptors = 64
	maxEntries     = 32
	maxEntryBytes  = 4 << 10
	maxHits        = 1 << 20
)

// ShouldRateLimit decides the descriptors of a request to domain, each
// counting hits (0 means 1) unless it carries its own: the statuses in
// the order of ds, and the overall code (OverLimit if any descriptor is,
// but shadow and quota limits). A limit named in another matching
// limit's Replaces does not apply. The error is ErrUnknownDomain,
// ErrBadLimitRequest, ratelimit.ErrUnavailable (a FailClosed store
// outage) or the context's.
func (l *Limits) ShouldRateLimit(ctx context.Context, domain string, ds []LimitRequest, hits uint64) (Code, []LimitStatus, error) {
	if err := checkLimitRequest(domain, ds, hits); err != nil {
		return Unknown, nil, err
	}
	root := l.domains[domain]
	if root == nil {
		return Unknown, nil, fmt.Errorf("%w %q", ErrUnknownDomain, domain)
	}
	leaves := make([]*leaf, len(ds))
	idents := make([]string, len(ds))
	replaced := map[string]bool{}
	for i, d := range ds {
		if d.Override != nil {
			lf, err := l.override(d.Override)
			if err != nil {
				return Unknown, nil, err
			}
			leaves[i], idents[i] = lf, countKey(d.Entries, nil)
			continue
		}
		leaves[i], idents[i] = lookup(root, d.Entries)
		if leaves[i] != nil {
			for _, r := range leaves[i].Replaces {
				replaced[r] = true
			}
		}
	}
	overall := OK
	statuses := make([]LimitStatus, len(ds))
	for i, lf := range leaves {
		if lf == nil || (lf.Name != "" && replaced[lf.Name]) {
			statuses[i] = LimitStatus{Code: OK, Remaining: ^uint32(0)}
			continue
		}
		if lf.Unlimited {
			statuses[i] = LimitStatus{Code: OK, Remaining: ^uint32(0), Unlimited: true}
			continue
		}
		n := ds[i].Hits
		if n == 0 {
			n = max(hits, 1)
		}
		st, err := l.decide(ctx, lf, idents[i], int(n))
		if err != nil {
			return Unknown, nil, err
		}
		statuses[i] = st
		if st.Code == OverLimit {
			overall = OverLimit
		}
	}
	return overall, statuses, nil
}

// decide runs one limit for one key.
func (l *Limits) decide(ctx context.Context, lf *leaf, ident string, n int) (LimitStatus, error) {
	rl := lf.RateLimit
	st := LimitStatus{Code: OK, Limit: &rl, Rule: lf.Name, gcra: lf.gcra}
	if st.Rule == "" {
		st.Rule = lf.rule
	}
	if lf.zero {
		st.Code, st.UntilReset = OverLimit, lf.unitPeriod
	} else {
		lim, name := l.lim, lf.rule
		if name == "" { // an override
			var err error
			if lim, err = l.overrideLimiter(rl); err != nil {
				return st, err
			}
			name = overrideRule(rl)
			st.Rule = name
		}
		now := l.now()
		key := name + ":" + ident
		if v, ok := l.denials.get(key, n, now.UnixNano()); ok {
			st.Code, st.UntilReset = OverLimit, time.Duration(v.until-now.UnixNano())
			st.Remaining = uint32(min(max(v.remaining, 0), int(^uint32(0)>>1)))
		} else {
			d, err := lim.AllowN(ctx, name, ident, n)
			if err != nil {
				return st, err
			}
			st.Remaining = uint32(min(max(d.Remaining, 0), int(^uint32(0)>>1)))
			st.UntilReset = d.ResetAfter
			if !d.Allowed || d.Shadowed {
				st.Code, st.UntilReset = OverLimit, d.RetryAfter
				l.denials.put(key, denial{until: now.Add(d.RetryAfter).UnixNano(), reset: now.Add(d.ResetAfter).UnixNano(), n: n, remaining: d.Remaining})
			}
		}
	}
	if st.Code == OverLimit && (lf.shadow || lf.quota) {
		st.Code = OK
	}
	return st, nil
}

// lookup walks the tree as envoyproxy/ratelimit does: each entry matches
// key_value, else a wildcard value the entry's starts with, else the key
// alone; the limit is that of the node the last entry reaches. It returns
// the limit (nil for none) and the key the request is counted under.
func lookup(root *node, entries []Entry) (*leaf, string) {
	n := root
	var share []string
	var found *leaf
	for i, e := range entries {
		final := e.Key + "_" + e.Value
		next := n.children[final]
		if next == nil {
			for _, w := range n.wildcards {
				if strings.HasPrefix(final, strings.TrimSuffix(w, "*")) {
					next = n.children[w]
					if next.share != "" {
						if share == nil {
							share = make([]string, len(entries))
						}
						share[i] = next.share
					}
					break
				}
			}
		}
		if next == nil {
			next = n.children[e.Key]
		}
		if next == nil {
			return nil, ""
		}
		if i == len(entries)-1 {
			found = next.limit
		}
		if len(next.children) == 0 {
			break
		}
		n = next
	}
	if found == nil {
		return nil, ""
	}
	return found, countKey(entries, share)
}

// countKey is the key a descriptor is counted under: its entries,
// escaped so that no two descriptors share one; an entry matched by a
// share_threshold wildcard counts under the pattern.
func countKey(entries []Entry, share []string) string {
	var b strings.Builder
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(e.Key))
		b.WriteByte('=')
		if share != nil && share[i] != "" {
			b.WriteString(url.QueryEscape(share[i]))
			continue
		}
		b.WriteString(url.QueryEscape(e.Value))
	}
	return b.String()
}

func checkLimitRequest(domain string, ds []LimitRequest, hits uint64) error {
	switch {
	case domain == "":
		return fmt.Errorf("%w: rate limit domain must not be empty", ErrBadLimitRequest)
	case len(ds) == 0:
		return fmt.Errorf("%w: rate limit descriptor list must not be empty", ErrBadLimitRequest)
	case len(ds) > maxDescriptors:
		return fmt.Errorf("%w: %d descriptors, at most %d", ErrBadLimitRequest, len(ds), maxDescriptors)
	case hits > maxHits:
		return fmt.Errorf("%w: hits_addend %d, at most %d", ErrBadLimitRequest, hits, maxHits)
	}
	for i, d := range ds {
		if len(d.Entries) == 0 || len(d.Entries) > maxEntries {
			return fmt.Errorf("%w: descriptor %d has %d entries, want 1 to %d", ErrBadLimitRequest, i, len(d.Entries), maxEntries)
		}
		if d.Hits > maxHits {
			return fmt.Errorf("%w: descriptor %d: hits_addend %d, at most %d", ErrBadLimitRequest, i, d.Hits, maxHits)
		}
		size := 0
		for _, e := range d.Entries {
			if e.Key == "" {
				return fmt.Errorf("%w: descriptor %d has an entry with an empty key", ErrBadLimitRequest, i)
			}
			size += len(e.Key) + len(e.Value)
		}
		if size > maxEntryBytes {
			return fmt.Errorf("%w: descriptor %d is %d bytes, at most %d", ErrBadLimitRequest, i, size, maxEntryBytes)
		}
	}
	return nil
}

func (l *Limits) now() time.Time {
	if l.opts.Now != nil {
		return l.opts.Now()
	}
	return time.Now()
}

// override is the leaf of a limit the engine sent.
func (l *Limits) override(rl *RateLimit) (*leaf, error) {
	p := rl.Unit.Duration()
	if p == 0 {
		return nil, fmt.Errorf("%w: limit override: unit %q", ErrBadLimitRequest, rl.Unit)
	}
	lf := &leaf{RateLimit: RateLimit{RequestsPerUnit: rl.RequestsPerUnit, Unit: Unit(strings.ToLower(string(rl.Unit)))}, unitPeriod: p}
	lf.zero = rl.RequestsPerUnit == 0
	if !lf.zero {
		lf.gcra = gcraLimit(rl.RequestsPerUnit, p)
	}
	return lf, nil
}

func overrideRule(rl RateLimit) string {
	return "rls.override." + strconv.FormatUint(uint64(rl.RequestsPerUnit), 10) + "." + string(rl.Unit)
}

// overrideLimiter is the limiter of an override's limit, made on first
// use.
func (l *Limits) overrideLimiter(rl RateLimit) (*ratelimit.Limiter, error) {
	k := overrideKey{rl.RequestsPerUnit, rl.Unit}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim := l.overrides[k]; lim != nil {
		return lim, nil
	}
	if len(l.overrides) >= maxOverrides {
		return nil, fmt.Errorf("%w: more than %d distinct limit overrides", ErrBadLimitRequest, maxOverrides)
	}
	lim := l.limiter([]ratelimit.Rule{{Name: overrideRule(rl), Limit: gcraLimit(rl.RequestsPerUnit, rl.Unit.Duration()),
		Kind: ratelimit.Business, Failure: l.opts.Failure}})
	if err := lim.Init(); err != nil {
		return nil, fmt.Errorf("%w: limit override: %v", ErrBadLimitRequest, err)
	}
	l.overrides[k] = lim
	return lim, nil
}

// Headers returns the IETF RateLimit fields of statuses (every limit
// that applied, in order), and Retry-After when one refused: the
// headers Envoy adds to its answer.
func Headers(statuses []LimitStatus) [][2]string {
	var policy, state []string
	var retry time.Duration
	for _, s := range statuses {
		if s.Limit == nil {
			continue
		}
		q, w := int64(s.Limit.RequestsPerUnit), secondsUp(s.Limit.Unit.Duration())
		policy = append(policy, fmt.Sprintf("%q;q=%d;w=%d", s.Rule, q, w))
		state = append(state, fmt.Sprintf("%q;r=%d;t=%d", s.Rule, s.Remaining, secondsUp(s.UntilReset)))
		if s.Code == OverLimit {
			retry = max(retry, s.UntilReset)
		}
	}
	if len(policy) == 0 {
		return nil
	}
	h := [][2]string{{"RateLimit-Policy", strings.Join(policy, ", ")}, {"RateLimit", strings.Join(state, ", ")}}
	if retry > 0 {
		h = append(h, [2]string{"Retry-After", strconv.FormatInt(max(secondsUp(retry), 1), 10)})
	}
	return h
}

func secondsUp(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
