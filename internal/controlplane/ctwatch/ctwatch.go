// Package ctwatch runs the pin-aware Certificate Transparency monitor
// inside the control plane: ct.Monitor over the store's leased positions
// (so that instances on one database split the logs and none judges an
// entry another has judged), sightings and alerts in the store (one alert
// per certificate and class, whatever the number of instances), alerts
// delivered to a webhook signed with HMAC-SHA256 and retried with backoff,
// and Prometheus metrics.
package ctwatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/safetext"
)

// Config configures a Watcher. Store, Logs and Policy are required.
type Config struct {
	Store store.CTStore
	Logs  []ct.Log
	// Judge returns the judge of the pins, watched names and
	// announcements in force; it is asked again every poll interval, so
	// that a policy that changes (a bundle published, a file edited) is
	// used for the entries that follow. A failure keeps the judge in force.
	Judge func(ctx context.Context) (*ct.Judge, error)
	// Poll is the interval between looks at a caught-up log (60 s).
	Poll time.Duration
	// Start is where a log without a stored position starts: the zero
	// value, its current end.
	Start ct.Start
	// Client fetches from the logs; nil: a client with a 30 s timeout.
	Client *http.Client
	// Webhook receives alerts; nil: alerts are only stored and shown.
	Webhook *Webhook
	// Owner names this instance in leases; empty: a random name.
	Owner string
	// LeaseTTL is how long a log's lease lasts unless renewed; 0 means
	// five poll intervals (at least 2 minutes).
	LeaseTTL time.Duration
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time
}

// A Webhook is where alerts are POSTed as JSON.
type Webhook struct {
	URL string
	// Secret signs each delivery: the Rampart-Signature header is
	// "t=<unix seconds>,v1=<hex HMAC-SHA256(Secret, t + "." + body)>".
	Secret []byte
	// Client sends the deliveries; nil: a client with a 10 s timeout.
	Client *http.Client
	// MaxAttempts bounds the deliveries of one alert (default 15: with
	// the backoff, about a day).
	MaxAttempts int
	// RetryBase is the wait after the first failure, doubled after each
	// (default 10 s; at most an hour).
	RetryBase time.Duration
}

// A Watcher runs the monitor and delivers its alerts.
type Watcher struct {
	cfg     Config
	mon     *ct.Monitor
	log     *slog.Logger
	now     func() time.Time
	kick    chan struct{}
	metrics *metrics

	mu   sync.Mutex
	stop context.CancelFunc
	done sync.WaitGroup
}

