package mtls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// syncBuffer is a log destination safe for the Reloader's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bufferLogger() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// servedSerial makes a handshake with the server at addr and returns the
// serial of the certificate it served.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// Files replaced while serving: the next handshake gets the new
// certificate; a broken update is logged once and the current certificate
// kept.
func TestReloaderFiles(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ledger.pem"), filepath.Join(dir, "ledger.key")
	first := issue(t, w.ca, ledger, time.Hour, time.Now())
	writePair(t, certFile, keyFile, first)
	logger, logs := bufferLogger()
	r := started(t, &Reloader{CertFile: certFile, KeyFile: keyFile, PollInterval: 5 * time.Millisecond, Logger: logger})
	addr := lineServer(t, ServerConfig(r, w.roots))
	ccfg := ClientConfig(NewStatic(issue(t, w.ca, gateway, time.Hour, time.Now())), w.roots, ledger)

	if got := servedSerial(t, addr, ccfg); got != serial(&first) {
		t.Fatalf("served %s, want the first certificate %s", got, serial(&first))
	}
	second := issue(t, w.ca, ledger, time.Hour, time.Now())
	writePair(t, certFile, keyFile, second)
	waitFor(t, "the reload", func() bool { return serial(r.Certificate()) == serial(&second) })
	if got := servedSerial(t, addr, ccfg); got != serial(&second) {
		t.Fatalf("served %s after the reload, want %s", got, serial(&second))
	}

	// A certificate whose key is not in the key file: refused. (writePair
	// replaces the two files one after the other, so a poll in between
	// may have warned already: count from here.)
	mark := len(logs.String())
	third := issue(t, w.ca, ledger, time.Hour, time.Now())
	tmp := filepath.Join(dir, "new.pem")
	if err := os.WriteFile(tmp, pemChain(third), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, certFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the warning", func() bool { return strings.Contains(logs.String()[mark:], "do not load") })
	time.Sleep(50 * time.Millisecond) // ten more polls: no more warnings
	if n := strings.Count(logs.String()[mark:], "do not load"); n != 1 {
		t.Errorf("%d warnings for one broken update, want 1:\n%s", n, logs.String()[mark:])
	}
	if got := servedSerial(t, addr, ccfg); got != serial(&second) {
		t.Fatalf("served %s during a broken update, want the current %s", got, serial(&second))
	}
	// Completed: loaded.
	writePair(t, certFile, keyFile, third)
	waitFor(t, "the reload", func() bool { return serial(r.Certificate()) == serial(&third) })

	// An expired certificate is not loaded either.
	expired := issue(t, w.ca, ledger, time.Hour, time.Now().Add(-2*time.Hour))
	writePair(t, certFile, keyFile, expired)
	waitFor(t, "the warning", func() bool { return strings.Contains(logs.String(), "certificate expired at") })
	if got := servedSerial(t, addr, ccfg); got != serial(&third) {
		t.Fatalf("served %s, want the current %s", got, serial(&third))
	}
}

func pemChain(c tls.Certificate) []byte {
	var b bytes.Buffer
	for _, der := range c.Certificate {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

func TestRenewAt(t *testing.T) {
	start := t0
	leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(3 * time.Hour)}
	for _, tc := range []struct {
		j    float64
		want time.Duration
	}{{0, 108 * time.Minute}, {0.5, 120 * time.Minute}, {1, 132 * time.Minute}} {
		if got := renewAt(leaf, time.Time{}, tc.j).Sub(start); got.Round(time.Second) != tc.want {
			t.Errorf("jitter %v: renew after %v, want %v", tc.j, got, tc.want)
		}
	}
	// Random jitter stays within 60 % and 73.3 % of the lifetime.
	lo, hi := 108*time.Minute, 132*time.Minute
	for range 1000 {
		var r Reloader
		if d := renewAt(leaf, time.Time{}, r.random()).Sub(start); d < lo || d >= hi {
			t.Fatalf("renew after %v, outside [%v, %v)", d, lo, hi)
		}
	}
	// A backdated certificate just obtained counts from when it was
	// obtained, or a 300 ms certificate backdated a minute would be due at
	// once; a certificate read from a file counts from NotBefore.
	short := &x509.Certificate{NotBefore: start.Add(-time.Minute), NotAfter: start.Add(300 * time.Millisecond)}
	if got := renewAt(short, start, 0.5).Sub(start); got != 200*time.Millisecond {
		t.Errorf("short-lived: renew after %v, want 200ms", got)
	}
	if got := renewAt(short, time.Time{}, 0.5); !got.Before(start) {
		t.Errorf("from a file: renew at %v, want before %v (due now)", got, start)
	}
}

func TestRetryWait(t *testing.T) {
	leaf := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(24 * time.Hour)}
	now := t0.Add(16 * time.Hour)
	var got []time.Duration
	for n := 1; n <= 9; n++ {
		got = append(got, retryWait(leaf, now, n, 0.5))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", got, want)
		}
	}
	// Jitter: ±10 %.
	if lo, hi := retryWait(leaf, now, 3, 0), retryWait(leaf, now, 3, 1); lo != 3600*time.Millisecond || hi != 4400*time.Millisecond {
		t.Errorf("jitter bounds %v %v", lo, hi)
	}
	// Near expiry: a quarter of the time left, at least minRetry.
	if d := retryWait(leaf, leaf.NotAfter.Add(-20*time.Second), 9, 0.5); d != 5*time.Second {
		t.Errorf("20 s before expiry: %v, want 5s", d)
	}
	if d := retryWait(leaf, leaf.NotAfter.Add(-time.Millisecond), 9, 0.5); d != minRetry {
		t.Errorf("1 ms before expiry: %v, want %v", d, minRetry)
	}
	// After expiry: every minute.
	if d := retryWait(leaf, leaf.NotAfter.Add(time.Hour), 30, 0.5); d != time.Minute {
		t.Errorf("after expiry: %v", d)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// fakeSleep hands each wait the Reloader asks for to the test, and
// returns when the test releases it.
type fakeSleep struct {
	req     chan time.Duration
	release chan struct{}
}

func newFakeSleep() *fakeSleep {
	return &fakeSleep{req: make(chan time.Duration), release: make(chan struct{})}
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	select {
	case f.req <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-f.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeSleep) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-f.req:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the Reloader asked for no wait")
		return 0
	}
}

// The renewal schedule with an injected clock: two thirds of the lifetime
// (with the jitter at its middle, bounds checked in TestRenewAt), retries
// with backoff on failure, down to a quarter of the time left near expiry,
// every minute after it.
func TestReloaderRenewSchedule(t *testing.T) {
	clock := &fakeClock{t: t0}
	ca := newCA(t, td, t0.Add(-24*time.Hour))
	var fail atomic.Bool
	var calls atomic.Int32
	var lastCurrent atomic.Pointer[tls.Certificate]
	renew := func(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
		calls.Add(1)
		lastCurrent.Store(cur)
		if fail.Load() {
			return nil, errors.New("control plane unreachable")
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		chain, err := ca.Issue(ledger, nil, 3*time.Hour, k.Public(), clock.Now())
		if err != nil {
			return nil, err
		}
		c := tlsCert(chain, k)
		return &c, nil
	}
	logger, logs := bufferLogger()
	fs := newFakeSleep()
	r := &Reloader{Renew: renew, Now: clock.Now, Logger: logger, sleep: fs.sleep, jitter: func() float64 { return 0.5 }}
	started(t, r)
	first := r.Certificate()
	if calls.Load() != 1 || lastCurrent.Load() != nil {
		t.Fatalf("first certificate: %d calls, current %v; want Renew(ctx, nil)", calls.Load(), lastCurrent.Load())
	}
	if d := fs.next(t); d != 2*time.Hour {
		t.Fatalf("first wait %v, want 2h (two thirds of 3h)", d)
	}

	clock.Set(t0.Add(2 * time.Hour))
	fs.release <- struct{}{}
	if d := fs.next(t); d != 2*time.Hour {
		t.Fatalf("wait after renewal %v, want 2h", d)
	}
	second := r.Certificate()
	if lastCurrent.Load() != first || serial(second) == serial(first) || !second.Leaf.NotAfter.Equal(t0.Add(5*time.Hour)) {
		t.Fatalf("renewal: called with %p (first %p), got %s expiring %v", lastCurrent.Load(), first, serial(second), second.Leaf.NotAfter)
	}

	// Failures: backoff from 1 s, doubling.
	fail.Store(true)
	clock.Set(t0.Add(4 * time.Hour))
	var waits []time.Duration
	for range 4 {
		fs.release <- struct{}{}
		waits = append(waits, fs.next(t))
	}
	if fmt.Sprint(waits) != "[1s 2s 4s 8s]" {
		t.Fatalf("retry waits %v, want [1s 2s 4s 8s]", waits)
	}
	if r.Certificate() != second {
		t.Fatal("a failed renewal replaced the certificate")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "control plane unreachable") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	// Near expiry (40 s left): a quarter of it.
	clock.Set(second.Leaf.NotAfter.Add(-40 * time.Second))
	fs.release <- struct{}{}
	if d := fs.next(t); d != 10*time.Second {
		t.Fatalf("40 s before expiry: wait %v, want 10s", d)
	}
	// Expired: an error, and the backoff goes on, up to a minute.
	clock.Set(second.Leaf.NotAfter.Add(time.Second))
	waits = nil
	for range 2 {
		fs.release <- struct{}{}
		waits = append(waits, fs.next(t))
	}
	if fmt.Sprint(waits) != "[32s 1m0s]" {
		t.Fatalf("retry waits after expiry %v, want [32s 1m0s]", waits)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "has expired") {
		t.Errorf("no error logged after expiry:\n%s", logs)
	}
	// Recovery: back to the normal schedule.
	fail.Store(false)
	fs.release <- struct{}{}
	if d := fs.next(t); d != 2*time.Hour {
		t.Fatalf("after recovery: wait %v, want 2h", d)
	}
	if r.Certificate() == second {
		t.Fatal("recovery did not install the new certificate")
	}
}

func TestReloaderStart(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	good := issue(t, w.ca, ledger, time.Hour, time.Now())
	other := issue(t, w.ca, ledger, time.Hour, time.Now())
	mismatched := good
	mismatched.PrivateKey = other.PrivateKey
	expired := issue(t, w.ca, ledger, time.Hour, time.Now().Add(-2*time.Hour))
	renewing := func(c *tls.Certificate, err error) func(context.Context, *tls.Certificate) (*tls.Certificate, error) {
		return func(context.Context, *tls.Certificate) (*tls.Certificate, error) { return c, err }
	}
	for _, tc := range []struct {
		name string
		r    *Reloader
		want string
	}{
		{"nothing", &Reloader{}, "needs CertFile and KeyFile, or Renew"},
		{"cert file only", &Reloader{CertFile: certFile}, "needs both"},
		{"missing files", &Reloader{CertFile: certFile, KeyFile: keyFile}, "no such file"},
		{"renew fails", &Reloader{Renew: renewing(nil, errors.New("boom"))}, "first certificate: boom"},
		{"renew returns nil", &Reloader{Renew: renewing(nil, nil)}, "no certificate"},
		{"renew returns a mismatched key", &Reloader{Renew: renewing(&mismatched, nil)}, "does not match"},
		{"renew returns an expired certificate", &Reloader{Renew: renewing(&expired, nil)}, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Logger = discard
			if _, err := tc.r.GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
				t.Errorf("before Start: %v", err)
			}
			err := tc.r.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mtls: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	writePair(t, certFile, keyFile, expired)
	if err := (&Reloader{CertFile: certFile, KeyFile: keyFile, Logger: discard}).Start(t.Context()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired file: %v", err)
	}
	writePair(t, certFile, keyFile, good)
	r := started(t, &Reloader{CertFile: certFile, KeyFile: keyFile, Logger: discard})
	if err := r.Start(t.Context()); err == nil {
		t.Error("started twice")
	}
	if c, err := r.GetClientCertificate(nil); err != nil || serial(c) != serial(&good) {
		t.Errorf("GetClientCertificate = %v, %v", c, err)
	}
	// NewStatic parses the leaf and ignores Start.
	s := NewStatic(tls.Certificate{Certificate: good.Certificate, PrivateKey: good.PrivateKey})
	if err := s.Start(t.Context()); err != nil || s.Certificate().Leaf == nil || serial(s.Certificate()) != serial(&good) {
		t.Errorf("static: %v %v", err, s.Certificate().Leaf)
	}
}

// Certificates renewed while clients hammer the server: no request fails,
// and the clients see several server certificates. Both sides renew.
//
// X.509 validity has a resolution of one second, so a 300 ms certificate
// cannot be made: "clock 10x" runs the Reloaders on a clock ten times
// faster than real time, with 3 s certificates renewed every ~200 ms of
// real time (its certificates stay valid in real time: they are backdated
// a minute, more than the clock gets ahead). "real clock" uses 2 s
// certificates on the real clock, so that crypto/tls checks the very
// expiry the Reloader renews ahead of.
func TestRenewalWhileServing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		speed    int
		ttl      time.Duration
		run      time.Duration
		minCerts int
	}{
		{"clock 10x", 10, 3 * time.Second, 2 * time.Second, 3},
		{"real clock", 1, 2 * time.Second, 2500 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			start := time.Now()
			now := func() time.Time { return start.Add(time.Duration(tc.speed) * time.Since(start)) }
			sleep := func(ctx context.Context, d time.Duration) error {
				tm := time.NewTimer(d / time.Duration(tc.speed))
				defer tm.Stop()
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-tm.C:
					return nil
				}
			}
			var issued atomic.Int32
			renewing := func(id spiffeid.ID) func(context.Context, *tls.Certificate) (*tls.Certificate, error) {
				return func(context.Context, *tls.Certificate) (*tls.Certificate, error) {
					k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
					if err != nil {
						return nil, err
					}
					chain, err := w.ca.Issue(id, nil, tc.ttl, k.Public(), now())
					if err != nil {
						return nil, err
					}
					issued.Add(1)
					c := tlsCert(chain, k)
					return &c, nil
				}
			}
			srv := started(t, &Reloader{Renew: renewing(ledger), Now: now, Logger: discard, sleep: sleep})
			cli := started(t, &Reloader{Renew: renewing(gateway), Now: now, Logger: discard, sleep: sleep})
			addr := serveTLS(t, ServerConfig(srv, w.roots, gateway), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}))

			var (
				wg       sync.WaitGroup
				requests atomic.Int64
				mu       sync.Mutex
				failed   int
				served   = map[string]bool{}
				firstErr error
			)
			deadline := time.Now().Add(tc.run)
			for i := range 8 {
				// Half the clients make a handshake per request, half
				// reuse connections across renewals.
				tr := &http.Transport{TLSClientConfig: ClientConfig(cli, w.roots, ledger), DisableKeepAlives: i%2 == 0}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				wg.Go(func() {
					for time.Now().Before(deadline) {
						resp, err := c.Get("https://" + addr + "/")
						if err == nil {
							_, err = io.ReadAll(resp.Body)
							resp.Body.Close()
							if err == nil && resp.StatusCode != http.StatusOK {
								err = errors.New(resp.Status)
							}
						}
						requests.Add(1)
						mu.Lock()
						if err != nil {
							failed++
							if firstErr == nil {
								firstErr = err
							}
						} else {
							served[resp.TLS.PeerCertificates[0].SerialNumber.String()] = true
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			t.Logf("%d requests, %d certificates issued, %d server certificates seen", requests.Load(), issued.Load(), len(served))
			if failed > 0 {
				t.Fatalf("%d of %d requests failed; first: %v", failed, requests.Load(), firstErr)
			}
			if len(served) < tc.minCerts {
				t.Fatalf("clients saw %d server certificates, want at least %d", len(served), tc.minCerts)
			}
		})
	}
}
