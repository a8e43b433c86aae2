package bundle_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// The bundle in effect replaces the embedded rules it names and adds its
// others; it cannot remove an embedded rule by leaving it out.
func TestEffectivePolicy(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, v := w.updater(t, cp, newClock(), "")
	const reports = "https://reports.example.net/pins"
	p := mustPolicy(t, reports,
		pin.Domain{Name: apiHost, Pins: []pin.Pin{w.pinB, w.backupPin}},
		pin.Domain{Name: payHost, Pins: []pin.Pin{w.pinB, w.backupPin}, Mode: pin.ReportOnly},
	)
	cp.set(signWith(t, w.key, "mobile", 1, t0, t0.Add(24*time.Hour), p))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	eff := v.Policy()
	if got := eff.Match(cpHost); got == nil || !slices.Equal(got.Pins, w.embedded.Match(cpHost).Pins) {
		t.Errorf("control plane rule = %+v, want the embedded one", got)
	}
	if got := eff.Match(apiHost); got == nil || !slices.Equal(got.Pins, []pin.Pin{w.pinB, w.backupPin}) || got.ReportURI != reports {
		t.Errorf("API rule = %+v, want the bundle's", got)
	}
	if got := eff.Match(payHost); got == nil || got.Mode != pin.ReportOnly {
		t.Errorf("pay rule = %+v, want the bundle's", got)
	}
	if eff.ReportURI() != reports {
		t.Errorf("default report URI = %q, want the bundle's", eff.ReportURI())
	}

	// Version 2 leaves the API out: it stays pinned, by the embedded rule.
	p2 := mustPolicy(t, "", pin.Domain{Name: payHost, Pins: []pin.Pin{w.pinB, w.backupPin}})
	cp.set(signWith(t, w.key, "mobile", 2, t0, t0.Add(24*time.Hour), p2))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := v.Policy().Match(apiHost); got == nil || !slices.Equal(got.Pins, []pin.Pin{w.apiPin, w.backupPin}) {
		t.Errorf("API rule after a bundle without it = %+v, want the embedded one", got)
	}
}

