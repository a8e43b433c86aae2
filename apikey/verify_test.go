package apikey_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	path  string
	store apikey.Store
	m     *apikey.Manager
	v     *apikey.Verifier
	clock *clock
	pep   []byte
}

// newFixture is a verifier and a manager on a real SQLite file.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "keys.db"), clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, pep: make([]byte, 32)}
	rand.Read(f.pep)
	st, err := sqlite.Open(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.store = st.APIKeys()
	f.m = &apikey.Manager{Store: f.store, Pepper: f.pep, Now: f.clock.Now, Scopes: []string{"payment.read", "payment.write", "payment.withdraw"}}
	f.v = &apikey.Verifier{Store: f.store, Pepper: f.pep, Now: f.clock.Now}
	t.Cleanup(func() { f.v.Close() })
	if _, err := f.m.CreateClient(context.Background(), apikey.Client{ID: "shop", Scopes: []string{"payment.read", "payment.write"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) key(t testing.TB, scopes []string, expires time.Time) (string, *apikey.Record) {
	t.Helper()
	k, rec, err := f.m.Create(context.Background(), "shop", scopes, expires)
	if err != nil {
		t.Fatal(err)
	}
	return k.String(), rec
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, rec := f.key(t, []string{"payment.read"}, time.Time{})
	v, err := f.v.Verify(ctx, key)
	if err != nil || v.Principal.ClientID != "shop" || !v.Principal.HasScope("payment.read") || v.Principal.HasScope("payment.write") ||
		v.Principal.KeyID != rec.ID || v.Deprecated {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	other, _ := apikey.Generate(apikey.Live)
	for name, tc := range map[string]struct {
		key  string
		want error
	}{
		"unknown":   {other.String(), apikey.ErrUnknown},
		"typo":      {changeAt(key, 30), apikey.ErrChecksum},
		"not a key": {"hello", apikey.ErrInvalid},
	} {
		if _, err := f.v.Verify(ctx, tc.key); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// A key made under another pepper is unknown here.
	f2 := &apikey.Verifier{Store: f.store, Pepper: []byte("another pepper"), Now: f.clock.Now}
	defer f2.Close()
	if _, err := f2.Verify(ctx, key); !errors.Is(err, apikey.ErrUnknown) {
		t.Errorf("other pepper: %v", err)
	}
}

func TestVerifyStatuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	expiring, _ := f.key(t, nil, f.clock.Now().Add(time.Hour))
	revoked, rec := f.key(t, nil, time.Time{})
	if err := f.m.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, revoked); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, err := f.v.Verify(ctx, expiring); err != nil {
		t.Errorf("before expiry: %v", err)
	}
	f.clock.Add(time.Hour)
	if _, err := f.v.Verify(ctx, expiring); !errors.Is(err, apikey.ErrExpired) {
		t.Errorf("at expiry: %v", err)
	}
	live, _ := f.key(t, nil, time.Time{})
	if err := f.store.SetClientDisabled(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Second) // past RevocationCheck
	if _, err := f.v.Verify(ctx, live); !errors.Is(err, apikey.ErrClientDisabled) {
		t.Errorf("client disabled: %v", err)
	}
}

func TestRotationGrace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, rec := f.key(t, nil, time.Time{})
	if _, err := f.v.Verify(ctx, old); err != nil { // cached
		t.Fatal(err)
	}
	newKey, newRec, err := f.m.Rotate(ctx, rec.ID, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Second)
	v, err := f.v.Verify(ctx, old)
	if err != nil || !v.Deprecated || !v.Sunset.Equal(f.clock.Now().Add(-time.Second).Add(72*time.Hour)) || !v.RotatedAt.Equal(newRec.CreatedAt) {
		t.Fatalf("old key in grace: %+v %v", v, err)
	}
	if _, _, err := f.m.Rotate(ctx, rec.ID, time.Hour); !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("second rotation of the same key: %v", err)
	}
	f.clock.Add(72 * time.Hour)
	if _, err := f.v.Verify(ctx, old); !errors.Is(err, apikey.ErrRotated) {
		t.Errorf("after the grace: %v", err)
	}
	if _, err := f.v.Verify(ctx, newKey.String()); err != nil {
		t.Errorf("new key: %v", err)
	}
	if _, _, err := f.m.Rotate(ctx, rec.ID, apikey.MaxGrace+time.Hour); err == nil {
		t.Error("a grace over the maximum was accepted")
	}
}

// Two verifiers on one database (two instances): a revocation through
// one is seen by the other at its next generation check.
func TestRevocationSeenByAnotherInstance(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, rec := f.key(t, nil, time.Time{})
	st2, err := sqlite.Open(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for _, check := range []time.Duration{-1, 100 * time.Millisecond} {
		v2 := &apikey.Verifier{Store: st2.APIKeys(), Pepper: f.pep, Now: f.clock.Now, RevocationCheck: check}
		if _, err := v2.Verify(ctx, key); err != nil {
			t.Fatal(err)
		}
		if check > 0 {
			continue // the next round revokes
		}
		v2.Close()
	}
	v2 := &apikey.Verifier{Store: st2.APIKeys(), Pepper: f.pep, Now: f.clock.Now}
	defer v2.Close()
	if _, err := v2.Verify(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(ctx, key); err != nil {
		t.Errorf("within the 100 ms check interval the cached key may still pass, got %v", err)
	}
	f.clock.Add(100 * time.Millisecond)
	if _, err := v2.Verify(ctx, key); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("after the check interval: %v, want ErrRevoked", err)
	}
	eager := &apikey.Verifier{Store: st2.APIKeys(), Pepper: f.pep, Now: f.clock.Now, RevocationCheck: -1}
	defer eager.Close()
	key2, rec2 := f.key(t, nil, time.Time{})
	eager.Verify(ctx, key2)
	f.m.Revoke(ctx, rec2.ID)
	if _, err := eager.Verify(ctx, key2); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("checking every request: %v, want ErrRevoked at once", err)
	}
}

// Last use is recorded in batches, not on every request.
func TestLastUsedBatched(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, rec := f.key(t, nil, time.Time{})
	for range 100 {
		f.v.Verify(ctx, key)
	}
	if r, _ := f.store.Key(ctx, rec.ID); !r.LastUsedAt.IsZero() {
		t.Error("last use written before the batch")
	}
	f.v.Close()
	if r, _ := f.store.Key(ctx, rec.ID); !r.LastUsedAt.Equal(f.clock.Now()) {
		t.Errorf("last used %v, want %v", r.LastUsedAt, f.clock.Now())
	}
}

func TestMiddleware(t *testing.T) {
	f := newFixture(t)
	key, _ := f.key(t, []string{"payment.read"}, time.Time{})
	srv := httptest.NewServer(f.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(apikey.FromContext(r.Context()).ClientID))
	})))
	defer srv.Close()
	do := func(h ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Add(h[i], h[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return resp, string(b[:n])
	}
	for _, h := range [][]string{{"X-API-Key", key}, {"Authorization", "Bearer " + key}, {"Authorization", "bearer " + key}} {
		if resp, body := do(h...); resp.StatusCode != 200 || body != "shop" {
			t.Errorf("%s: %d %q", h[0], resp.StatusCode, body)
		}
	}
	for name, h := range map[string][]string{
		"none":      nil,
		"wrong key": {"X-API-Key", changeAt(key, len(key)-1)},
		"a JWT":     {"Authorization", "Bearer eyJhbGciOi.x.y"},
	} {
		resp, body := do(h...)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="rampart"`) || strings.Contains(body, key) {
			t.Errorf("%s: %d %v %s", name, resp.StatusCode, resp.Header, body)
		}
	}
	// RFC 6750 §2 / §3.1: more than one credential is invalid_request.
	if resp, body := do("X-API-Key", key, "X-API-Key", key); resp.StatusCode != 400 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) || strings.Contains(body, key) {
		t.Errorf("two X-API-Key: %d %v %s, want 400 invalid_request", resp.StatusCode, resp.Header, body)
	}
}

// BenchmarkVerify: a cached key, and a key looked up in SQLite each time
// (cache off), among 1,000 keys.
//
//	go test -run '^$' -bench Verify -count 10 ./apikey
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	var key string
	for range 1000 {
		key, _ = f.key(b, nil, time.Time{})
	}
	ctx := context.Background()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.Verify(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sqlite", func(b *testing.B) {
		v := &apikey.Verifier{Store: f.store, Pepper: f.pep, CacheSize: -1, Now: f.clock.Now}
		defer v.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// slowStore holds the first KeyByHash until released: a lookup that was
// under way when the key was revoked.
type slowStore struct {
	apikey.Store
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (s *slowStore) KeyByHash(ctx context.Context, h []byte) (*apikey.Record, error) {
	r, err := s.Store.KeyByHash(ctx, h)
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.started)
		<-s.release
	}
	return r, err
}

// A lookup that began before a revocation and ends after it is seen must
// not put the revoked key back in the cache.
func TestNoStaleCacheAfterRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, rec := f.key(t, nil, time.Time{})
	slow := &slowStore{Store: f.store, started: make(chan struct{}), release: make(chan struct{})}
	v := &apikey.Verifier{Store: slow, Pepper: f.pep, Now: f.clock.Now, RevocationCheck: -1}
	defer v.Close()
	done := make(chan error)
	go func() { _, err := v.Verify(ctx, key); done <- err }()
	<-slow.started
	if err := f.m.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, key); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("after revocation: %v", err)
	}
	close(slow.release)
	<-done // read before the revocation: it may pass
	for i := range 3 {
		if _, err := v.Verify(ctx, key); !errors.Is(err, apikey.ErrRevoked) {
			t.Fatalf("request %d after the slow lookup ended: %v, want ErrRevoked", i, err)
		}
	}
}

// A stolen key rotated by its thief: rotation keeps the expiry, and
// RevokeChain ends the whole line.
func TestRotationKeepsExpiryAndRevokeChain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	exp := f.clock.Now().Add(24 * time.Hour)
	a, ra := f.key(t, nil, exp)
	_, rb, err := f.m.Rotate(ctx, ra.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, rc, err := f.m.Rotate(ctx, rb.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !rb.ExpiresAt.Equal(exp) || !rc.ExpiresAt.Equal(exp) {
		t.Errorf("rotated keys expire %v, %v; want the original %v", rb.ExpiresAt, rc.ExpiresAt, exp)
	}
	ids, err := f.m.RevokeChain(ctx, ra.ID)
	if err != nil || len(ids) != 3 {
		t.Fatalf("RevokeChain = %v, %v; want three keys", ids, err)
	}
	f.clock.Add(time.Second)
	for name, k := range map[string]string{"first": a, "last": c.String()} {
		if _, err := f.v.Verify(ctx, k); !errors.Is(err, apikey.ErrRevoked) {
			t.Errorf("%s key of the chain: %v", name, err)
		}
	}
}

// changeAt returns s with the character at i replaced by another one.
func changeAt(s string, i int) string {
	c := byte('x')
	if s[i] == c {
		c = 'y'
	}
	return s[:i] + string(c) + s[i+1:]
}

// Self-rotation leaves a client at most MaxKeysInGrace keys in their
// grace period (CWE-770): each is a working credential.
func TestSelfRotationBoundsKeysInGrace(t *testing.T) {
	f := newFixture(t)
	h := httptest.NewServer(f.m.RotateHandler(f.v, 72*time.Hour))
	defer h.Close()
	rotate := func(key string) int {
		req, _ := http.NewRequest("POST", h.URL, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range apikey.MaxKeysInGrace {
		k, _ := f.key(t, nil, time.Time{})
		if code := rotate(k); code != http.StatusCreated {
			t.Fatalf("rotation %d: %d", i+1, code)
		}
	}
	k, _ := f.key(t, nil, time.Time{})
	if code := rotate(k); code != http.StatusConflict {
		t.Errorf("a rotation past %d keys in grace: %d, want 409", apikey.MaxKeysInGrace, code)
	}
	f.clock.Add(72 * time.Hour)
	f.v.Forget()
	if code := rotate(k); code != http.StatusCreated {
		t.Errorf("once the grace periods ended: %d, want 201", code)
	}
}
