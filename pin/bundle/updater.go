package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// Defaults of the Updater.
const (
	// DefaultInterval is the time between successful polls.
	DefaultInterval = 15 * time.Minute
	// initialBackoff is the first wait after a failure; it doubles with
	// every further failure, up to MaxBackoff.
	initialBackoff = 5 * time.Second
	// clientTimeout bounds a whole fetch by the default client.
	clientTimeout = 30 * time.Second
)

// Sources of the active policy, in [State].Source.
const (
	SourceEmbedded = "embedded"
	SourceCache    = "cache"
	SourceNetwork  = "network"
	// SourcePush: a bundle handed to [Updater.Apply] (a push message, a
	// file shipped beside the client).
	SourcePush = "push"
)

// An Updater keeps a [pin.Verifier]'s policy up to date from a signed
// bundle served by the control plane, with the policy embedded in the
// client as the floor. See the package documentation for its semantics.
//
// Set the exported fields before first use; they must not change
// afterwards. Its methods are safe for concurrent use.
type Updater struct {
	// URL is the https URL of the bundle, for example
	// https://cp.example.com/v1/bundles/mobile. Required. Its host must be
	// pinned, in enforce mode, by Embedded (else [ErrControlPlaneNotPinned]).
	// When that rule expires (its Expires date has passed), the Updater
	// stops fetching, since the connection would then be checked by CA
	// validation only: every Update fails with [ErrControlPlaneNotPinned]
	// until a client with a renewed rule ships. The bundle in effect
	// stays until it expires.
	URL string
	// Name is the bundle name expected in the payload. Required: a bundle
	// for another name, even signed by a trusted key, is refused
	// ([ErrWrongName]), so that one client population's bundle cannot be
	// served to another.
	Name string
	// Keys are the trusted signing keys. Required. Several keys allow a
	// signing key rotation.
	Keys *Keys
	// Embedded is the policy shipped with the client. Required. It applies
	// before any bundle and whenever no valid bundle does, and it is the
	// floor: a bundle replaces the rules it names and adds others, but
	// cannot remove an embedded rule. The connection to URL is pinned by
	// Embedded alone, never by a bundle.
	Embedded *pin.Policy
	// Verifier receives the effective policy through
	// [pin.Verifier.SetPolicy]. Required. At first use its policy is set
	// to Embedded, if it is not already, and from then on only the
	// Updater should set it.
	Verifier *pin.Verifier
	// CacheFile is where the last accepted bundle is kept, so that it
	// applies at the next start before any network access and so that
	// the rollback floor survives restarts. Empty: no cache, and after
	// a restart any bundle still valid and not below MinVersion is
	// accepted again, older ones included.
	//
	// The cache is read only if no one but this user could have written
	// it: on Unix systems, a symbolic link, anything but a regular file, a
	// file owned by another user, writable by group or others or with
	// another hard link, and a file in a directory that others can write
	// to (unless it is sticky, like /tmp, or group-writable for this
	// process's own group only) are refused ([ErrCacheRefused]). A cache
	// that is present but refused, unreadable, corrupt, for another name
	// or signed by a key no longer trusted is not applied and sets no
	// floor: it is logged at error level and shown in [State].CacheError,
	// and the floor is MinVersion until a bundle is accepted.
	CacheFile string
	// MinVersion is the lowest bundle version the client accepts, from
	// the cache or the network ([ErrRollback] below it). Ship it with the
	// client, set to the version of the latest bundle when the client is
	// built: a fresh install, or a client whose cache is gone, can then
	// not be rolled back by a control plane that replays older bundles.
	// 0 accepts any version.
	MinVersion int64
	// Client fetches the bundle. If nil, a client pinned by Embedded
	// (from pin.NewVerifier(Embedded).Client, with the system roots) with
	// a 30 s timeout is used; it follows redirects only to hosts that
	// Embedded pins. A client set here must be pinned the same way (for
	// example pin.NewVerifier(Embedded).Client with a transport that
	// trusts a private CA); the Updater still refuses a URL, or the
	// final URL after redirects, whose host Embedded does not pin.
	Client *http.Client
	// Interval is the time between successful polls. If 0, 15 minutes.
	Interval time.Duration
	// MaxBackoff caps the wait after failures, which starts at 5 s and
	// doubles with every consecutive failure, with ±20% jitter. If 0,
	// Interval.
	MaxBackoff time.Duration
	// Now returns the current time, for bundle validity. If nil, time.Now.
	Now func() time.Time
	// Logger receives updates, refusals and fallbacks; it is never given
	// bundle contents beyond name, version and kid. If nil,
	// slog.Default().
	Logger *slog.Logger

	// sleep waits for d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	initOnce sync.Once
	initErr  error
	client   *http.Client
	target   *url.URL // URL, parsed
	urlText  string   // URL without credentials, for logs

	// opMu serializes everything that changes the policy: Load, Update and
	// the expiry fallback.
	opMu   sync.Mutex
	loaded bool // Load has run (guarded by opMu)

	mu         sync.Mutex // guards the fields below
	active     *Bundle    // the bundle in effect; nil: Embedded alone
	source     string     // of active
	floor      *Bundle    // the highest version accepted, expired or not
	etag       string     // of the response that delivered floor
	cacheDirty bool       // floor is not yet in CacheFile
	st         State      // counters and times
}