func TestControlPlanePinning(t *testing.T) {
	w := newWorld(t)
	t.Run("pinned", func(t *testing.T) {
		cp := newControlPlane(t, w.cpLeaf.TLS())
		u, v := w.updater(t, cp, newClock(), "")
		cp.set(w.sign(t, 1))
		if err := u.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := u.State(); st.Version != 1 || st.Source != bundle.SourceNetwork || st.KeyID != kid(t, w.key) || v.Policy() == w.embedded {
			t.Errorf("state = %+v", st)
		}
	})
	t.Run("certificate the embedded policy does not pin", func(t *testing.T) {
		// A compromised, trusted CA's certificate for the control plane.
		cp := newControlPlane(t, w.rogueCPLeaf.TLS())
		u, v := w.updater(t, cp, newClock(), "")
		cp.set(w.sign(t, 1))
		err := u.Update(context.Background())
		var mm *pin.MismatchError
		if !errors.As(err, &mm) || mm.Host != cpHost {
			t.Fatalf("err = %v, want a pin mismatch for %s", err, cpHost)
		}
		if v.Policy() != w.embedded || len(cp.requests()) != 0 {
			t.Error("the bundle was fetched or applied")
		}
		if st := u.State(); st.ConsecutiveFailures != 1 || st.Rejected != 0 {
			t.Errorf("state = %+v", st)
		}
	})
	noRule := mustPolicy(t, "", pin.Domain{Name: apiHost, Pins: []pin.Pin{w.apiPin, w.backupPin}})
	reportOnly := mustPolicy(t, "",
		pin.Domain{Name: cpHost, Mode: pin.ReportOnly, Pins: []pin.Pin{pin.FromCertificate(w.cpLeaf.Cert), w.backupPin}},
		pin.Domain{Name: apiHost, Pins: []pin.Pin{w.apiPin, w.backupPin}})
	for name, embedded := range map[string]*pin.Policy{"no rule": noRule, "report-only rule": reportOnly} {
		t.Run(name, func(t *testing.T) {
			cp := newControlPlane(t, w.cpLeaf.TLS())
			cp.set(w.sign(t, 1))
			for _, client := range []bool{true, false} {
				v := pin.NewVerifier(embedded)
				u := &bundle.Updater{URL: bundleURL, Name: "mobile", Keys: w.keys, Embedded: embedded, Verifier: v, Now: newClock().Now}
				if client {
					u.Client = cp.client(t, w, embedded)
				}
				if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrControlPlaneNotPinned) {
					t.Errorf("Update: err = %v, want ErrControlPlaneNotPinned", err)
				}
				if err := u.Run(context.Background()); !errors.Is(err, bundle.ErrControlPlaneNotPinned) {
					t.Errorf("Run: err = %v, want ErrControlPlaneNotPinned", err)
				}
				if v.Policy() != embedded {
					t.Error("policy changed")
				}
			}
			if n := len(cp.requests()); n != 0 {
				t.Errorf("%d requests reached the control plane", n)
			}
		})
	}
	t.Run("redirect to an unpinned host", func(t *testing.T) {
		cp := newControlPlane(t, w.cpLeaf.TLS())
		cp.set(w.sign(t, 1))
		cp.mu.Lock()
		cp.redirect = "https://" + mirrorHost + "/v1/bundles/mobile"
		cp.mu.Unlock()
		u, v := w.updater(t, cp, newClock(), "")
		if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrControlPlaneNotPinned) {
			t.Fatalf("err = %v, want ErrControlPlaneNotPinned", err)
		}
		if v.Policy() != w.embedded {
			t.Error("policy changed")
		}
	})
}

func TestUpdaterConfiguration(t *testing.T) {
	w := newWorld(t)
	good := func() *bundle.Updater {
		return &bundle.Updater{URL: bundleURL, Name: "mobile", Keys: w.keys, Embedded: w.embedded, Verifier: pin.NewVerifier(w.embedded)}
	}
	for _, tc := range []struct {
		name string
		edit func(u *bundle.Updater)
		want string
	}{
		{"no URL", func(u *bundle.Updater) { u.URL = "" }, "URL is required"},
		{"http URL", func(u *bundle.Updater) { u.URL = "http://" + cpHost + "/v1/bundles/mobile" }, "want an https URL"},
		{"URL with credentials", func(u *bundle.Updater) { u.URL = "https://a:b@" + cpHost + "/" }, "without credentials"},
		{"no name", func(u *bundle.Updater) { u.Name = "" }, "Name is required"},
		{"bad name", func(u *bundle.Updater) { u.Name = "Mobile" }, "Name"},
		{"no keys", func(u *bundle.Updater) { u.Keys = nil }, "Keys is required"},
		{"empty keys", func(u *bundle.Updater) { u.Keys = new(bundle.Keys) }, "Keys is required"},
		{"no embedded policy", func(u *bundle.Updater) { u.Embedded = nil }, "Embedded is required"},
		{"no verifier", func(u *bundle.Updater) { u.Verifier = nil }, "Verifier is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := good()
			tc.edit(u)
			for _, err := range []error{u.Check(), u.Load(), u.Update(context.Background()), u.Run(context.Background())} {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "bundle: ") {
					t.Errorf("err = %v, want one containing %q", err, tc.want)
				}
			}
		})
	}
	if err := good().Check(); err != nil {
		t.Errorf("Check of a good Updater: %v", err)
	}
}

