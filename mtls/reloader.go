package mtls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoCertificate is returned by the Get methods of a [Reloader] that has
// no certificate yet: one that was not started.
var ErrNoCertificate = newError("no certificate yet: the Reloader has not been started")

// Renewal timing.
const (
	// A certificate is renewed at two thirds of its lifetime, give or take
	// a tenth of that (so at 60 to 73 % of it): instances that started
	// together do not all renew at once, and a third of the lifetime is
	// left for retries.
	renewFraction = 2.0 / 3
	renewJitter   = 0.1
	// Failed renewals are retried after firstRetry, doubling up to
	// maxRetry, but at least four times before expiry: never more than a
	// quarter of the time left (and not under minRetry). After expiry the
	// backoff goes on up to maxRetry.
	firstRetry = time.Second
	maxRetry   = time.Minute
	minRetry   = 10 * time.Millisecond
	// DefaultPollInterval is how often a Reloader checks its files.
	DefaultPollInterval = time.Second
)

// Reloader holds a certificate that changes while it serves, and hands it
// to crypto/tls through [Reloader.GetCertificate] and
// [Reloader.GetClientCertificate]. The certificate is swapped atomically:
// each handshake uses one complete certificate, the old or the new.
//
// A Reloader gets its certificates one of two ways:
//
//   - Files: CertFile and KeyFile are read at [Reloader.Start] and again
//     whenever either changes (its modification time or size, checked every
//     PollInterval). A pair that does not load — a half-written update, a
//     key that does not match, an expired certificate — is logged and the
//     current certificate kept; it is retried when the files change again.
//     Replace files by renaming new ones into place.
//   - Renewal: Renew is called at two thirds of the current certificate's
//     lifetime, with ±10 % jitter, and retried with backoff when it fails
//     (at least four times before expiry; after expiry, at least every
//     minute, in case Renew has other means than the expired certificate). The
//     first certificate comes from CertFile and KeyFile if set (they are
//     then not watched), else from Renew(ctx, nil).
//
// Set the exported fields before Start; they must not change afterwards. A
// Reloader must not be copied after first use. Its methods are safe for
// concurrent use. The background work runs from Start until ctx ends or
// [Reloader.Close], which waits for it to end.
type Reloader struct {
	// CertFile is a PEM file of the certificate chain, leaf first; KeyFile
	// holds its private key. Both or neither: if empty, Renew gives the
	// first certificate.
	CertFile, KeyFile string
	// PollInterval is how often the files are checked for changes. If 0,
	// DefaultPollInterval.
	PollInterval time.Duration
	// Renew, if set, obtains a new certificate. current is the certificate
	// in use, or nil for the first one. The result must be valid now and
	// have a private key matching its leaf; it is refused otherwise. ctx
	// is the one given to Start, which Close also cancels. See [Renewer]
	// for renewal over HTTP by the current certificate. If nil, the
	// certificate comes from the files, which are watched.
	Renew func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error)
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Logger receives a line per certificate change and warnings for files
	// that do not load and renewals that fail. If nil, slog.Default().
	Logger *slog.Logger

	cert    atomic.Pointer[tls.Certificate]
	static  bool
	started atomic.Bool

	life   sync.Mutex // guards cancel, done and closed
	cancel context.CancelFunc
	done   chan struct{} // closed when the background loop has ended
	closed bool

	// Test hooks: how to wait, and the jitter in [0, 1).
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64

	// Owned by the background loop once started.
	loaded, failed fileState
}

// NewStatic returns a Reloader that always serves cert: for tests, and for
// services whose certificate changes only with a restart. Start does
// nothing on it. The leaf is parsed if cert.Leaf is nil.
func NewStatic(cert tls.Certificate) *Reloader {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	r := &Reloader{static: true}
	r.cert.Store(&cert)
	return r
}