// State is a snapshot of an [Updater], for health checks and metrics.
type State struct {
	// Version is the version of the bundle in effect, 0 when the embedded
	// policy applies alone.
	Version int64
	// Source is where the policy in effect comes from: "embedded",
	// "cache", "network" or "push" ([Updater.Apply]).
	Source string
	// KeyID and ExpiresAt are those of the bundle in effect.
	KeyID     string
	ExpiresAt time.Time
	// LastAttempt and LastSuccess are the times of the last fetch and of
	// the last one that succeeded (including 304 Not Modified).
	LastAttempt, LastSuccess time.Time
	// LastError is the error of the last failed fetch, cleared by a
	// success; or of a cache that could not be written.
	LastError string
	// CacheError says why the bundle in CacheFile gave no rollback floor
	// at start-up (refused, unreadable, corrupt, another name, an
	// unknown key, below MinVersion), empty when it did or when there
	// was no cache file. Cleared when a bundle is accepted.
	CacheError string
	// ConsecutiveFailures counts failed fetches since the last success.
	ConsecutiveFailures int
	// Fetches counts fetch attempts; NotModified the 304 answers; Updates
	// the bundles applied from the network or by [Updater.Apply]; Rejected the bundles received
	// and refused.
	Fetches, NotModified, Updates, Rejected uint64
}

func (u *Updater) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

func (u *Updater) logger() *slog.Logger {
	if u.Logger != nil {
		return u.Logger
	}
	return slog.Default()
}

func (u *Updater) interval() time.Duration {
	if u.Interval > 0 {
		return u.Interval
	}
	return DefaultInterval
}

// init checks the configuration once.
func (u *Updater) init() error {
	u.initOnce.Do(func() { u.initErr = u.setup() })
	return u.initErr
}

// Check reports a configuration that Load, Update and Run would refuse
// (a required field missing, a URL that is not https, a control plane the
// embedded policy does not pin), without side effects: nothing is fetched,
// read or started.
func (u *Updater) Check() error {
	_, err := u.check()
	return err
}

// check validates the fields and returns the parsed URL.
func (u *Updater) check() (*url.URL, error) {
	switch {
	case u.Name == "":
		return nil, errors.New("bundle: Updater.Name is required")
	case u.Keys == nil || u.Keys.Len() == 0:
		return nil, errors.New("bundle: Updater.Keys is required")
	case u.Embedded == nil:
		return nil, errors.New("bundle: Updater.Embedded is required: the policy shipped with the client")
	case u.Verifier == nil:
		return nil, errors.New("bundle: Updater.Verifier is required")
	}
	if err := checkName(u.Name); err != nil {
		return nil, fmt.Errorf("bundle: Updater.Name: %w", err)
	}
	if u.MinVersion < 0 {
		return nil, fmt.Errorf("bundle: Updater.MinVersion %d: want 0 or more", u.MinVersion)
	}
	if u.URL == "" {
		return nil, errors.New("bundle: Updater.URL is required")
	}
	target, err := url.Parse(u.URL)
	if err != nil {
		return nil, fmt.Errorf("bundle: Updater.URL: %w", err)
	}
	if target.Scheme != "https" || target.Host == "" || target.User != nil {
		return nil, fmt.Errorf("bundle: Updater.URL %q: want an https URL without credentials", target.Redacted())
	}
	// The rule's expiry is checked at every fetch (checkPinned with the
	// time); here, that there is an enforced rule at all.
	if err := u.checkPinned(target, time.Time{}); err != nil {
		return nil, err
	}
	return target, nil
}