func TestCache(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	dir := t.TempDir()
	cache := filepath.Join(dir, "mobile.jws")
	// A leftover file with loose permissions is replaced, not rewritten.
	if err := os.WriteFile(cache, []byte("not a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	u, _ := w.updater(t, cp, clk, cache)
	v7 := w.sign(t, 7)
	cp.set(v7)
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cache)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode = %v, want 0600", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(cache); string(data) != v7+"\n" {
		t.Errorf("cache holds %.40q..., want the bundle", data)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d files, want the cache alone (no temporary file left)", len(ents))
	}

	t.Run("restart applies the cache before any network access", func(t *testing.T) {
		cp.setDown(true)
		defer cp.setDown(false)
		u2, v2 := w.updater(t, cp, clk, cache)
		n := len(cp.requests())
		if err := u2.Load(); err != nil {
			t.Fatal(err)
		}
		st := u2.State()
		if st.Source != bundle.SourceCache || st.Version != 7 || st.Fetches != 0 || len(cp.requests()) != n {
			t.Errorf("state after Load = %+v", st)
		}
		if v2.Policy().Match(payHost) == nil {
			t.Error("the cached bundle's policy is not in effect")
		}
		// The control plane is down: the cached bundle stays.
		if err := u2.Update(context.Background()); err == nil {
			t.Fatal("Update succeeded with the control plane down")
		}
		if st := u2.State(); st.Source != bundle.SourceCache || st.Version != 7 || st.ConsecutiveFailures != 1 {
			t.Errorf("state = %+v", st)
		}
	})

	t.Run("rollback floor survives restart", func(t *testing.T) {
		cp.set(w.sign(t, 6))
		defer cp.set(v7)
		withLoad, v := w.updater(t, cp, clk, cache)
		if err := withLoad.Load(); err != nil {
			t.Fatal(err)
		}
		before := v.Policy()
		if err := withLoad.Update(context.Background()); !errors.Is(err, bundle.ErrRollback) {
			t.Errorf("after Load: err = %v, want ErrRollback", err)
		}
		if v.Policy() != before {
			t.Error("policy changed")
		}
		// Update reads the cache itself when Load was not called.
		withoutLoad, _ := w.updater(t, cp, clk, cache)
		if err := withoutLoad.Update(context.Background()); !errors.Is(err, bundle.ErrRollback) {
			t.Errorf("without Load: err = %v, want ErrRollback", err)
		}
	})

	t.Run("expired cache still sets the floor", func(t *testing.T) {
		later := &clock{t: t0.Add(31 * 24 * time.Hour)}
		cp.set(signWith(t, w.key, "mobile", 6, later.Now().Add(-time.Hour), later.Now().Add(time.Hour), w.bundlePolicy(t)))
		defer cp.set(v7)
		u3, v3 := w.updater(t, cp, later, cache)
		if err := u3.Load(); err != nil {
			t.Fatal(err)
		}
		if st := u3.State(); st.Source != bundle.SourceEmbedded || v3.Policy() != w.embedded {
			t.Errorf("an expired cache was applied: %+v", st)
		}
		if err := u3.Update(context.Background()); !errors.Is(err, bundle.ErrRollback) {
			t.Errorf("err = %v, want ErrRollback", err)
		}
	})

	t.Run("cache not yet valid applies once the clock catches up", func(t *testing.T) {
		behind := &clock{t: t0.Add(-time.Hour)}
		u4, _ := w.updater(t, cp, behind, cache)
		if err := u4.Load(); err != nil {
			t.Fatal(err)
		}
		if st := u4.State(); st.Source != bundle.SourceEmbedded {
			t.Errorf("state = %+v", st)
		}
		behind.Advance(2 * time.Hour)
		if err := u4.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := u4.State(); st.Source != bundle.SourceNetwork || st.Version != 7 {
			t.Errorf("state = %+v", st)
		}
	})

	t.Run("corrupt cache falls back to the embedded policy", func(t *testing.T) {
		data, _ := os.ReadFile(cache)
		h, p, s := parts(strings.TrimSpace(string(data)))
		bad := h + "." + p[:20] + flip(p[20]) + p[21:] + "." + s
		corrupt := filepath.Join(t.TempDir(), "mobile.jws")
		for _, content := range []string{bad, "garbage", ""} {
			if err := os.WriteFile(corrupt, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			u5, v5 := w.updater(t, cp, clk, corrupt)
			if err := u5.Load(); err != nil {
				t.Fatal(err)
			}
			if st := u5.State(); st.Source != bundle.SourceEmbedded || st.Version != 0 || v5.Policy() != w.embedded || st.CacheError == "" {
				t.Errorf("content %.20q: state = %+v, want the embedded policy and the cache error shown", content, st)
			}
			// The floor falls to MinVersion, here 0 (documented; see
			// TestUpdaterCacheTampering for MinVersion): version 6 is
			// accepted.
			cp.set(w.sign(t, 6))
			if err := u5.Update(context.Background()); err != nil {
				t.Errorf("content %.20q: %v", content, err)
			}
			cp.set(v7)
		}
	})

	t.Run("unwritable cache", func(t *testing.T) {
		sub := filepath.Join(t.TempDir(), "not-yet")
		c := filepath.Join(sub, "mobile.jws")
		u6, _ := w.updater(t, cp, clk, c)
		err := u6.Update(context.Background())
		if err == nil {
			t.Fatal("Update did not report the cache failure")
		}
		if st := u6.State(); st.Version != 7 || st.ConsecutiveFailures != 0 || st.LastError == "" || st.Updates != 1 {
			t.Errorf("state = %+v, want the bundle applied and the cache error reported", st)
		}
		// The next success writes it.
		if err := os.Mkdir(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := u6.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(c); err != nil || string(data) != v7+"\n" {
			t.Errorf("cache after retry: %v", err)
		}
	})
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// With the control plane down the current bundle stays and the failures
// show in State; the next success clears them.
func TestControlPlaneDown(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	clk := newClock()
	u, v := w.updater(t, cp, clk, "")
	cp.set(w.sign(t, 7))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	success := u.State().LastSuccess
	policy := v.Policy()
	cp.setDown(true)
	for i := 1; i <= 2; i++ {
		clk.Advance(time.Minute)
		err := u.Update(context.Background())
		if err == nil {
			t.Fatal("Update succeeded with the control plane down")
		}
		st := u.State()
		if st.ConsecutiveFailures != i || st.LastError != err.Error() || !st.LastAttempt.Equal(clk.Now()) ||
			!st.LastSuccess.Equal(success) || st.Version != 7 || st.Source != bundle.SourceNetwork {
			t.Errorf("after failure %d: %+v", i, st)
		}
		if v.Policy() != policy {
			t.Error("policy changed")
		}
	}
	cp.setDown(false)
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := u.State(); st.ConsecutiveFailures != 0 || st.LastError != "" || !st.LastSuccess.Equal(clk.Now()) {
		t.Errorf("after recovery: %+v", st)
	}
}

// Run retries with a growing, capped backoff while the control plane is
// down, and returns to the normal interval when it is back.
func TestRunBackoff(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	cp.set(w.sign(t, 7))
	cp.setDown(true)
	clk := newClock()
	u, _ := w.updater(t, cp, clk, "")
	u.Interval = time.Hour
	u.MaxBackoff = 30 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sleeps []time.Duration
	bundle.SetSleep(u, func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		clk.Advance(d)
		if len(sleeps) == 5 {
			cp.setDown(false)
		}
		if u.State().Updates == 1 || len(sleeps) > 20 {
			cancel()
		}
		return ctx.Err()
	})
	if err := u.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	within := func(d, want time.Duration) bool { return d >= want*8/10 && d <= want*12/10 }
	if len(sleeps) != 6 || !within(sleeps[0], 5*time.Second) || !within(sleeps[1], 10*time.Second) ||
		!within(sleeps[2], 20*time.Second) || sleeps[3] != 30*time.Second || sleeps[4] != 30*time.Second || sleeps[5] != time.Hour {
		t.Errorf("sleeps = %v, want about 5s, 10s, 20s, then 30s (the cap) twice, then 1h after recovery", sleeps)
	}
	if st := u.State(); st.Version != 7 || st.Fetches != 6 || st.ConsecutiveFailures != 0 {
		t.Errorf("state = %+v", st)
	}
}

// When the bundle in effect expires while Run waits for the next poll, the
// embedded policy applies again at once.
func TestExpiryWhileRunning(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	cp.set(signWith(t, w.key, "mobile", 7, t0, t0.Add(2*time.Hour), w.bundlePolicy(t)))
	clk := newClock() // t0 + 1h
	u, v := w.updater(t, cp, clk, "")
	u.Interval = 24 * time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sleeps []time.Duration
	var stateAfterExpiry bundle.State
	bundle.SetSleep(u, func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		if len(sleeps) == 2 {
			stateAfterExpiry = u.State()
			if v.Policy() != w.embedded {
				t.Error("the expired bundle's policy is still in effect")
			}
			cancel()
		}
		clk.Advance(d)
		return ctx.Err()
	})
	if err := u.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if len(sleeps) != 2 || sleeps[0] != time.Hour || sleeps[1] != 23*time.Hour {
		t.Errorf("sleeps = %v, want 1h (to the expiry) then the rest of the interval", sleeps)
	}
	if st := stateAfterExpiry; st.Source != bundle.SourceEmbedded || st.Version != 0 || st.Fetches != 1 {
		t.Errorf("state after expiry = %+v, want the embedded policy without another fetch", st)
	}
	// The next poll brings the expired bundle again: refused, and the
	// embedded policy stays.
	if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrExpired) {
		t.Errorf("err = %v, want ErrExpired", err)
	}
	if v.Policy() != w.embedded {
		t.Error("policy changed")
	}
}