// Start loads the first certificate and returns an error if there is
// none. It then watches the files or renews the certificate in the
// background until ctx is done or Close. Start after Close is an error.
func (r *Reloader) Start(ctx context.Context) error {
	if r.static {
		return nil
	}
	if !r.started.CompareAndSwap(false, true) {
		return newError("Reloader started twice")
	}
	r.life.Lock()
	closed := r.closed
	r.life.Unlock()
	if closed {
		return newError("Reloader started after Close")
	}
	ctx, cancel := context.WithCancel(ctx)
	var (
		first    *tls.Certificate
		obtained time.Time // when Renew gave the certificate; zero for files
		err      error
	)
	switch {
	case (r.CertFile == "") != (r.KeyFile == ""):
		err = newError("Reloader needs both CertFile and KeyFile")
	case r.CertFile != "":
		st := r.stat()
		if first, err = r.loadFiles(); err == nil {
			r.loaded = st
		}
	case r.Renew != nil:
		if first, err = r.Renew(ctx, nil); err == nil {
			first, err = r.check(first)
		}
		if err != nil {
			err = errorf("first certificate: %w", err)
		}
		obtained = r.now()
	default:
		err = newError("Reloader needs CertFile and KeyFile, or Renew")
	}
	if err != nil {
		cancel()
		r.started.Store(false)
		return err
	}
	r.cert.Store(first)
	r.logger().Info("mtls: certificate loaded", certAttrs(first)...)
	done := make(chan struct{})
	r.life.Lock()
	if r.closed { // Close came during the first load
		r.life.Unlock()
		cancel()
		return newError("Reloader closed while starting")
	}
	r.cancel, r.done = cancel, done
	r.life.Unlock()
	go func() {
		defer close(done)
		if r.Renew != nil {
			r.renewLoop(ctx, obtained)
		} else {
			r.pollLoop(ctx)
		}
	}()
	return nil
}

// Close stops the background work Start began and waits for it to end;
// the current certificate is still served. It may be called twice, and
// on a Reloader that was not started (or from [NewStatic]), where it does
// nothing.
func (r *Reloader) Close() error {
	r.life.Lock()
	r.closed = true
	cancel, done := r.cancel, r.done
	r.life.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Certificate returns the current certificate, nil before Start. Do not
// modify it.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// GetCertificate returns the current certificate, for
// tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.cert.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// GetClientCertificate returns the current certificate, for
// tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := r.cert.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

func (r *Reloader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reloader) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Reloader) wait(ctx context.Context, d time.Duration) error {
	if r.sleep != nil {
		return r.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Reloader) random() float64 {
	if r.jitter != nil {
		return r.jitter()
	}
	return rand.Float64()
}

// renewAt is when a certificate is due for renewal: at two thirds of its
// lifetime, scaled by 0.9 to 1.1 as j goes from 0 to 1. The lifetime counts
// from NotBefore, or from obtained if later: issuers backdate NotBefore
// for clock skew (Issue by a minute), which would otherwise make a
// certificate of a few minutes due at once. A certificate from a file
// (obtained zero) counts from NotBefore, so that an old one read at start
// is renewed promptly.
func renewAt(leaf *x509.Certificate, obtained time.Time, j float64) time.Time {
	start := leaf.NotBefore
	if obtained.After(start) {
		start = obtained
	}
	life := leaf.NotAfter.Sub(start)
	if life <= 0 {
		return start
	}
	f := renewFraction * (1 - renewJitter + 2*renewJitter*j)
	return start.Add(time.Duration(float64(life) * f))
}

// retryWait is the wait before retry number n (1, 2, ...) of a failed
// renewal of leaf at now.
func retryWait(leaf *x509.Certificate, now time.Time, n int, j float64) time.Duration {
	d := maxRetry
	if n <= 7 { // 1s << 6 = 64s > maxRetry
		d = min(firstRetry<<(n-1), maxRetry)
	}
	d = time.Duration(float64(d) * (1 - renewJitter + 2*renewJitter*j))
	if left := leaf.NotAfter.Sub(now); left > 0 {
		d = max(min(d, left/4), minRetry)
	}
	return d
}

func (r *Reloader) renewLoop(ctx context.Context, obtained time.Time) {
	failures := 0
	for {
		cur := r.cert.Load()
		now := r.now()
		var d time.Duration
		if failures == 0 {
			d = renewAt(cur.Leaf, obtained, r.random()).Sub(now)
		} else {
			d = retryWait(cur.Leaf, now, failures, r.random())
		}
		if err := r.wait(ctx, max(d, 0)); err != nil {
			return
		}
		next, err := r.Renew(ctx, cur)
		if err == nil {
			next, err = r.check(next)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			level, msg := slog.LevelWarn, "mtls: certificate renewal failed; retrying"
			if !r.now().Before(cur.Leaf.NotAfter) {
				level, msg = slog.LevelError, "mtls: certificate renewal failed and the certificate has expired; peers refuse it"
			}
			r.logger().Log(ctx, level, msg, append(certAttrs(cur), "attempt", failures, "err", err)...)
			continue
		}
		r.cert.Store(next)
		obtained, failures = r.now(), 0
		r.logger().Info("mtls: certificate renewed", certAttrs(next)...)
	}
}

// check refuses a certificate that cannot serve: no leaf, a key that does
// not match, expired. It returns a copy with Leaf set.
func (r *Reloader) check(c *tls.Certificate) (*tls.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, newError("no certificate")
	}
	cc := *c
	if cc.Leaf == nil {
		leaf, err := x509.ParseCertificate(cc.Certificate[0])
		if err != nil {
			return nil, errorf("%w", err)
		}
		cc.Leaf = leaf
	}
	signer, ok := cc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, newError("certificate without a usable private key")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cc.Leaf.PublicKey) {
		return nil, newError("the private key does not match the certificate")
	}
	if now := r.now(); !now.Before(cc.Leaf.NotAfter) {
		return nil, errorf("certificate expired at %s", cc.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cc, nil
}

// fileState is what tells that the files changed.
type fileState struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
	ok                bool // both files were there
}

