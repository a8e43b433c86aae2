package ct

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Errors of logs that misbehave. A monitor reports them and stops
// advancing on the log: it never skips what it cannot verify.
var (
	// ErrCorrupt: the log served a tile, entry or issuer that does not
	// match its signed tree (or its fingerprint). May be a transient fault
	// of a cache in front of the log; retried.
	ErrCorrupt = errors.New("ct: log data does not match its signed tree")
	// ErrInconsistent: a new tree head is not an extension of the one
	// verified before (no valid consistency proof).
	ErrInconsistent = errors.New("ct: tree heads are not consistent")
	// ErrSplitView: the log signed two different tree heads for one size.
	ErrSplitView = errors.New("ct: log signed two different tree heads for one size")
	// ErrRollback: the log's tree head is smaller than one it signed before.
	ErrRollback = errors.New("ct: log's tree head is smaller than one verified before")
)

// IsMisbehaviour reports whether err proves that a log misbehaved (signed
// heads that contradict each other), as opposed to a fault that retrying
// may clear.
func IsMisbehaviour(err error) bool {
	return errors.Is(err, ErrInconsistent) || errors.Is(err, ErrSplitView) || errors.Is(err, ErrRollback)
}

// A Position is how far a monitor has come on one log.
type Position struct {
	// Head is the last tree head verified (zero before the first).
	Head Head
	// Next is the index of the first entry not yet judged.
	Next int64
	// Frontier, for RFC 6962 logs, is the compact Merkle range of the
	// entries before Next (one hash per bit of Next): what verifies the
	// next entries without fetching the old ones again.
	Frontier []tlog.Hash
}

// State keeps each log's position, so that a monitor resumes where it
// stopped. Implementations must be safe for concurrent use.
type State interface {
	Load(ctx context.Context, log [sha256.Size]byte) (Position, bool, error)
	Save(ctx context.Context, log [sha256.Size]byte, p Position) error
}

// A Leaser is a State that monitors share (instances of one control plane
// on one database): a monitor works on a log only while Lease says it
// holds the log, and leaves it to the holder otherwise.
type Leaser interface {
	Lease(ctx context.Context, log [sha256.Size]byte) (bool, error)
}

// MemoryState is a State in memory, for one-off audits and tests.
type MemoryState struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]Position
}

func (s *MemoryState) Load(_ context.Context, log [sha256.Size]byte) (Position, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[log]
	return p, ok, nil
}

func (s *MemoryState) Save(_ context.Context, log [sha256.Size]byte, p Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[sha256.Size]byte]Position{}
	}
	s.m[log] = p
	return nil
}

// A Finding is a logged certificate that concerns the organisation.
type Finding struct {
	Log       *Log
	Index     int64
	Timestamp time.Time
	Precert   bool
	// Certificate is nil when the entry could not be read (Class Unparsed).
	Certificate *Certificate
	// ParseError is why the certificate could not be read, or read only in
	// part; empty when it parsed.
	ParseError string
	Verdict    Verdict
	// ChainIssuers are the names of the recorded chain's certificates.
	ChainIssuers []string
	// LeafHash is the entry's Merkle leaf hash: what identifies an entry
	// that could not be read.
	LeafHash tlog.Hash
}

// A Sink receives findings. Delivery is at least once: a finding whose
// delivery fails is delivered again when the monitor retries its part of
// the log, so a sink deduplicates by (Log.ID, Index).
type Sink interface {
	Found(ctx context.Context, f *Finding) error
}

// SinkFunc adapts a function to [Sink].
type SinkFunc func(ctx context.Context, f *Finding) error

func (fn SinkFunc) Found(ctx context.Context, f *Finding) error { return fn(ctx, f) }

// Start says where a monitor begins on a log it has no position for.
type Start struct {
	// Beginning starts at entry 0.
	Beginning bool
	// Since, when not zero, starts at the first entries logged at that
	// time (found by binary search over entry timestamps, one tile early).
	Since time.Time
	// Neither: start at the log's current size, watching what comes next.
}

// A Monitor follows CT logs and judges every entry. Its zero value is not
// usable: set Logs, Judge and Sink.
type Monitor struct {
	Logs  []Log
	Judge *Judge
	Sink  Sink
	// State keeps positions; nil keeps them in memory.
	State State
	// Client fetches from the logs; nil: a client with a 60 s timeout.
	Client *http.Client
	// Poll is the interval between looks at a log that is caught up
	// (default 60 s).
	Poll time.Duration
	// Start applies to logs without a stored position.
	Start Start
	// Logger receives progress and errors; nil discards.
	Logger *slog.Logger
	// OnEntry, when set, is called for every entry once it is judged: for
	// metrics and tests.
	OnEntry func(l *Log, index int64)
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	once   sync.Once
	judges atomic.Pointer[Judge]
	// sinceBelow is, per log started at Start.Since, the end of the early
	// tile whose entries logged before Since are judged but not reported.
	sinceBelow map[[sha256.Size]byte]int64
	mu         sync.Mutex
	status     map[[sha256.Size]byte]*LogStatus
	srcs       map[[sha256.Size]byte]source
	issuer     *issuerCache
}