// Update also falls back when it finds the bundle in effect expired.
func TestExpiryAtUpdate(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	cp.set(signWith(t, w.key, "mobile", 7, t0, t0.Add(2*time.Hour), w.bundlePolicy(t)))
	clk := newClock()
	u, v := w.updater(t, cp, clk, "")
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	cp.setDown(true)
	if err := u.Update(context.Background()); err == nil {
		t.Fatal("want a fetch error")
	}
	if st := u.State(); st.Source != bundle.SourceEmbedded || v.Policy() != w.embedded {
		t.Errorf("state = %+v", st)
	}
}

func TestETag(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, v := w.updater(t, cp, newClock(), "")
	v7 := w.sign(t, 7)
	cp.set(v7)
	ctx := context.Background()
	for range 2 {
		if err := u.Update(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reqs := cp.requests()
	if reqs[0].Get("If-None-Match") != "" || reqs[1].Get("If-None-Match") != etagOf(v7) {
		t.Errorf("If-None-Match: %q then %q, want none then %q", reqs[0].Get("If-None-Match"), reqs[1].Get("If-None-Match"), etagOf(v7))
	}
	for _, r := range reqs {
		if r.Get("Accept") != "application/jose" {
			t.Errorf("Accept = %q", r.Get("Accept"))
		}
	}
	if st := u.State(); st.Fetches != 2 || st.NotModified != 1 || st.Updates != 1 || st.Version != 7 {
		t.Errorf("state = %+v", st)
	}

	// The same bundle signed again (ECDSA signatures differ): nothing
	// changes, and its ETag is sent next.
	policy := v.Policy()
	again := w.sign(t, 7)
	if again == v7 {
		t.Fatal("re-signing gave the same JWS")
	}
	cp.set(again)
	if err := u.Update(ctx); err != nil {
		t.Fatalf("the same bundle again: %v", err)
	}
	if err := u.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if reqs := cp.requests(); reqs[3].Get("If-None-Match") != etagOf(again) {
		t.Errorf("If-None-Match = %q, want the new ETag", reqs[3].Get("If-None-Match"))
	}
	if v.Policy() != policy {
		t.Error("the same bundle again changed the policy")
	}
	if st := u.State(); st.Fetches != 4 || st.NotModified != 2 || st.Updates != 1 {
		t.Errorf("state = %+v", st)
	}

	cp.set(w.sign(t, 8))
	if err := u.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if st := u.State(); st.Fetches != 5 || st.Updates != 2 || st.Version != 8 || st.Rejected != 0 {
		t.Errorf("state = %+v", st)
	}
}

// lineServer serves "ok" over TLS on loopback at exactly one version.
func lineServer(t *testing.T, cert tls.Certificate, version uint16) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "ok\n")
			}(c)
		}
	}()
	return l.Addr().String()
}

