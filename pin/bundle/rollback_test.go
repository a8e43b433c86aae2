//go:build unix

package bundle_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// reportOnlyAPI is what an attacker wants a client on: an older bundle,
// authentic and unexpired, that turns the API's rule to report-only, so
// that a rogue certificate for it is accepted.
func (w *world) reportOnlyAPI(t testing.TB, v int64) string {
	t.Helper()
	p := mustPolicy(t, "", pin.Domain{Name: apiHost, Mode: pin.ReportOnly, Pins: []pin.Pin{w.pinB, w.backupPin}})
	return signWith(t, w.key, "mobile", v, t0, t0.Add(30*24*time.Hour), p)
}

func apiEnforced(v *pin.Verifier) bool {
	d := v.Policy().Match(apiHost)
	return d != nil && d.Mode == pin.Enforce
}

// P5: the rollback floor is in the cache file. A client has accepted
// version 9 (enforce); then the cache is tampered with, the client
// restarts, and the control plane replays version 3 (report-only). A file
// only this user could have written is required before the cache is
// read; a cache that is present but bad is logged at error level and does
// not lower the floor below MinVersion, which the client ships with.
func TestUpdaterCacheTampering(t *testing.T) {
	w := newWorld(t)
	v3 := w.reportOnlyAPI(t, 3)
	v9 := w.sign(t, 9)
	const minVersion = 5 // the latest bundle when the client was built

	// accepted9 returns a cache path in a fresh directory where the client
	// has accepted version 9.
	accepted9 := func(t *testing.T) string {
		t.Helper()
		cp := newControlPlane(t, w.cpLeaf.TLS())
		cp.set(v9)
		cache := filepath.Join(t.TempDir(), "mobile.jws")
		u, v := w.updater(t, cp, newClock(), cache)
		if err := u.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := u.State(); st.Version != 9 || !apiEnforced(v) {
			t.Fatalf("state = %+v", st)
		}
		return cache
	}
	writeFile := func(t *testing.T, path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, cache string)
		// refused: the file is refused before it is read, so v3 in it is
		// not applied even without MinVersion.
		refused bool
		// authentic: the file is this user's and holds an authentic
		// bundle, which nothing tells from one the client accepted:
		// without MinVersion it applies (documented).
		authentic bool
	}{
		{"truncated", func(t *testing.T, cache string) {
			if err := os.Truncate(cache, 100); err != nil {
				t.Fatal(err)
			}
		}, false, false},
		{"emptied", func(t *testing.T, cache string) { writeFile(t, cache, "", 0o600) }, false, false},
		{"deleted", func(t *testing.T, cache string) {
			if err := os.Remove(cache); err != nil {
				t.Fatal(err)
			}
		}, false, false},
		{"replaced by an old authentic bundle", func(t *testing.T, cache string) { writeFile(t, cache, v3+"\n", 0o600) }, false, true},
		{"symbolic link to a planted world-writable file", func(t *testing.T, cache string) {
			planted := filepath.Join(t.TempDir(), "planted.jws")
			writeFile(t, planted, v3+"\n", 0o666)
			os.Remove(cache)
			if err := os.Symlink(planted, cache); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"symbolic link to this user's own old bundle", func(t *testing.T, cache string) {
			old := filepath.Join(filepath.Dir(cache), "old.jws")
			writeFile(t, old, v3+"\n", 0o600)
			os.Remove(cache)
			if err := os.Symlink(old, cache); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"world-writable file", func(t *testing.T, cache string) { writeFile(t, cache, v3+"\n", 0o666) }, true, false},
		{"group-writable file", func(t *testing.T, cache string) { writeFile(t, cache, v3+"\n", 0o620) }, true, false},
		{"a second hard link", func(t *testing.T, cache string) {
			writeFile(t, cache, v3+"\n", 0o600)
			if err := os.Link(cache, filepath.Join(t.TempDir(), "kept")); err != nil {
				t.Skipf("hard links across these directories: %v", err)
			}
		}, true, false},
		{"a FIFO", func(t *testing.T, cache string) {
			os.Remove(cache)
			if err := syscall.Mkfifo(cache, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"in a directory others can write to", func(t *testing.T, cache string) {
			writeFile(t, cache, v3+"\n", 0o600)
			if err := os.Chmod(filepath.Dir(cache), 0o777); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"planted by another user in a sticky shared directory", func(t *testing.T, cache string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			// As in /tmp: the victim's rename over the planted file fails,
			// so it stays; it is refused for its owner.
			if err := os.Chmod(filepath.Dir(cache), 0o1777); err != nil {
				t.Fatal(err)
			}
			os.Remove(cache)
			writeFile(t, cache, v3+"\n", 0o644)
			if err := os.Chown(cache, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"owned by another user", func(t *testing.T, cache string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			writeFile(t, cache, v3+"\n", 0o600)
			if err := os.Chown(cache, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, min := range []int64{0, minVersion} {
				cache := accepted9(t)
				tc.tamper(t, cache)
				cp := newControlPlane(t, w.cpLeaf.TLS())
				cp.set(v3) // the replay
				var logs syncBuffer
				u, v := w.updater(t, cp, newClock(), cache)
				u.MinVersion = min
				u.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				if err := u.Load(); err != nil {
					t.Fatal(err)
				}
				st := u.State()
				if tc.authentic && min == 0 {
					if st.Version != 3 {
						t.Errorf("state = %+v, want version 3 (an authentic bundle in this user's file)", st)
					}
					continue
				}
				if st.Version == 3 || !apiEnforced(v) {
					t.Fatalf("MinVersion %d: the tampered cache was applied: %+v", min, st)
				}
				if tc.name != "deleted" {
					if st.CacheError == "" || !strings.Contains(logs.String(), "level=ERROR") {
						t.Errorf("MinVersion %d: a bad cache went unreported: state %+v, logs:\n%s", min, st, logs.String())
					}
				}
				if tc.refused && !strings.Contains(st.CacheError, "cache file refused") {
					t.Errorf("MinVersion %d: CacheError = %q, want the file refused", min, st.CacheError)
				}
				if min == 0 {
					continue // without a floor shipped with the client, the replay is a fresh install's (documented)
				}
				err := u.Update(context.Background())
				if !errors.Is(err, bundle.ErrRollback) {
					t.Fatalf("replay of version 3: err = %v, want ErrRollback", err)
				}
				if !apiEnforced(v) {
					t.Error("the replayed bundle turned the API report-only")
				}
			}
		})
	}

	// After a refusal, the next accepted bundle replaces the link, not
	// its target.
	t.Run("the link is replaced, its target left alone", func(t *testing.T) {
		cache := accepted9(t)
		planted := filepath.Join(t.TempDir(), "planted.jws")
		writeFile(t, planted, v3+"\n", 0o666)
		os.Remove(cache)
		if err := os.Symlink(planted, cache); err != nil {
			t.Fatal(err)
		}
		cp := newControlPlane(t, w.cpLeaf.TLS())
		cp.set(w.sign(t, 10))
		u, _ := w.updater(t, cp, newClock(), cache)
		if err := u.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(planted); string(data) != v3+"\n" {
			t.Error("the link's target was written")
		}
		if fi, err := os.Lstat(cache); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("cache is not a regular file: %v %v", fi, err)
		}
		if st := u.State(); st.CacheError != "" {
			t.Errorf("CacheError = %q after a bundle was accepted", st.CacheError)
		}
	})

	// A directory others can write to is refused for writing too: the
	// cache would not be read back.
	t.Run("no cache written where it would not be read", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cp := newControlPlane(t, w.cpLeaf.TLS())
		cp.set(v9)
		u, _ := w.updater(t, cp, newClock(), filepath.Join(dir, "mobile.jws"))
		if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrCacheRefused) {
			t.Errorf("err = %v, want ErrCacheRefused", err)
		}
		if st := u.State(); st.Version != 9 || st.LastError == "" {
			t.Errorf("state = %+v, want version 9 applied and the cache error shown", st)
		}
	})
}

// P12 (c): a fresh install (no cache) is not rolled back below the
// MinVersion it ships with, from the network or from a cache.
func TestUpdaterMinVersion(t *testing.T) {
	w := newWorld(t)
	cp := newControlPlane(t, w.cpLeaf.TLS())
	u, v := w.updater(t, cp, newClock(), filepath.Join(t.TempDir(), "mobile.jws"))
	u.MinVersion = 5
	cp.set(w.reportOnlyAPI(t, 4))
	if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrRollback) || !strings.Contains(err.Error(), "MinVersion") {
		t.Fatalf("version 4 with MinVersion 5: err = %v, want ErrRollback naming MinVersion", err)
	}
	if !apiEnforced(v) || u.State().Version != 0 {
		t.Fatal("a bundle below MinVersion was applied")
	}
	cp.set(w.sign(t, 5))
	if err := u.Update(context.Background()); err != nil {
		t.Fatalf("version 5 with MinVersion 5: %v", err)
	}
	if st := u.State(); st.Version != 5 {
		t.Errorf("state = %+v", st)
	}

	// A cached authentic bundle below MinVersion (a client updated with a
	// higher MinVersion than its cache) is neither applied nor the floor.
	cache := filepath.Join(t.TempDir(), "mobile.jws")
	if err := os.WriteFile(cache, []byte(w.reportOnlyAPI(t, 4)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u2, v2 := w.updater(t, cp, newClock(), cache)
	u2.MinVersion = 5
	if err := u2.Load(); err != nil {
		t.Fatal(err)
	}
	if st := u2.State(); st.Version != 0 || !apiEnforced(v2) || !strings.Contains(st.CacheError, "MinVersion") {
		t.Errorf("cache below MinVersion: state = %+v", st)
	}

	bad := &bundle.Updater{URL: bundleURL, Name: "mobile", Keys: w.keys, Embedded: w.embedded, Verifier: pin.NewVerifier(w.embedded), MinVersion: -1}
	if err := bad.Load(); err == nil || !strings.Contains(err.Error(), "MinVersion") {
		t.Errorf("MinVersion -1: err = %v", err)
	}
}

// P12 (a): when the embedded rule for the control plane has expired, the
// pinned client falls back to CA validation, so the Updater does not
// fetch: a trusted but rogue CA's certificate for the control plane must
// not deliver an (old, authentic) bundle that unpins the API.
func TestUpdaterExpiredControlPlaneRule(t *testing.T) {
	w := newWorld(t)
	withCPExpiry := func(expires time.Time) *pin.Policy {
		return mustPolicy(t, "",
			pin.Domain{Name: cpHost, Expires: expires, Pins: []pin.Pin{pin.FromCertificate(w.cpLeaf.Cert), w.backupPin}},
			pin.Domain{Name: apiHost, Pins: []pin.Pin{w.apiPin, w.backupPin}},
		)
	}
	clk := newClock() // t0 + 1h

	t.Run("expired before start", func(t *testing.T) {
		embedded := withCPExpiry(t0.AddDate(0, 0, -2)) // expired two days ago
		rogue := newControlPlane(t, w.rogueCPLeaf.TLS())
		rogue.set(w.reportOnlyAPI(t, 1))
		v := pin.NewVerifier(embedded)
		var logs syncBuffer
		u := &bundle.Updater{URL: bundleURL, Name: "mobile", Keys: w.keys, Embedded: embedded, Verifier: v,
			Client: rogue.client(t, w, embedded), Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		err := u.Update(context.Background())
		if !errors.Is(err, bundle.ErrControlPlaneNotPinned) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("err = %v, want ErrControlPlaneNotPinned naming the expiry", err)
		}
		if n := len(rogue.requests()); n != 0 {
			t.Errorf("%d requests reached the control plane", n)
		}
		if d := v.Policy().Match(apiHost); d == nil || d.Mode != pin.Enforce {
			t.Error("the API is no longer enforced")
		}
		if !strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("no error logged:\n%s", logs.String())
		}
	})

	t.Run("expires while running", func(t *testing.T) {
		embedded := withCPExpiry(t0.AddDate(0, 0, 1)) // holds through the day after t0
		cp := newControlPlane(t, w.cpLeaf.TLS())
		cp.set(signWith(t, w.key, "mobile", 1, t0, t0.AddDate(0, 0, 5), w.bundlePolicy(t)))
		clk := newClock()
		v := pin.NewVerifier(embedded)
		u := &bundle.Updater{URL: bundleURL, Name: "mobile", Keys: w.keys, Embedded: embedded, Verifier: v,
			Client: cp.client(t, w, embedded), Now: clk.Now}
		if err := u.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * 24 * time.Hour) // past the rule's last day
		n := len(cp.requests())
		if err := u.Update(context.Background()); !errors.Is(err, bundle.ErrControlPlaneNotPinned) {
			t.Fatalf("err = %v, want ErrControlPlaneNotPinned", err)
		}
		if len(cp.requests()) != n {
			t.Error("fetched over an expired rule")
		}
		// The bundle fetched while pinned stays until it expires.
		if st := u.State(); st.Version != 1 || st.ConsecutiveFailures != 1 {
			t.Errorf("state = %+v", st)
		}
		clk.Advance(4 * 24 * time.Hour)
		u.Update(context.Background())
		if st := u.State(); st.Version != 0 || v.Policy() != embedded {
			t.Errorf("after the bundle's expiry: state = %+v", st)
		}
	})
}