// LogStatus is what a monitor knows of one log.
type LogStatus struct {
	Log *Log
	// Head is the last verified tree head; Next the first entry not judged.
	Head Head
	Next int64
	// Behind is how many entries of the latest head are not judged yet.
	Behind int64
	// Judged counts entries judged by this monitor since it started;
	// Unparsed those of them whose certificate could not be read (each
	// logged; reported as a finding when it mentions a watched name).
	Judged, Unparsed int64
	// LastPoll is when a head was last fetched and verified;
	// LastError the last failure, cleared by a successful pass.
	LastPoll  time.Time
	LastError string
	// Misbehaviour is the first proof that the log misbehaved (sticky).
	Misbehaviour string
	// Elsewhere says another monitor holds the log's lease (a Leaser
	// state): this one leaves the log to it.
	Elsewhere bool
	// Stale is set while the log's newest head is older than its maximum
	// merge delay plus an hour: a log must sign a new head within its MMD,
	// and one that keeps showing an old head may be hiding entries from
	// this monitor (a frozen view). Empty when fresh.
	Stale string
}

// source reads one log, verifying everything it returns.
type source interface {
	head(ctx context.Context) (Head, error)
	consistent(ctx context.Context, old, head Head) error
	// prepare is the position at entry next of head, for a log the
	// monitor starts on.
	prepare(ctx context.Context, head Head, next int64) (Position, error)
	// entries reads the entries from pos.Next to head.Size and hands them
	// to fn in order, in batches, each verified against head, with the
	// position after it.
	entries(ctx context.Context, pos Position, head Head, fn func([]Entry, Position) error) error
	chain(ctx context.Context, e *Entry, c *issuerCache) ([][]byte, error)
	timestamp(ctx context.Context, head Head, index int64) (time.Time, error)
}

func (m *Monitor) init() {
	m.once.Do(func() {
		if m.State == nil {
			m.State = &MemoryState{}
		}
		if m.Poll <= 0 {
			m.Poll = 60 * time.Second
		}
		if m.Logger == nil {
			m.Logger = slog.New(slog.DiscardHandler)
		}
		if m.Now == nil {
			m.Now = time.Now
		}
		m.status = map[[sha256.Size]byte]*LogStatus{}
		m.sinceBelow = map[[sha256.Size]byte]int64{}
		m.srcs = map[[sha256.Size]byte]source{}
		m.issuer = newIssuerCache(1024)
		m.judges.Store(m.Judge)
		f := fetcher{client: m.Client}
		for i := range m.Logs {
			l := &m.Logs[i]
			m.status[l.ID] = &LogStatus{Log: l}
			if l.Tiled {
				m.srcs[l.ID] = newTiled(l, f)
			} else {
				m.srcs[l.ID] = newRFC6962(l, f)
			}
		}
	})
}

// SetJudge replaces the judge for the entries judged from now on (a
// policy that changed).
func (m *Monitor) SetJudge(j *Judge) {
	m.init()
	m.judges.Store(j)
}

// Status returns each log's status, in the order of Logs.
func (m *Monitor) Status() []LogStatus {
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LogStatus, 0, len(m.Logs))
	for i := range m.Logs {
		out = append(out, *m.status[m.Logs[i].ID])
	}
	return out
}

// index is l's position in Logs.
func (m *Monitor) index(l *Log) int {
	for i := range m.Logs {
		if m.Logs[i].ID == l.ID {
			return i
		}
	}
	return 0
}

func (m *Monitor) update(l *Log, fn func(s *LogStatus)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m.status[l.ID])
}

// Run follows every log until ctx is done: each log on its own, caught-up
// logs looked at every Poll, failures retried with exponential backoff (at
// least what a 429's Retry-After asks). It returns ctx's error.
func (m *Monitor) Run(ctx context.Context) error {
	m.init()
	var wg sync.WaitGroup
	for i := range m.Logs {
		l := &m.Logs[i]
		wg.Go(func() { m.follow(ctx, l) })
	}
	wg.Wait()
	return ctx.Err()
}