// A session resumed under the old pins is not resumed after an update
// applies a bundle: the first connection under the bundle is a full
// handshake, checked against the new pins.
func TestUpdateInvalidatesSessions(t *testing.T) {
	for _, tv := range []struct {
		name string
		v    uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run(tv.name, func(t *testing.T) {
			w := newWorld(t)
			cp := newControlPlane(t, w.cpLeaf.TLS())
			u, v := w.updater(t, cp, newClock(), "")
			addr := lineServer(t, w.apiLeaf.TLS(), tv.v)
			base := &tls.Config{RootCAs: w.pool, ServerName: apiHost, ClientSessionCache: tls.NewLRUClientSessionCache(16)}
			dial := func() (bool, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := v.DialContext(ctx, "tcp", addr, base)
				if err != nil {
					return false, err
				}
				defer c.Close()
				if _, err := io.ReadAll(c); err != nil { // processes TLS 1.3 tickets
					t.Fatal(err)
				}
				return c.ConnectionState().DidResume, nil
			}
			for i, want := range []bool{false, true} {
				if resumed, err := dial(); err != nil || resumed != want {
					t.Fatalf("before the update, connection %d: resumed=%v err=%v, want resumed=%v", i+1, resumed, err, want)
				}
			}
			// Version 1 keeps the API's key and adds a new one.
			p1 := mustPolicy(t, "", pin.Domain{Name: apiHost, Pins: []pin.Pin{w.apiPin, w.pinB}})
			cp.set(signWith(t, w.key, "mobile", 1, t0, t0.Add(24*time.Hour), p1))
			if err := u.Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, want := range []bool{false, true} {
				if resumed, err := dial(); err != nil || resumed != want {
					t.Fatalf("after the update, connection %d: resumed=%v err=%v, want resumed=%v", i+1, resumed, err, want)
				}
			}
			// Version 2 drops the API's current key: the cached session
			// must not carry a connection past the new pins.
			p2 := mustPolicy(t, "", pin.Domain{Name: apiHost, Pins: []pin.Pin{w.pinB, w.backupPin}})
			cp.set(signWith(t, w.key, "mobile", 2, t0, t0.Add(24*time.Hour), p2))
			if err := u.Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			var mm *pin.MismatchError
			if _, err := dial(); !errors.As(err, &mm) {
				t.Fatalf("after version 2: err = %v, want a pin mismatch", err)
			}
		})
	}
}