func (u *Updater) setup() error {
	target, err := u.check()
	if err != nil {
		return err
	}
	u.urlText = target.Redacted()
	u.target = target
	u.client = u.Client
	if u.client == nil {
		v := pin.NewVerifier(u.Embedded)
		v.Now = u.now // pin-set expiry on the Updater's clock
		c, err := v.Client(nil)
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		c.Timeout = clientTimeout
		pinnedRedirect := c.CheckRedirect
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if err := u.checkPinned(req.URL, u.now()); err != nil {
				return err
			}
			return pinnedRedirect(req, via)
		}
		u.client = c
	}
	u.mu.Lock()
	u.source = SourceEmbedded
	u.mu.Unlock()
	if u.Verifier.Policy() != u.Embedded {
		u.Verifier.SetPolicy(u.Embedded)
	}
	return nil
}

// checkPinned refuses a control-plane URL that Embedded does not pin in
// enforce mode, or (unless now is zero) whose rule has expired at now: an
// expired rule falls back to CA validation alone, which is not pinned.
func (u *Updater) checkPinned(target *url.URL, now time.Time) error {
	if target.Scheme != "https" {
		return fmt.Errorf("%w: %s is not https", ErrControlPlaneNotPinned, target.Redacted())
	}
	d := u.Embedded.Match(target.Hostname())
	if d == nil {
		return fmt.Errorf("%w: no rule for %s", ErrControlPlaneNotPinned, target.Hostname())
	}
	if d.Mode != pin.Enforce {
		return fmt.Errorf("%w: the rule for %s is %s", ErrControlPlaneNotPinned, target.Hostname(), d.Mode)
	}
	if !now.IsZero() && d.Expired(now) {
		return fmt.Errorf("%w: the embedded rule for %s expired after %s, so the connection would get CA validation only; not fetching (ship the client with a renewed rule)",
			ErrControlPlaneNotPinned, target.Hostname(), d.Expires.Format(time.DateOnly))
	}
	return nil
}

// State returns a snapshot of the Updater's state.
func (u *Updater) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.st
	s.Source = u.source
	if s.Source == "" {
		s.Source = SourceEmbedded
	}
	if b := u.active; b != nil {
		s.Version, s.KeyID, s.ExpiresAt = b.Version, b.KeyID, b.ExpiresAt
	}
	return s
}

// Load applies the bundle in CacheFile, if any, before any network access.
// The cache file is checked first (see CacheFile), then the cached bundle
// is verified like a fetched one (keys, signature, name, expiry,
// MinVersion); one that is refused is ignored, logged at error level and
// named in [State].CacheError, and the embedded policy stays. An expired
// cached bundle is not applied, but still sets the rollback floor. Load
// returns an error only for an invalid configuration. The first
// [Updater.Update] calls Load if it has not run, so that no fetch happens
// without the rollback floor.
func (u *Updater) Load() error {
	if err := u.init(); err != nil {
		return err
	}
	u.opMu.Lock()
	defer u.opMu.Unlock()
	u.load()
	return nil
}

