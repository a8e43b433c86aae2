// Package server is Rampart's control plane: it collects pin validation
// failure reports from clients, distributes signed pin bundles, and shows
// both on a dashboard.
//
// # Endpoints
//
//	POST /v1/reports              RFC 7469 §3 and TrustKit failure reports (JSON, ≤ 64 KiB)
//	GET  /v1/bundles/{name}       the latest signed pin bundle (application/jose, ETag, Cache-Control)
//	POST /v1/admin/bundles        publish a bundle (admin; body: the JWS)
//	GET  /v1/admin/bundles        bundles published (admin)
//	GET  /v1/admin/reports        groups of identical reports, filtered (admin)
//	GET  /v1/admin/reports/summary  counts by time, domain, served key, app, mode (admin)
//	GET  /                        the dashboard (admin session, after /login)
//	GET  /v1/admin/ct             the CT monitor: logs, certificates seen (admin)
//	GET  /reports/{id}            one report group: chain, pins, deliveries (session)
//	GET  /ct                      the CT view: certificates logged for the pinned domains (session)
//	GET  /export/reports.csv, /export/reports.json, /export/summary.json
//	                              the dashboard's filter, downloaded (session)
//	GET  /metrics, /healthz       Prometheus metrics; database health
//	/oauth2/..., /.well-known/oauth-authorization-server
//	                              the OAuth2 authorization server, when configured
//	POST /v1/apikeys/rotate       a client rotates its own API key, when configured
//
// Admin endpoints take "Authorization: Bearer <admin token>"; the dashboard
// takes the same token once at /login and keeps a signed session cookie.
//
// # Errors
//
// Every refusal of the endpoints above is a precise 4xx with a JSON body
// {"error": "..."}; an unexpected failure is a 500 whose detail goes only
// to the log. The handlers mounted beside them answer in their own
// documented terms: the OAuth2 endpoints with RFC 6749 §5.2 errors, API-key
// rotation and certificate renewal with {"error", "error_description"}.
// All are written by internal/util/httpx's WriteOAuthError. An answer is
// encoded before its status line is sent, so an encoding failure is such
// a 500 too, never a truncated 2xx. Unknown query
// parameters of the admin API and the dashboard are refused.
//
// # Storage
//
// Reports are bounded by [ReportQuota]: the space they take, distinct
// reports per host name per day, and the free disk space left.
//
// # Durability
//
// A report is acknowledged (204) only after the transaction holding it has
// committed; reports arriving together are committed together (group
// commit), which is what makes thousands per second possible on SQLite.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/pin/bundle"
	"github.com/rampartsec/rampart/ratelimit"
)

