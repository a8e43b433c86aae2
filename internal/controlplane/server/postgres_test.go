package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store/postgres"
	"github.com/rampartsec/rampart/internal/testing/pgtest"
	"github.com/rampartsec/rampart/pin"
)

// Two control-plane instances sharing one PostgreSQL database, as behind
// a load balancer: a report acknowledged by one is counted by the other,
// a bundle published on one is served by the other, and the second
// publication of a version is refused whichever instance gets it.
func TestTwoInstancesOnPostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	key, keys := bundleKey(t)
	start := func() *testEnv {
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
		s, err := New(Config{Store: st, AdminToken: testToken, Now: clock.Now, BundleKeys: keys, BundleCacheTTL: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s)
		t.Cleanup(func() { hs.Close(); s.Close(context.Background()); st.Close() })
		return &testEnv{srv: s, http: hs, store: st, clock: clock}
	}
	a, b := start(), start()
	rogue, _ := rogueLeaves(t)

	code, _, body := a.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, a.clock.Now()))
	wantStatus(t, "report to a", code, http.StatusNoContent, body)
	code, _, body = b.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, b.clock.Now()))
	wantStatus(t, "report to b", code, http.StatusNoContent, body)
	code, body = b.admin(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "list on b", code, http.StatusOK, body)
	if g := decode[groupsResponse](t, body).Groups; len(g) != 1 || g[0].Reports != 2 {
		t.Errorf("groups on b = %+v, want one group counting both reports", g)
	}

	v1 := signBundle(t, key, "mobile", 1, a.clock.Now())
	code, body = a.admin(t, "POST", "/v1/admin/bundles", []byte(v1))
	wantStatus(t, "publish on a", code, http.StatusCreated, body)
	time.Sleep(5 * time.Millisecond) // b's cache TTL
	if code, _, got := b.do(t, "GET", "/v1/bundles/mobile", nil); code != http.StatusOK || string(got) != v1 {
		t.Errorf("GET on b: %d %q, want the bundle published on a", code, got)
	}
	code, body = b.admin(t, "POST", "/v1/admin/bundles", []byte(v1))
	wantStatus(t, "republish on b", code, http.StatusConflict, body)
}