// load is Load; the caller holds opMu.
func (u *Updater) load() {
	u.loaded = true
	if u.CacheFile == "" {
		return
	}
	log := u.logger()
	data, err := readCache(u.CacheFile)
	if errors.Is(err, fs.ErrNotExist) {
		log.Debug("bundle: no cached bundle", "file", u.CacheFile)
		return
	}
	if err != nil {
		// A refused file is not read at all: whoever planted it chose
		// its contents. The error names the file and why, never contents.
		u.badCache(err, "err", err)
		return
	}
	now := u.now()
	b, err := verify(string(trimSpace(data)), u.Keys, now)
	if err != nil {
		if b != nil && b.Name == u.Name && (errors.Is(err, ErrExpired) || errors.Is(err, ErrNotYetValid)) {
			if b.Version < u.MinVersion {
				u.badCache(fmt.Errorf("%w: the cached version %d is below MinVersion %d", ErrRollback, b.Version, u.MinVersion),
					"name", b.Name, "version", b.Version, "kid", b.KeyID, "reason", ErrRollback.Error())
				return
			}
			// Authentic, and accepted once: the floor, though no longer
			// (or not yet) in effect.
			u.mu.Lock()
			if u.floor == nil || b.Version > u.floor.Version {
				u.floor = b
			}
			u.mu.Unlock()
			log.Warn("bundle: the cached bundle is not valid now; the embedded policy stays, the cached version stays the rollback floor",
				"file", u.CacheFile, "name", b.Name, "version", b.Version, "kid", b.KeyID, "reason", reason(err))
			return
		}
		u.badCache(err, "reason", reason(err))
		return
	}
	if _, err := u.accept(b, SourceCache, ""); err != nil {
		u.badCache(err, "name", b.Name, "version", b.Version, "kid", b.KeyID, "reason", reason(err))
	}
}

// badCache records and logs a cache file that is present but gives no
// rollback floor; args describe it for the log (never its contents).
func (u *Updater) badCache(err error, args ...any) {
	u.mu.Lock()
	u.st.CacheError = err.Error()
	u.mu.Unlock()
	args = append([]any{"file", u.CacheFile, "min_version", u.MinVersion}, args...)
	u.logger().Error("bundle: ignoring the cached bundle; the embedded policy stays, and the rollback floor is MinVersion until a bundle is accepted", args...)
}

// Update fetches the bundle once and applies it if it is new: a GET of URL
// with Accept: application/jose and If-None-Match with the ETag of the
// last accepted bundle. It does not fetch when Embedded's rule for URL's
// host has expired ([ErrControlPlaneNotPinned]). 304 Not Modified keeps
// the bundle in effect. A 200 response is verified with [Verify] and the
// Updater's Name, then refused if its version is below the highest
// accepted or below MinVersion ([ErrRollback]), or equal with other
// content ([ErrRollback], equivocation); equal content changes nothing. A new bundle is applied (see the package documentation
// for the effective policy) and written to CacheFile. Other statuses are
// errors that name the status.
//
// A failed Update changes nothing but the [State] (besides the fallback
// from an expired bundle, which happens whatever the fetch gives). If the
// bundle was applied but CacheFile could not be written, Update returns
// that error, which [State].LastError also shows, and writes the cache
// at the next successful fetch.
func (u *Updater) Update(ctx context.Context) error {
	if err := u.init(); err != nil {
		return err
	}
	u.opMu.Lock()
	defer u.opMu.Unlock()
	if !u.loaded {
		// The rollback floor is in the cache: never fetch without it.
		u.load()
	}
	now := u.now()
	u.expire(now)

	u.mu.Lock()
	u.st.LastAttempt = now
	u.st.Fetches++
	etag := u.etag
	u.mu.Unlock()

	if err := u.checkPinned(u.target, now); err != nil {
		u.logger().Error("bundle: not fetching; the bundle in effect stays until it expires", "url", u.urlText, "err", err)
		return u.fail(err)
	}

	jws, newETag, notModified, err := u.fetch(ctx, etag)
	if err != nil {
		if errors.Is(err, ErrMalformed) { // an oversized body
			return u.reject(nil, err)
		}
		if ctx.Err() == nil {
			u.logger().Warn("bundle: fetch failed; the policy in effect stays", "url", u.urlText, "err", err)
		}
		return u.fail(err)
	}
	if notModified {
		u.mu.Lock()
		u.st.NotModified++
		u.mu.Unlock()
		return u.succeed(now, nil)
	}
	// Validity is judged at the time of the response, not of the request.
	now = u.now()
	b, applied, err := u.offer(jws, SourceNetwork, newETag, now)
	if err == nil || applied {
		// Applied (err is then a cache error), or nothing new.
		return u.succeed(now, err)
	}
	return u.reject(b, err)
}