// Every method is safe for concurrent use (run with -race).
func TestConcurrentUse(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	cache := filepath.Join(t.TempDir(), "mobile.jws")
	u, v := w.updater(t, cp, newClock(), cache)
	versions := make([]string, 6)
	for i := range versions {
		versions[i] = w.sign(t, int64(i+1))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range versions {
				if g == 0 {
					cp.set(versions[i])
				}
				u.Update(context.Background())
				u.Load()
				_ = u.State()
				_ = v.Policy()
			}
		}()
	}
	wg.Wait()
	cp.set(versions[5])
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := u.State(); st.Version != 6 {
		t.Errorf("state = %+v", st)
	}
}

// The Updater's logs name bundles by name, version and kid, never by
// their contents (hosts, pins, report URIs), refused bundles included.
func TestLogsOmitContents(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	var buf syncBuffer
	u, _ := w.updater(t, cp, newClock(), filepath.Join(t.TempDir(), "mobile.jws"))
	u.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const secretReports = "https://reports.internal.example/pins"
	p := mustPolicy(t, secretReports, pin.Domain{Name: payHost, Pins: []pin.Pin{w.pinB, w.backupPin}})
	cp.set(signWith(t, w.key, "mobile", 1, t0, t0.Add(2*time.Hour), p))
	if err := u.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Refused: a single pin in enforce mode names a host and a pin.
	bad := fmt.Sprintf(`{"version":1,"domains":[{"domain":%q,"pins":[%q]}]}`, payHost, w.pinB)
	cp.set(signRaw(t, jose.ES256, w.key, w.header(t, w.key), payloadJSON("mobile", 2, t0, t0.Add(time.Hour), bad)))
	if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrMalformed) || !strings.Contains(err.Error(), payHost) {
		t.Fatalf("err = %v, want ErrMalformed with detail", err)
	}
	u2, _ := w.updater(t, cp, &clock{t: t0.Add(3 * time.Hour)}, u.CacheFile)
	u2.Logger = u.Logger
	u2.Load() // expired cache
	logs := buf.String()
	for _, secret := range []string{payHost, w.pinB.String(), w.pinB.Base64(), secretReports} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{"version=1", "kid=" + kid(t, w.key), "bundle: malformed", "bundle: expired"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// Apply takes a bundle delivered another way (a push message) through the
// checks of a fetched one, caches it, and refuses what Update refuses
// without counting a failed fetch (it does not touch the poller's backoff).
func TestApply(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	cache := filepath.Join(t.TempDir(), "mobile.jws")
	clk := newClock()
	u, v := w.updater(t, cp, clk, cache)
	v5 := w.sign(t, 5)
	if err := u.Apply(" " + v5 + "\n"); err != nil {
		t.Fatal(err)
	}
	st := u.State()
	if st.Source != bundle.SourcePush || st.Version != 5 || st.Updates != 1 || st.Fetches != 0 || len(cp.requests()) != 0 {
		t.Errorf("state after Apply = %+v, %d requests", st, len(cp.requests()))
	}
	if v.Policy().Match(payHost) == nil {
		t.Error("the pushed bundle's policy is not in effect")
	}
	if data, _ := os.ReadFile(cache); string(data) != v5+"\n" {
		t.Errorf("cache holds %.40q..., want the pushed bundle", data)
	}
	// The same bundle again changes nothing; an older one is refused,
	// without a failed fetch.
	if err := u.Apply(v5); err != nil || u.State().Updates != 1 {
		t.Errorf("the same bundle again: %v, %+v", err, u.State())
	}
	if err := u.Apply(w.sign(t, 4)); !errors.Is(err, bundle.ErrRollback) {
		t.Errorf("older bundle: err = %v, want ErrRollback", err)
	}
	if err := u.Apply("not a bundle"); !errors.Is(err, bundle.ErrMalformed) {
		t.Errorf("garbage: err = %v, want ErrMalformed", err)
	}
	if st := u.State(); st.Rejected != 2 || st.ConsecutiveFailures != 0 || st.Version != 5 {
		t.Errorf("state after refusals = %+v", st)
	}
	// After a restart the pushed bundle is the floor.
	u2, _ := w.updater(t, cp, clk, cache)
	if err := u2.Apply(w.sign(t, 4)); !errors.Is(err, bundle.ErrRollback) {
		t.Errorf("older bundle after a restart: err = %v, want ErrRollback", err)
	}
	if st := u2.State(); st.Source != bundle.SourceCache || st.Version != 5 {
		t.Errorf("state after the restart = %+v", st)
	}
}