// New checks cfg and returns a Watcher; Start runs it.
func New(ctx context.Context, cfg Config) (*Watcher, error) {
	if cfg.Store == nil || len(cfg.Logs) == 0 || cfg.Judge == nil {
		return nil, errors.New("ctwatch: a store, logs and a judge are required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 60 * time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = max(5*cfg.Poll, 2*time.Minute)
	}
	if cfg.Owner == "" {
		b := make([]byte, 9)
		rand.Read(b)
		cfg.Owner = base64.RawURLEncoding.EncodeToString(b)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if wh := cfg.Webhook; wh != nil {
		if wh.URL == "" || len(wh.Secret) < 16 {
			return nil, errors.New("ctwatch: a webhook needs a URL and a secret of at least 16 bytes")
		}
		if wh.Client == nil {
			// Redirects are refused: the body and its signature go to
			// the configured URL only, never to wherever it points.
			wh.Client = &http.Client{Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		if wh.MaxAttempts <= 0 {
			wh.MaxAttempts = 15
		}
		if wh.RetryBase <= 0 {
			wh.RetryBase = 10 * time.Second
		}
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, now: cfg.Now, kick: make(chan struct{}, 1)}
	judge, err := w.judge(ctx)
	if err != nil {
		return nil, err
	}
	w.metrics = newMetrics(cfg.Registry)
	w.mon = &ct.Monitor{Logs: cfg.Logs, Judge: judge, Sink: sink{w}, State: &state{w}, Client: cfg.Client,
		Poll: cfg.Poll, Start: cfg.Start, Logger: cfg.Logger, Now: cfg.Now,
		OnEntry: func(l *ct.Log, _ int64) { w.metrics.entries.WithLabelValues(l.Name()).Inc() }}
	w.metrics.watch(w.mon)
	return w, nil
}

func (w *Watcher) judge(ctx context.Context) (*ct.Judge, error) {
	j, err := w.cfg.Judge(ctx)
	if err != nil {
		return nil, fmt.Errorf("ctwatch: the pins to judge by: %w", err)
	}
	return j, nil
}

// Status returns each log's status.
func (w *Watcher) Status() []ct.LogStatus { return w.mon.Status() }

// Certificates lists the certificates seen (the store's).
func (w *Watcher) Certificates(ctx context.Context, f store.CTFilter) ([]store.CTCertificate, error) {
	return w.cfg.Store.Certificates(ctx, f)
}

// Start runs the monitor and the webhook deliveries until Close.
func (w *Watcher) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, w.stop = context.WithCancel(context.WithoutCancel(ctx))
	w.done.Go(func() { w.refreshPolicy(ctx) })
	w.done.Go(func() { w.mon.Run(ctx) })
	if w.cfg.Webhook != nil {
		w.done.Go(func() { w.deliverLoop(ctx) })
	}
}

// Close stops the watcher and waits for it.
func (w *Watcher) Close() {
	w.mu.Lock()
	stop := w.stop
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
	w.done.Wait()
}

// refreshPolicy asks for the policy every poll interval and gives the
// monitor a new judge when it can; a failure keeps the judge in force.
func (w *Watcher) refreshPolicy(ctx context.Context) {
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		j, err := w.judge(ctx)
		if err != nil {
			w.log.Warn("ct: keeping the policy in force", "err", err)
			continue
		}
		w.mon.SetJudge(j)
	}
}

// state keeps positions in the store under leases.
type state struct{ w *Watcher }

func logKey(id [sha256.Size]byte) string { return base64.StdEncoding.EncodeToString(id[:]) }

func (s *state) Lease(ctx context.Context, id [sha256.Size]byte) (bool, error) {
	return s.w.cfg.Store.Claim(ctx, logKey(id), s.w.cfg.Owner, s.w.now(), s.w.cfg.LeaseTTL)
}

func (s *state) Load(ctx context.Context, id [sha256.Size]byte) (ct.Position, bool, error) {
	return s.w.cfg.Store.Position(ctx, logKey(id))
}

// Save renews the lease, then writes under it: a long catch-up keeps
// the log, and an instance that lost it stops at its next batch.
func (s *state) Save(ctx context.Context, id [sha256.Size]byte, p ct.Position) error {
	now := s.w.now()
	held, err := s.w.cfg.Store.Claim(ctx, logKey(id), s.w.cfg.Owner, now, s.w.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	if !held {
		return store.ErrLeaseLost
	}
	return s.w.cfg.Store.SavePosition(ctx, logKey(id), s.w.cfg.Owner, now, p)
}

// alerting are the classes that raise alerts.
func alerting(c ct.Class) bool { return c == ct.Rogue || c == ct.Rollover || c == ct.Unparsed }

// sink records findings as sightings.
type sink struct{ w *Watcher }

// Bounds on what a sighting keeps of a certificate: anyone can log one
// with thousands of names, or names that are not text, and none of that
// may stop the monitor (a sighting the store refuses would be retried
// forever).
const (
	maxNames   = 64
	maxTextLen = 512
)

// bounded is f as it is stored: at most maxNames names, rules and chain
// issuers, text made fit to store and show.
func bounded(f *ct.Finding) *ct.Finding {
	g := *f
	clip := func(list []string, n int) []string {
		out := make([]string, 0, min(len(list), n))
		for _, s := range list[:min(len(list), n)] {
			out = append(out, safetext.Clean(s, maxTextLen))
		}
		return out
	}
	g.Verdict.Names = clip(f.Verdict.Names, maxNames)
	g.Verdict.Rules = f.Verdict.Rules[:min(len(f.Verdict.Rules), maxNames)]
	g.ChainIssuers = clip(f.ChainIssuers, 16)
	g.ParseError = safetext.Clean(f.ParseError, maxTextLen)
	if f.Certificate != nil {
		c := *f.Certificate
		c.Issuer = safetext.Clean(c.Issuer, maxTextLen)
		c.Serial = safetext.Truncate(c.Serial, 128)
		g.Certificate = &c
	}
	return &g
}

// encodeBounded is f's JSON within the store's bound: names are dropped
// from the end until it fits (JSON escaping can grow a name sixfold).
func encodeBounded(f *ct.Finding) ([]byte, error) {
	for {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
		if buf.Len() <= maxFinding || (len(f.Verdict.Names) == 0 && len(f.ChainIssuers) == 0) {
			return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
		}
		g := *f
		if n := len(g.Verdict.Names); n > 0 {
			g.Verdict.Names = g.Verdict.Names[:n/2]
		} else {
			g.ChainIssuers = nil
		}
		f = &g
	}
}

// maxFinding is the store's bound on a finding's JSON.
const maxFinding = 64 << 10

func (s sink) Found(ctx context.Context, f *ct.Finding) error {
	f = bounded(f)
	body, err := encodeBounded(f)
	if err != nil {
		return err
	}
	sg := store.CTSighting{LogID: f.Log.IDString(), Log: safetext.Clean(f.Log.Name(), maxTextLen), Index: f.Index, Logged: f.Timestamp,
		Seen: s.w.now(), Precert: f.Precert, Class: f.Verdict.Class, Alert: alerting(f.Verdict.Class), Names: f.Verdict.Names, Finding: body}
	if c := f.Certificate; c != nil {
		sg.TBSHash = hex.EncodeToString(c.TBSHash[:])
		sg.SPKI, sg.Issuer = f.Verdict.SPKI.String(), c.Issuer
	} else {
		sg.TBSHash = hex.EncodeToString(f.LeafHash[:])
	}
	alert, err := s.w.cfg.Store.AddSighting(ctx, sg)
	if err != nil {
		return err
	}
	s.w.metrics.findings.WithLabelValues(string(sg.Class)).Inc()
	if alert != nil {
		s.w.metrics.alerts.WithLabelValues(string(alert.Class)).Inc()
		s.w.log.Warn("ct: alert", "class", alert.Class, "names", f.Verdict.Names, "spki", sg.SPKI, "log", sg.Log, "index", sg.Index)
		select {
		case s.w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}