// Config configures a Server. Store and AdminToken are required; every
// other zero value is documented with its field.
type Config struct {
	// Store keeps reports, bundles and token revocations. Required.
	Store store.Store
	// AdminToken authorizes the admin API and the dashboard. It is
	// compared in constant time and never logged. Use at least 32 random
	// bytes; New refuses fewer than 16 characters, and characters an
	// RFC 6750 bearer credential cannot hold.
	AdminToken string
	// AdminTokenHint completes "The admin token is ..." on the login
	// page, e.g. "in the file admin-token in the data directory". The
	// page is public: name no path of the machine. Empty: a generic hint.
	AdminTokenHint string
	// BundleKeys are the public keys published bundles must be signed
	// with. If nil, publishing is refused: the control plane never holds
	// a signing key, and never accepts what it cannot verify.
	BundleKeys *bundle.Keys
	// ReportLimit bounds reports per client address (IPv6 by /64). Zero
	// means 10 per second with a burst of 100; a negative Rate disables
	// the limit (benchmarks).
	ReportLimit ratelimit.Limit
	// TrustedProxies are the networks of proxies in front of the server,
	// whose X-Forwarded-For is believed (walked from the right). Empty:
	// the peer address is the client.
	TrustedProxies []netip.Prefix
	// BundleCacheControl is the Cache-Control of bundle responses, for
	// CDNs; empty means "public, max-age=60".
	BundleCacheControl string
	// BundleCacheTTL is how long this process serves a bundle from memory
	// before asking the database again (other instances may publish);
	// 0 means 2 seconds.
	BundleCacheTTL time.Duration
	// Retention is how long reports are kept; older ones are deleted
	// every hour. Zero keeps them forever.
	Retention time.Duration
	// ReportQuota bounds the storage reports take; the zero value has
	// the documented defaults.
	ReportQuota ReportQuota
	// SecureCookies marks the dashboard session cookie Secure; set it when
	// the server is reached over https.
	SecureCookies bool
	// OAuth serves the OAuth2 authorization server (authserver.Server) under
	// /oauth2/ and /.well-known/oauth-authorization-server; nil leaves
	// them out.
	OAuth http.Handler
	// APIKeyRotation serves POST /v1/apikeys/rotate, where clients rotate
	// their own keys; nil leaves it out.
	APIKeyRotation http.Handler
	// CertRenewal serves POST /v1/certificates/renew, where workloads
	// renew their mutual-TLS certificates (mtls.RenewHandler); nil leaves
	// it out. The TLS server must ask for client certificates.
	CertRenewal http.Handler
	// CAExpiry is when the issuing CA behind CertRenewal expires, exported
	// as rampart_ca_issuing_expiry_timestamp_seconds so that an alert can
	// say to rotate it in time; zero leaves the metric out.
	CAExpiry time.Time
	// CT is the Certificate Transparency monitor the dashboard shows; nil
	// when it does not run.
	CT CTView
	// Registry receives the metrics; nil means a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// Logger receives errors and notable events; nil discards them.
	Logger *slog.Logger
	// AccessLog, if set, receives one line per request: method, path
	// (without the query), status, duration_ms, bytes and remote (the
	// client address, after TrustedProxies). Never a header, a query or
	// a body: no credential reaches it.
	AccessLog *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Settings are the parts of a Config that a running Server can change
// ([Server.Update]; rampart serve applies them on SIGHUP). Their zero
// values mean what the Config fields of the same names document.
type Settings struct {
	BundleKeys         *bundle.Keys
	ReportLimit        ratelimit.Limit
	ReportQuota        ReportQuota
	BundleCacheControl string
	Retention          time.Duration
	AccessLog          *slog.Logger
}

// normalize fills in the defaults of st and checks it.
func (st *Settings) normalize() error {
	if st.ReportLimit == (ratelimit.Limit{}) {
		st.ReportLimit = defaultReportLimit
	}
	if st.ReportLimit.Rate >= 0 {
		if err := st.ReportLimit.Validate(); err != nil {
			return fmt.Errorf("server: report limit: %w", err)
		}
	}
	if st.BundleCacheControl == "" {
		st.BundleCacheControl = "public, max-age=60"
	}
	if st.Retention < 0 {
		return errors.New("server: negative retention")
	}
	st.ReportQuota = st.ReportQuota.withDefaults()
	return nil
}

// Server is the control plane's HTTP handler. Create it with New, start
// its background work with Start, and stop it with Close after the
// http.Server has shut down.
type Server struct {
	cfg      Config
	live     atomic.Pointer[Settings]
	kick     chan struct{} // wakes pruneLoop when the retention changed
	st       store.Store
	log      *slog.Logger
	now      func() time.Time
	token    [sha256.Size]byte
	limiter  *ratelimit.Memory
	ingest   *ingester
	quota    *quota
	bundles  *bundleCache
	certs    *certCache // of recent reports
	metrics  *metrics
	mux      *http.ServeMux
	cookieKY []byte

	life    sync.Mutex // guards started, closed and stop
	started bool
	closed  bool
	stop    context.CancelFunc // ends pruneLoop
	pruned  chan struct{}      // closed when pruneLoop has ended
}

// Default limits.
var (
	defaultReportLimit = ratelimit.PerSecond(10, 100)
	// authFailureLimit bounds wrong admin tokens per client address.
	authFailureLimit = ratelimit.PerMinute(10, 10)
)

// New returns a Server for cfg. It starts nothing: reports are refused
// with 503 until Start.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	if len(cfg.AdminToken) < 16 {
		return nil, errors.New("server: the admin token must be at least 16 characters (rampart serve makes a random one)")
	}
	if c, err := auth.ParseAuthorization("Bearer " + cfg.AdminToken); err != nil || c.Value != cfg.AdminToken {
		// Admins send it as a bearer credential, which the one reader of
		// credentials takes in RFC 6750's syntax only.
		return nil, errors.New("server: the admin token must be an RFC 6750 b64token: letters, digits and -._~+/, then = padding only")
	}
	live := Settings{BundleKeys: cfg.BundleKeys, ReportLimit: cfg.ReportLimit, ReportQuota: cfg.ReportQuota,
		BundleCacheControl: cfg.BundleCacheControl, Retention: cfg.Retention, AccessLog: cfg.AccessLog}
	if err := live.normalize(); err != nil {
		return nil, err
	}
	if cfg.BundleCacheTTL == 0 {
		cfg.BundleCacheTTL = 2 * time.Second
	}
	s := &Server{
		cfg:     cfg,
		st:      cfg.Store,
		log:     cfg.Logger,
		now:     cfg.Now,
		token:   sha256.Sum256([]byte(cfg.AdminToken)),
		limiter: &ratelimit.Memory{Now: cfg.Now},
		kick:    make(chan struct{}, 1),
		certs:   &certCache{m: make(map[[sha256.Size]byte]servedCert)},
	}
	s.live.Store(&live)
	if s.log == nil {
		s.log = discardLogger
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := cfg.Registry
	if reg == nil {
		reg = newRegistry()
	}
	s.metrics = newMetrics(reg)
	if !cfg.CAExpiry.IsZero() {
		expiry := float64(cfg.CAExpiry.Unix())
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_ca_issuing_expiry_timestamp_seconds",
			Help: "When the issuing CA that renews certificates expires (Unix time): rotate it before (rampart ca rotate).",
		}, func() float64 { return expiry }))
	}
	s.cookieKY = deriveKey(cfg.AdminToken, "rampart dashboard session v1")
	s.ingest = newIngester(cfg.Store.Reports(), 4096, 512, 64<<20, func(n int, d time.Duration, err error) {
		s.metrics.observeBatch(n, d, err)
		if err != nil {
			s.log.Error("storing reports failed; clients were told to retry", "reports", n, "err", err)
		}
	})
	s.quota = newQuota(live.ReportQuota, cfg.Store.Reports(), s.now, func(msg string, args ...any) { s.log.Warn(msg, args...) })
	s.quota.register(reg)
	s.bundles = newBundleCache(cfg.Store.Bundles(), cfg.BundleCacheTTL, s.now)
	s.routes(reg)
	s.pruned = make(chan struct{})
	return s, nil
}