func (m *Monitor) follow(ctx context.Context, l *Log) {
	backoff := time.Duration(0)
	for {
		err := m.Step(ctx, l)
		delay := m.Poll
		if err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, time.Second), 10*time.Minute)
			delay = backoff
			var he *HTTPError
			if errors.As(err, &he) && he.RetryAfter > delay {
				delay = he.RetryAfter
			}
			m.Logger.Warn("ct: log failed; retrying", "log", l.Name(), "err", err, "retry_in", delay)
		} else {
			backoff = 0
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Once brings every log up to its current head, retrying each failure a
// few times, and returns the logs' errors joined: a one-off audit.
func (m *Monitor) Once(ctx context.Context) error {
	m.init()
	var errs []error
	for i := range m.Logs {
		l := &m.Logs[i]
		var err error
		for attempt, wait := 0, time.Second; attempt < 4; attempt, wait = attempt+1, 2*wait {
			if err = m.Step(ctx, l); err == nil || IsMisbehaviour(err) || ctx.Err() != nil {
				break
			}
			var he *HTTPError
			if errors.As(err, &he) && !he.Temporary() {
				break // a 404 or 403 will not change in seconds
			}
			if he != nil && he.RetryAfter > wait {
				wait = he.RetryAfter
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Step fetches l's head, verifies it against the last one, and judges
// every entry up to it.
func (m *Monitor) Step(ctx context.Context, l *Log) error {
	m.init()
	err := m.step(ctx, l)
	m.update(l, func(s *LogStatus) {
		switch {
		case err == nil:
			s.LastError = ""
		case IsMisbehaviour(err):
			if s.Misbehaviour == "" {
				s.Misbehaviour = err.Error()
			}
			s.LastError = err.Error()
		default:
			s.LastError = err.Error()
		}
	})
	if IsMisbehaviour(err) {
		m.Logger.Error("ct: log misbehaved", "log", l.Name(), "err", err)
	}
	return err
}

func (m *Monitor) step(ctx context.Context, l *Log) error {
	src := m.srcs[l.ID]
	if src == nil {
		return fmt.Errorf("ct: %s is not one of the monitor's logs", l.Name())
	}
	if ls, ok := m.State.(Leaser); ok {
		held, err := ls.Lease(ctx, l.ID)
		if err != nil {
			return err
		}
		m.update(l, func(s *LogStatus) { s.Elsewhere = !held })
		if !held {
			return nil
		}
	}
	head, err := src.head(ctx)
	if err != nil {
		return err
	}
	pos, ok, err := m.State.Load(ctx, l.ID)
	if err != nil {
		return err
	}
	if !ok {
		if pos, err = m.start(ctx, l, src, head); err != nil {
			return err
		}
	}
	old := pos.Head
	if err := checkHead(ctx, src, old, head); err != nil {
		return err
	}
	now := m.Now()
	stale := staleness(l, old, head, now)
	if stale != "" && stale != m.Status()[m.index(l)].Stale {
		m.Logger.Warn("ct: log's head is stale", "log", l.Name(), "head_time", head.Time, "mmd", l.MMD)
	}
	m.update(l, func(s *LogStatus) {
		s.LastPoll = now
		s.Head = head
		s.Behind = head.Size - pos.Next
		s.Stale = stale
	})
	if pos.Next >= head.Size {
		if !sameHead(pos.Head, head) || !ok {
			pos.Head = head
			return m.save(ctx, l, pos)
		}
		return nil
	}
	return src.entries(ctx, pos, head, func(batch []Entry, next Position) error {
		for i := range batch {
			if err := m.judge(ctx, l, src, &batch[i]); err != nil {
				return err
			}
		}
		pos = next
		if m.OnEntry != nil {
			for i := range batch {
				m.OnEntry(l, batch[i].Index)
			}
		}
		m.update(l, func(s *LogStatus) {
			s.Next = pos.Next
			s.Behind = head.Size - pos.Next
			s.Judged += int64(len(batch))
		})
		return m.save(ctx, l, pos)
	})
}

// checkHead verifies that head may follow old, the head verified before
// (zero for none): not smaller, not another root for one size, and an
// extension of it by a consistency proof.
func checkHead(ctx context.Context, src source, old, head Head) error {
	switch {
	case old.Size == 0:
	case head.Size < old.Size:
		return fmt.Errorf("%w: size %d after %d", ErrRollback, head.Size, old.Size)
	case head.Size == old.Size && head.Root != old.Root:
		return fmt.Errorf("%w: size %d has roots %s and %s", ErrSplitView, head.Size, b64(old.Root[:]), b64(head.Root[:]))
	case head.Size > old.Size:
		if err := src.consistent(ctx, old, head); err != nil {
			return fmt.Errorf("%w (from %s to %s)", err, old, head)
		}
	}
	return nil
}

// staleness says why head is suspect though verified, "" when it is not:
// older than the log's MMD plus an hour (a log must sign within its MMD;
// an old head may hide entries), or larger than old yet signed before it.
func staleness(l *Log, old, head Head, now time.Time) string {
	switch {
	case l.MMD > 0 && !head.Time.IsZero() && now.Sub(head.Time) > l.MMD+time.Hour:
		return fmt.Sprintf("the newest head (%s) was signed %s ago; the log's MMD is %s", head, now.Sub(head.Time).Round(time.Minute), l.MMD)
	case head.Size > old.Size && old.Size > 0 && head.Time.Before(old.Time):
		return fmt.Sprintf("the head of size %d is timestamped %s, before the previous head's %s", head.Size,
			head.Time.Format(time.RFC3339), old.Time.Format(time.RFC3339))
	}
	return ""
}

func (m *Monitor) save(ctx context.Context, l *Log, p Position) error {
	if err := m.State.Save(ctx, l.ID, p); err != nil {
		return fmt.Errorf("ct: saving %s's position: %w", l.Name(), err)
	}
	m.update(l, func(s *LogStatus) { s.Head, s.Next = p.Head, p.Next })
	return nil
}

// start is the position on a log without one, per m.Start. With Since,
// the search is for entries logged a maximum merge delay before it (a log
// sequences an entry up to its MMD after the entry's timestamp), and
// starts one tile earlier still.
func (m *Monitor) start(ctx context.Context, l *Log, src source, head Head) (Position, error) {
	switch {
	case m.Start.Beginning || head.Size == 0:
		return Position{}, nil
	case m.Start.Since.IsZero():
		return src.prepare(ctx, head, head.Size)
	}
	// The first tile whose first entry is at or after Since, minus one.
	lo, hi := int64(0), (head.Size-1)/tileWidth+1
	for lo < hi {
		mid := (lo + hi) / 2
		ts, err := src.timestamp(ctx, head, mid*tileWidth)
		if err != nil {
			return Position{}, err
		}
		if ts.Before(m.Start.Since.Add(-l.MMD)) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// Entries from there on are checked against head; nothing before is
	// judged. Only the early tile's entries logged before Since go
	// unreported: later ones are reported whatever their timestamp.
	next := max(lo-1, 0) * tileWidth
	m.mu.Lock()
	m.sinceBelow[l.ID] = next + tileWidth
	m.mu.Unlock()
	return src.prepare(ctx, head, next)
}

// judge parses and judges one entry and hands a finding to the sink.
// Entries of the early tile of a Start.Since start logged before Since
// are judged and not reported.
func (m *Monitor) judge(ctx context.Context, l *Log, src source, e *Entry) error {
	m.mu.Lock()
	below := m.sinceBelow[l.ID]
	m.mu.Unlock()
	if e.Index < below && e.Timestamp.Before(m.Start.Since) {
		return nil
	}
	judge := m.judges.Load()
	c, perr := parseCert(e.Cert, e.Precert)
	if c == nil {
		m.update(l, func(s *LogStatus) { s.Unparsed++ })
		m.Logger.Warn("ct: an entry's certificate cannot be read", "log", l.Name(), "index", e.Index, "precert", e.Precert, "err", perr)
		if !judge.Mentions(e.Cert) {
			return nil
		}
		f := &Finding{Log: l, Index: e.Index, Timestamp: e.Timestamp, Precert: e.Precert, ParseError: perr.Error(),
			Verdict: Verdict{Class: Unparsed}, LeafHash: e.LeafHash}
		return m.Sink.Found(ctx, f)
	}
	if e.Precert {
		c.IssuerKeyHash = e.IssuerKeyHash
	}
	if !judge.Concerns(c) {
		if perr == nil || !judge.Mentions(e.Cert) {
			return nil
		}
		// Read only in part, and the part read names nothing of ours,
		// yet the bytes do: report it rather than trust the part.
		m.update(l, func(s *LogStatus) { s.Unparsed++ })
		return m.Sink.Found(ctx, &Finding{Log: l, Index: e.Index, Timestamp: e.Timestamp, Precert: e.Precert,
			ParseError: perr.Error(), Verdict: Verdict{Class: Unparsed}, LeafHash: e.LeafHash})
	}
	c.Issuer = nameString(c.issuer)
	chain, err := src.chain(ctx, e, m.issuer)
	var incomplete *incompleteChain
	if err != nil && !errors.As(err, &incomplete) {
		return err
	}
	var leaf []byte
	if !e.Precert {
		leaf = e.Cert
	}
	f := &Finding{Log: l, Index: e.Index, Timestamp: e.Timestamp, Precert: e.Precert, Certificate: c,
		Verdict: judge.Judge(c, leaf, chain, m.Now()), LeafHash: e.LeafHash}
	if perr != nil {
		f.ParseError = perr.Error()
	}
	if incomplete != nil {
		f.ParseError = strings.TrimPrefix(f.ParseError+"; "+incomplete.Error(), "; ")
	}
	for _, der := range chain {
		name := "(unreadable)"
		if ic, err := ParseCertificate(der); err == nil {
			name = ic.subjectName()
		}
		f.ChainIssuers = append(f.ChainIssuers, name)
	}
	return m.Sink.Found(ctx, f)
}