// Apply applies a bundle obtained some other way than by polling URL — a
// push message, a file delivered beside the client — with every check of
// a fetched one: it is verified ([Verify]) at the Updater's clock, and
// refused for another name ([ErrWrongName]), a version below the highest
// accepted or below MinVersion, or the same version with other content
// ([ErrRollback]); the same bundle again changes nothing. An accepted
// bundle is applied and written to CacheFile, exactly as after a fetch.
// Apply needs a valid configuration (URL included: the bundle in effect
// must be one the poller could replace) and loads the cache first if
// [Updater.Load] has not run.
func (u *Updater) Apply(jws string) error {
	if err := u.init(); err != nil {
		return err
	}
	u.opMu.Lock()
	defer u.opMu.Unlock()
	if !u.loaded {
		u.load()
	}
	now := u.now()
	u.expire(now)
	jws = string(trimSpace([]byte(jws)))
	b, applied, err := u.offer(jws, SourcePush, "", now)
	if err == nil || applied {
		return err
	}
	// Refused: counted and logged as a fetched bundle would be, but not a
	// failed fetch (the poller's backoff is not the pusher's business).
	u.mu.Lock()
	u.st.Rejected++
	u.mu.Unlock()
	if b != nil {
		u.logger().Warn("bundle: refused", "source", SourcePush, "name", b.Name, "version", b.Version, "kid", b.KeyID, "reason", reason(err))
	} else {
		u.logger().Warn("bundle: refused", "source", SourcePush, "reason", reason(err))
	}
	return err
}

// offer verifies jws at now and accepts it from source; applied reports
// a bundle that took effect even when err is set (a cache error). b is
// the bundle when it verified, for the refusal's log.
func (u *Updater) offer(jws, source, etag string, now time.Time) (b *Bundle, applied bool, err error) {
	b, err = verify(jws, u.Keys, now)
	if err != nil {
		return b, false, err
	}
	applied, err = u.accept(b, source, etag)
	return b, applied, err
}

// reject records and logs a refused bundle; b is nil when it did not
// verify.
func (u *Updater) reject(b *Bundle, err error) error {
	u.mu.Lock()
	u.st.Rejected++
	u.mu.Unlock()
	log := u.logger()
	if b != nil {
		log.Warn("bundle: refused", "url", u.urlText, "name", b.Name, "version", b.Version, "kid", b.KeyID, "reason", reason(err))
	} else {
		log.Warn("bundle: refused", "url", u.urlText, "reason", reason(err))
	}
	return u.fail(err)
}

// errCache marks an Update that applied a bundle but could not cache it.
var errCache = errors.New("bundle: applied, but could not write the cache (the rollback floor will not survive a restart)")