// Start starts the background work: the committer of reports (group
// commit) and the deletion of reports older than the retention and of
// expired token revocations, at once and every hour. It returns at once;
// the work runs until Close, not until ctx ends (ctx's values are kept).
// Start after Start or Close is an error.
func (s *Server) Start(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	switch {
	case s.closed:
		return errors.New("server: Start after Close")
	case s.started:
		return errors.New("server: started twice")
	}
	s.started = true
	s.ingest.start()
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	go s.pruneLoop(ctx)
	return nil
}

// pruneLoop deletes, at start and every hour, the reports older than the
// retention and the revocations of tokens that have expired anyway.
func (s *Server) pruneLoop(ctx context.Context) {
	defer close(s.pruned)
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if retention := s.live.Load().Retention; retention > 0 {
			n, err := s.st.Reports().Prune(ctx, s.now().Add(-retention))
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("deleting old reports failed; retrying in an hour", "err", err)
			case n > 0:
				s.log.Info("deleted old reports", "reports", n, "retention", retention.String())
			}
		}
		if err := s.st.RevokedTokens().PruneRevoked(ctx, s.now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
			s.log.Error("forgetting expired token revocations failed; retrying in an hour", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// Settings returns the settings in force.
func (s *Server) Settings() Settings { return *s.live.Load() }

// Update replaces the settings in force, for the requests that follow;
// a changed retention deletes what it no longer keeps at once. An
// invalid st changes nothing.
func (s *Server) Update(st Settings) error {
	if err := st.normalize(); err != nil {
		return err
	}
	old := s.live.Swap(&st)
	s.quota.setConfig(st.ReportQuota)
	if st.Retention != old.Retention {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// ServeHTTP serves the control plane.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if al := s.live.Load().AccessLog; al != nil {
		lw := &loggingWriter{ResponseWriter: w}
		start := time.Now()
		defer func() { s.logRequest(al, r, lw, time.Since(start)) }()
		w = lw
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			writeError(w, httpError(http.StatusInternalServerError, "internal error"))
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// Close commits the reports still queued, stops accepting new ones and
// stops the pruning; it waits for both, or for ctx. Call it after
// http.Server.Shutdown, before closing the store. It may be called twice,
// and without Start.
func (s *Server) Close(ctx context.Context) error {
	s.life.Lock()
	s.closed = true
	started, stop := s.started, s.stop
	s.life.Unlock()
	if stop != nil {
		stop()
	}
	err := s.ingest.close(ctx)
	if !started {
		return err
	}
	select {
	case <-s.pruned:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (s *Server) routes(reg *prometheus.Registry) {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/reports", s.handle(s.postReport))
	mux.Handle("GET /v1/bundles/{name}", s.handle(s.getBundle))
	mux.Handle("POST /v1/admin/bundles", s.admin(s.publishBundle))
	mux.Handle("GET /v1/admin/bundles", s.admin(s.listBundles))
	mux.Handle("GET /v1/admin/reports", s.admin(s.listReports))
	mux.Handle("GET /v1/admin/reports/summary", s.admin(s.summary))
	mux.Handle("GET /v1/admin/ct", s.admin(s.ctAPI))
	s.dashboardRoutes(mux)
	if s.cfg.OAuth != nil {
		mux.Handle("/oauth2/", s.cfg.OAuth)
		mux.Handle("GET /.well-known/oauth-authorization-server", s.cfg.OAuth)
		// RFC 8414 §3.1: an issuer with a path has its metadata below.
		mux.Handle("GET /.well-known/oauth-authorization-server/", s.cfg.OAuth)
	}
	if s.cfg.CertRenewal != nil {
		mux.Handle("POST /v1/certificates/renew", s.cfg.CertRenewal)
	}
	if s.cfg.APIKeyRotation != nil {
		mux.Handle("POST /v1/apikeys/rotate", s.cfg.APIKeyRotation)
	}
	mux.Handle("GET /metrics", s.metricsHandler(reg))
	mux.Handle("GET /healthz", s.handle(s.healthz))
	s.mux = mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		return &Error{Code: http.StatusServiceUnavailable, Msg: "database unreachable", Err: err}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// admin wraps h with the admin bearer-token check.
func (s *Server) admin(h handlerFunc) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		// A client that failed too often is refused before its token is
		// looked at: otherwise a guesser would learn of a right guess.
		if err := s.authBlocked(r); err != nil {
			return err
		}
		token, ok := bearer(r)
		if !ok || !s.tokenOK(r, token) {
			if err := s.authFailure(r); err != nil {
				return err
			}
			return &Error{
				Code:   http.StatusUnauthorized,
				Msg:    "admin token required: send the header Authorization: Bearer followed by the admin token",
				Header: http.Header{"Www-Authenticate": {`Bearer realm="rampart-admin"`}},
			}
		}
		return h(w, r)
	})
}

// tokenOK compares a presented token with the admin token in constant
// time. Both are hashed first, so their lengths leak nothing either.
func (s *Server) tokenOK(r *http.Request, token string) bool {
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// authFailure counts a failed authentication from r's client and returns
// a 429 once the client has failed too often.
func (s *Server) authFailure(r *http.Request) error {
	s.metrics.authFailures.Inc()
	key := "auth|" + ratelimit.AddrKey(ratelimit.ClientAddr(r, s.cfg.TrustedProxies))
	d, _ := s.limiter.Allow(r.Context(), key, authFailureLimit)
	if !d.Allowed {
		return tooMany(d, "too many failed authentications from this address")
	}
	return nil
}

// authBlocked reports whether r's client has exhausted its failed
// authentications, without counting one.
func (s *Server) authBlocked(r *http.Request) error {
	key := "auth|" + ratelimit.AddrKey(ratelimit.ClientAddr(r, s.cfg.TrustedProxies))
	d, _ := s.limiter.Peek(key, authFailureLimit)
	if !d.Allowed {
		return tooMany(d, "too many failed authentications from this address")
	}
	return nil
}

func tooMany(d ratelimit.Decision, msg string) *Error {
	return &Error{
		Code:   http.StatusTooManyRequests,
		Msg:    msg,
		Header: http.Header{"Retry-After": {strconv.FormatInt(max(httpx.Seconds(d.RetryAfter), 1), 10)}},
	}
}

// bearer returns the admin token r presents: a bearer credential, read
// by auth.ParseCredential as every other credential is. A request it
// refuses (two credentials, a malformed header) presents none.
func bearer(r *http.Request) (string, bool) {
	c, err := auth.ParseCredential(r)
	if err != nil || c.Header != auth.HeaderAuthorization {
		return "", false
	}
	return c.Value, true
}

func deriveKey(secret, purpose string) []byte {
	h := sha256.New()
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}