func (r *Reloader) stat() fileState {
	cf, err1 := os.Stat(r.CertFile)
	kf, err2 := os.Stat(r.KeyFile)
	if err1 != nil || err2 != nil {
		return fileState{}
	}
	return fileState{cf.ModTime(), kf.ModTime(), cf.Size(), kf.Size(), true}
}

func (r *Reloader) loadFiles() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
	if err != nil {
		return nil, errorf("%s, %s: %w", r.CertFile, r.KeyFile, err)
	}
	cc, err := r.check(&c)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, r.CertFile)
	}
	return cc, nil
}

func (r *Reloader) pollLoop(ctx context.Context) {
	interval := r.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	for {
		if err := r.wait(ctx, interval); err != nil {
			return
		}
		st := r.stat()
		// Stat before reading: a change made while reading shows as a
		// different state at the next poll.
		if st == r.loaded || st == r.failed {
			continue
		}
		c, err := r.loadFiles()
		if err != nil {
			r.failed = st
			r.logger().Warn("mtls: certificate files changed but do not load; keeping the current certificate",
				append(certAttrs(r.cert.Load()), "err", err)...)
			continue
		}
		r.loaded, r.failed = st, fileState{}
		r.cert.Store(c)
		r.logger().Info("mtls: certificate reloaded", certAttrs(c)...)
	}
}

// certAttrs describes a certificate for the log.
func certAttrs(c *tls.Certificate) []any {
	if c == nil || c.Leaf == nil {
		return nil
	}
	attrs := []any{"serial", fmt.Sprintf("%x", c.Leaf.SerialNumber), "not_after", c.Leaf.NotAfter.UTC()}
	if id, err := IDOf(c.Leaf); err == nil {
		attrs = append(attrs, "id", id.String())
	} else if len(c.Leaf.DNSNames) > 0 {
		attrs = append(attrs, "dns", c.Leaf.DNSNames[0])
	}
	return attrs
}