func (u *Updater) succeed(now time.Time, cacheErr error) error {
	if cacheErr == nil {
		u.retryCache()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.LastSuccess = now
	u.st.ConsecutiveFailures = 0
	u.st.LastError = ""
	if cacheErr != nil {
		u.st.LastError = cacheErr.Error()
	}
	return cacheErr
}

func (u *Updater) fail(err error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.ConsecutiveFailures++
	u.st.LastError = err.Error()
	return err
}

// fetch GETs the bundle. It returns the body, trimmed of surrounding white
// space, and the response's ETag, or notModified.
func (u *Updater) fetch(ctx context.Context, etag string) (jws, newETag string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.URL, nil)
	if err != nil {
		return "", "", false, fmt.Errorf("bundle: %w", err)
	}
	req.Header.Set("Accept", "application/jose")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := u.client.Do(req)
	if errors.Is(err, pin.ErrUnpinnedRedirect) {
		// A client from pin.Verifier.Client refuses the hop itself.
		return "", "", false, fmt.Errorf("bundle: fetching %s: %w: %w", req.URL.Redacted(), ErrControlPlaneNotPinned, err)
	}
	if err != nil {
		return "", "", false, fmt.Errorf("bundle: fetching %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	// A custom client may have followed a redirect somewhere unpinned.
	if resp.Request != nil && resp.Request.URL != nil {
		if err := u.checkPinned(resp.Request.URL, u.now()); err != nil {
			return "", "", false, fmt.Errorf("bundle: fetching %s: redirected: %w", req.URL.Redacted(), err)
		}
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return "", "", true, nil
	case http.StatusOK:
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return "", "", false, fmt.Errorf("bundle: fetching %s: unexpected status %s", req.URL.Redacted(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxSize+2))
	if err != nil {
		return "", "", false, fmt.Errorf("bundle: fetching %s: %w", req.URL.Redacted(), err)
	}
	body = trimSpace(body)
	if len(body) > MaxSize {
		return "", "", false, fmt.Errorf("%w: response from %s is larger than %d bytes", ErrMalformed, req.URL.Redacted(), MaxSize)
	}
	return string(body), resp.Header.Get("ETag"), false, nil
}

// accept applies a verified bundle unless the name or rollback floor
// refuses it, then caches it if it came from the network. applied reports
// whether it took effect (when err is a cache error).
func (u *Updater) accept(b *Bundle, source, etag string) (applied bool, err error) {
	if b.Name != u.Name {
		return false, fmt.Errorf("%w: got a bundle for %q, want %q", ErrWrongName, b.Name, u.Name)
	}
	if b.Version < u.MinVersion {
		return false, fmt.Errorf("%w: version %d is below version %d, the lowest this client accepts (MinVersion)", ErrRollback, b.Version, u.MinVersion)
	}
	u.mu.Lock()
	floor := u.floor
	u.mu.Unlock()
	if floor != nil {
		switch {
		case b.Version < floor.Version:
			return false, fmt.Errorf("%w: version %d is older than version %d, already accepted", ErrRollback, b.Version, floor.Version)
		case b.Version == floor.Version:
			if !sameContent(b, floor) {
				return false, fmt.Errorf("%w: version %d differs from the version %d already accepted (equivocation: the signer issued two bundles under one version)", ErrRollback, b.Version, floor.Version)
			}
			u.mu.Lock()
			inEffect := u.active != nil
			if inEffect && etag != "" {
				// The same bundle again: nothing changes, but remember
				// the server's current ETag for it.
				u.etag = etag
			}
			u.mu.Unlock()
			if inEffect {
				return false, nil
			}
			// The floor was set by a cached bundle that was not valid
			// then (a clock behind, say) and is now: apply it.
		}
	}
	eff, err := effectivePolicy(u.Embedded, b.Policy)
	if err != nil {
		return false, fmt.Errorf("%w: the bundle's policy does not combine with the embedded policy: %w", ErrMalformed, err)
	}
	u.Verifier.SetPolicy(eff)
	u.mu.Lock()
	u.active, u.source, u.floor, u.etag = b, source, b, etag
	u.st.CacheError = ""
	if source != SourceCache {
		u.st.Updates++
		u.cacheDirty = u.CacheFile != ""
	}
	u.mu.Unlock()
	u.logger().Info("bundle: applied", "name", b.Name, "version", b.Version, "kid", b.KeyID, "source", source)
	if source != SourceCache && u.CacheFile != "" {
		if err := u.writeCache(b.JWS); err != nil {
			u.logger().Error("bundle: could not write the cache; the rollback floor will not survive a restart", "file", u.CacheFile, "err", err)
			return true, fmt.Errorf("%w: %w", errCache, err)
		}
		u.mu.Lock()
		u.cacheDirty = false
		u.mu.Unlock()
	}
	return true, nil
}

// retryCache writes the floor bundle to the cache if an earlier write
// failed.
func (u *Updater) retryCache() {
	u.mu.Lock()
	dirty, floor := u.cacheDirty, u.floor
	u.mu.Unlock()
	if !dirty || floor == nil {
		return
	}
	if err := u.writeCache(floor.JWS); err != nil {
		return
	}
	u.mu.Lock()
	u.cacheDirty = false
	u.mu.Unlock()
}

// expire falls back to the embedded policy when the bundle in effect has
// expired. The caller holds opMu.
func (u *Updater) expire(now time.Time) {
	u.mu.Lock()
	b := u.active
	if b == nil || now.Before(b.ExpiresAt) {
		u.mu.Unlock()
		return
	}
	// Forget the ETag: a control plane still serving this bundle gets it
	// refused as expired, visibly in State, rather than answering 304.
	u.active, u.source, u.etag = nil, SourceEmbedded, ""
	u.mu.Unlock()
	u.Verifier.SetPolicy(u.Embedded)
	u.logger().Warn("bundle: the bundle in effect has expired; falling back to the embedded policy",
		"name", b.Name, "version", b.Version, "kid", b.KeyID)
}

// Run calls [Updater.Load], then [Updater.Update] every Interval until ctx
// is done, and returns ctx's error (or a configuration error at once).
// After a failure it retries sooner, after 5 s, then twice as long after
// every further failure, up to MaxBackoff, each wait varied by ±20% so
// that clients do not poll in step. When the bundle in effect expires
// between polls, Run falls back to the embedded policy at once.
func (u *Updater) Run(ctx context.Context) error {
	if err := u.Load(); err != nil {
		return err
	}
	for {
		err := u.Update(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := u.interval()
		if err != nil && !errors.Is(err, errCache) {
			delay = u.backoff(u.State().ConsecutiveFailures)
		}
		if err := u.wait(ctx, delay); err != nil {
			return err
		}
	}
}

// backoff returns the wait after n consecutive failures.
func (u *Updater) backoff(n int) time.Duration {
	maxWait := u.MaxBackoff
	if maxWait <= 0 {
		maxWait = u.interval()
	}
	d := initialBackoff
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(d, maxWait)
}

// wait sleeps for d, waking early to fall back to the embedded policy
// when the bundle in effect expires.
func (u *Updater) wait(ctx context.Context, d time.Duration) error {
	sleep := u.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	// The wait counts down what was slept rather than comparing with Now,
	// which may be a clock that does not advance by itself.
	for left := d; ; {
		now := u.now()
		u.opMu.Lock()
		u.expire(now)
		u.opMu.Unlock()
		if left <= 0 {
			return nil
		}
		w := left
		u.mu.Lock()
		if b := u.active; b != nil {
			w = min(w, b.ExpiresAt.Sub(now))
		}
		u.mu.Unlock()
		if err := sleep(ctx, w); err != nil {
			return err
		}
		left -= w
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// effectivePolicy is the embedded policy with each rule the bundle also
// names replaced by the bundle's, and the bundle's other rules added;
// the default report URI is the bundle's, else the embedded one, and so
// are the CT logs (the signed bundle's list, else the embedded list).
func effectivePolicy(embedded, b *pin.Policy) (*pin.Policy, error) {
	bd := b.Domains()
	byName := make(map[string]int, len(bd))
	for i, d := range bd {
		byName[d.Name] = i
	}
	used := make([]bool, len(bd))
	var out []pin.Domain
	for _, d := range embedded.Domains() {
		if i, ok := byName[d.Name]; ok {
			out = append(out, bd[i])
			used[i] = true
			continue
		}
		out = append(out, d)
	}
	for i, d := range bd {
		if !used[i] {
			out = append(out, d)
		}
	}
	uri := b.ReportURI()
	if uri == "" {
		uri = embedded.ReportURI()
	}
	logs := b.CTLogs()
	if len(logs) == 0 {
		logs = embedded.CTLogs()
	}
	return pin.NewPolicyWithCTLogs(uri, logs, out...)
}

// sameContent reports whether two bundles say the same thing, whatever
// their signatures (ECDSA signatures differ at every signing).
func sameContent(a, b *Bundle) bool {
	if a.Name != b.Name || a.Version != b.Version || !a.IssuedAt.Equal(b.IssuedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) {
		return false
	}
	pa, errA := a.Policy.MarshalJSON()
	pb, errB := b.Policy.MarshalJSON()
	return errA == nil && errB == nil && bytes.Equal(pa, pb)
}

// writeCache writes jws to CacheFile atomically: a temporary file in the
// same directory, mode 0600, synced, then renamed over the cache. A
// directory that readCache would refuse is refused here too: a cache
// there would not be read back.
func (u *Updater) writeCache(jws string) error {
	if err := checkCacheDir(u.CacheFile); err != nil {
		return err
	}
	dir := filepath.Dir(u.CacheFile)
	f, err := os.CreateTemp(dir, "."+filepath.Base(u.CacheFile)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(jws + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, u.CacheFile); err != nil {
		return err
	}
	// Make the rename itself durable; not every system can sync a
	// directory, and the file is in place either way.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func trimSpace(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// reason is what the log says of a refused bundle: the kind of refusal,
// without details that may quote the bundle's contents (those are in the
// returned error and [State].LastError).
func reason(err error) string {
	for _, s := range []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrRollback, ErrWrongName} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return err.Error()
}
