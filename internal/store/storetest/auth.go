package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

var authTests = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"APIKeys/Clients", testClientsCRUD},
	{"APIKeys/ClientsRefused", testClientsRefused},
	{"APIKeys/CreateAndRead", testKeysCreateRead},
	{"APIKeys/CreateRefused", testKeysRefused},
	{"APIKeys/ClientDisabledReadWithKey", testKeysClientDisabled},
	{"APIKeys/KeysOldestFirst", testKeysOrder},
	{"APIKeys/TimesMillisecondsUTC", testKeyTimes},
	{"APIKeys/Rotate", testRotate},
	{"APIKeys/RotateIsAtomic", testRotateAtomic},
	{"APIKeys/ConcurrentRotationsOneWins", testRotateConcurrent},
	{"APIKeys/Revoke", testRevokeKey},
	{"APIKeys/TouchKeysForwardOnly", testTouchKeys},
	{"APIKeys/GenerationSharedBetweenHandles", testGenerationShared},
	{"SigningKeys/Rotation", testSigningRotation},
	{"SigningKeys/RotationRefused", testSigningRefused},
	{"SigningKeys/ConcurrentRotationsSerialized", testSigningConcurrent},
	{"RevokedTokens/RevokeCheckPrune", testRevokedTokens},
	{"RevokedTokens/ClientTokens", testRevokedClientTokens},
	{"RevokedTokens/DisabledOrUnknownClient", testRevokedDisabledClient},
}

// second opens a second handle on e's database, as another instance or
// process would, or returns nil when the backend cannot.
func (e *env) second(t *testing.T) store.Store {
	if e.reopen == nil {
		return nil
	}
	s := e.reopen(t)
	t.Cleanup(func() { s.Close() })
	return s
}

// hashOf stands for apikey.Hash of a key named s.
func hashOf(s string) []byte {
	h := sha256.Sum256([]byte("rk_test_" + s))
	return h[:]
}

func newClient(id string) *apikey.Client {
	return &apikey.Client{
		ID:            id,
		Name:          "Client " + id,
		Scopes:        []string{"payment.read", "payment.write"},
		TokenLifetime: 10 * time.Minute,
		CertURI:       "spiffe://example.com/" + id,
		CreatedAt:     t0,
	}
}

func newKey(id, clientID string, created time.Time) *apikey.Record {
	return &apikey.Record{
		ID:        id,
		ClientID:  clientID,
		Hash:      hashOf(id),
		Hint:      "rk_test_" + id + "…",
		Scopes:    []string{"payment.read"},
		CreatedAt: created,
		ExpiresAt: created.Add(90 * 24 * time.Hour),
	}
}

func createClient(t *testing.T, s store.Store, c *apikey.Client) {
	t.Helper()
	if err := s.APIKeys().CreateClient(context.Background(), c); err != nil {
		t.Fatalf("CreateClient(%s): %v", c.ID, err)
	}
}

func createKey(t *testing.T, s store.Store, r *apikey.Record) {
	t.Helper()
	if err := s.APIKeys().CreateKey(context.Background(), r); err != nil {
		t.Fatalf("CreateKey(%s): %v", r.ID, err)
	}
}

func getKey(t *testing.T, s store.Store, id string) apikey.Record {
	t.Helper()
	r, err := s.APIKeys().Key(context.Background(), id)
	if err != nil {
		t.Fatalf("Key(%s): %v", id, err)
	}
	return *r
}

func generation(t *testing.T, s store.Store) int64 {
	t.Helper()
	g, err := s.APIKeys().Generation(context.Background())
	if err != nil {
		t.Fatalf("Generation: %v", err)
	}
	return g
}

func keyIDs(rs []apikey.Record) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// noHash fails t if err's message shows hash, in hex or raw: the store
// never logs what keys are looked up by.
func noHash(t *testing.T, err error, hash []byte) {
	t.Helper()
	if err == nil {
		return
	}
	if msg := err.Error(); strings.Contains(strings.ToLower(msg), hex.EncodeToString(hash)) || strings.Contains(msg, string(hash)) {
		t.Errorf("error shows a key hash: %v", err)
	}
}

func testClientsCRUD(t *testing.T, e *env) {
	ctx := context.Background()
	ks := e.APIKeys()
	b, a := newClient("b"), newClient("a")
	a.CertURI, a.CertSubject, a.CertDNS = "", "CN=a,O=Example", ""
	createClient(t, e, b)
	createClient(t, e, a)

	dup := newClient("a")
	dup.Name = "Impostor"
	if err := ks.CreateClient(ctx, dup); !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("CreateClient of a taken ID = %v, want ErrConflict", err)
	}
	got, err := ks.Client(ctx, "a")
	if err != nil {
		t.Fatalf("Client(a): %v", err)
	}
	if !reflect.DeepEqual(*got, *a) {
		t.Errorf("Client(a) =\n%+v\nwant\n%+v", *got, *a)
	}
	cs, err := ks.Clients(ctx)
	if err != nil {
		t.Fatalf("Clients: %v", err)
	}
	if len(cs) != 2 || !reflect.DeepEqual(cs[0], *a) || !reflect.DeepEqual(cs[1], *b) {
		t.Errorf("Clients =\n%+v\nwant a then b", cs)
	}

	for _, id := range []string{"nope", ""} {
		if _, err := ks.Client(ctx, id); !errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("Client(%q) = %v, want ErrNotFound", id, err)
		}
		if err := ks.SetClientDisabled(ctx, id, true); !errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("SetClientDisabled(%q) = %v, want ErrNotFound", id, err)
		}
	}

	g0 := generation(t, e)
	if err := ks.SetClientDisabled(ctx, "a", true); err != nil {
		t.Fatalf("SetClientDisabled(a, true): %v", err)
	}
	g1 := generation(t, e)
	if g1 == g0 {
		t.Errorf("Generation stayed %d when a client was disabled", g0)
	}
	if got, _ := ks.Client(ctx, "a"); got == nil || !got.Disabled {
		t.Errorf("Client(a) after disabling = %+v, want Disabled", got)
	}
	if got, _ := ks.Client(ctx, "b"); got == nil || got.Disabled {
		t.Errorf("Client(b) = %+v: disabling a changed it", got)
	}
	if err := ks.SetClientDisabled(ctx, "a", false); err != nil {
		t.Fatalf("SetClientDisabled(a, false): %v", err)
	}
	if g2 := generation(t, e); g2 == g1 || g2 == g0 {
		t.Errorf("Generation %d after enabling; was %d, then %d: want a new number", g2, g0, g1)
	}
	if got, _ := ks.Client(ctx, "a"); got == nil || got.Disabled {
		t.Errorf("Client(a) after enabling = %+v, want not Disabled", got)
	}

	// A zero CreatedAt is set by the store, and what it set is reported.
	before := time.Now().Add(-time.Second)
	c := &apikey.Client{ID: "c"}
	createClient(t, e, c)
	if c.CreatedAt.Before(before) || c.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt set to %v, want about now", c.CreatedAt)
	}
	if got, err := ks.Client(ctx, "c"); err != nil || !reflect.DeepEqual(*got, *c) {
		t.Errorf("Client(c) = %+v, %v; want %+v", got, err, *c)
	}
}

func testClientsRefused(t *testing.T, e *env) {
	ctx := context.Background()
	for _, bad := range []*apikey.Client{
		nil,
		{Name: "no ID"},
		{ID: "a", Scopes: []string{"payment.read payment.write"}},
		{ID: "a", Scopes: []string{""}},
		{ID: "a", Name: "nul\x00"},
		{ID: "a", CertSubject: "CN=\xff"},
		{ID: "a", TokenLifetime: -time.Minute},
	} {
		if err := e.APIKeys().CreateClient(ctx, bad); err == nil {
			t.Errorf("CreateClient accepted %+v", bad)
		}
	}
	if cs, err := e.APIKeys().Clients(ctx); err != nil || len(cs) != 0 {
		t.Errorf("Clients = %+v, %v after refused clients; want none", cs, err)
	}
}

func testKeysCreateRead(t *testing.T, e *env) {
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	k1 := newKey("k1", "a", t0)
	k2 := newKey("k2", "a", t0.Add(time.Minute))
	k2.ExpiresAt, k2.Scopes, k2.LastUsedAt = time.Time{}, nil, t0.Add(2*time.Minute)
	createKey(t, e, k1)
	createKey(t, e, k2)

	for _, want := range []*apikey.Record{k1, k2} {
		got, err := e.APIKeys().KeyByHash(ctx, want.Hash)
		if err != nil {
			t.Fatalf("KeyByHash(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(*got, *want) {
			t.Errorf("KeyByHash(%s) =\n%+v\nwant\n%+v", want.ID, *got, *want)
		}
		if got := getKey(t, e, want.ID); !reflect.DeepEqual(got, *want) {
			t.Errorf("Key(%s) =\n%+v\nwant\n%+v", want.ID, got, *want)
		}
	}
	if rs, err := e.APIKeys().Keys(ctx, "a"); err != nil || !reflect.DeepEqual(rs, []apikey.Record{*k1, *k2}) {
		t.Errorf("Keys(a) = %+v, %v; want k1, k2", rs, err)
	}

	unknown := hashOf("nope")
	_, err := e.APIKeys().KeyByHash(ctx, unknown)
	if !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("KeyByHash(unknown) = %v, want ErrNotFound", err)
	}
	noHash(t, err, unknown)
	if _, err := e.APIKeys().Key(ctx, "nope"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Key(unknown) = %v, want ErrNotFound", err)
	}

	// A zero CreatedAt is set by the store, and what it set is reported.
	before := time.Now().Add(-time.Second)
	k3 := newKey("k3", "a", time.Time{})
	createKey(t, e, k3)
	if k3.CreatedAt.Before(before) || k3.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt set to %v, want about now", k3.CreatedAt)
	}
	if got := getKey(t, e, "k3"); !reflect.DeepEqual(got, *k3) {
		t.Errorf("Key(k3) =\n%+v\nwant\n%+v", got, *k3)
	}
}

func testKeysRefused(t *testing.T, e *env) {
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	k1 := newKey("k1", "a", t0)
	createKey(t, e, k1)

	sameHash := newKey("k2", "a", t0)
	sameHash.Hash = k1.Hash
	err := e.APIKeys().CreateKey(ctx, sameHash)
	if !errors.Is(err, apikey.ErrConflict) || !strings.Contains(err.Error(), "hash") {
		t.Errorf("CreateKey with a stored hash = %v, want ErrConflict saying so", err)
	}
	noHash(t, err, k1.Hash)

	sameID := newKey("k1", "a", t0)
	sameID.Hash = hashOf("other")
	if err := e.APIKeys().CreateKey(ctx, sameID); !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("CreateKey with a taken ID = %v, want ErrConflict", err)
	}

	orphan := newKey("k3", "nope", t0)
	err = e.APIKeys().CreateKey(ctx, orphan)
	if !errors.Is(err, apikey.ErrNotFound) || !strings.Contains(err.Error(), `client "nope"`) {
		t.Errorf("CreateKey for an unknown client = %v, want ErrNotFound naming the client", err)
	}
	noHash(t, err, orphan.Hash)

	for name, bad := range map[string]*apikey.Record{
		"nil":            nil,
		"no ID":          {ClientID: "a", Hash: hashOf("x"), CreatedAt: t0},
		"no client":      {ID: "x", Hash: hashOf("x"), CreatedAt: t0},
		"no hash":        {ID: "x", ClientID: "a", CreatedAt: t0},
		"revoked":        {ID: "x", ClientID: "a", Hash: hashOf("x"), CreatedAt: t0, RevokedAt: t0},
		"replaced":       {ID: "x", ClientID: "a", Hash: hashOf("x"), CreatedAt: t0, ReplacedBy: "k1"},
		"scope w/ space": {ID: "x", ClientID: "a", Hash: hashOf("x"), CreatedAt: t0, Scopes: []string{"a b"}},
		"hint not text":  {ID: "x", ClientID: "a", Hash: hashOf("x"), CreatedAt: t0, Hint: "rk_\xff"},
	} {
		if err := e.APIKeys().CreateKey(ctx, bad); err == nil {
			t.Errorf("CreateKey accepted a key with %s", name)
		}
	}
	if rs, err := e.APIKeys().Keys(ctx, ""); err != nil || !reflect.DeepEqual(keyIDs(rs), []string{"k1"}) {
		t.Errorf("Keys = %v, %v after refused keys; want only k1", keyIDs(rs), err)
	}
	if got := getKey(t, e, "k1"); !reflect.DeepEqual(got, *k1) {
		t.Errorf("Key(k1) = %+v, want %+v: a refused key changed it", got, *k1)
	}
}

func testKeysClientDisabled(t *testing.T, e *env) {
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	createClient(t, e, newClient("b"))
	createKey(t, e, newKey("ka", "a", t0))
	createKey(t, e, newKey("kb", "b", t0))
	if err := e.APIKeys().SetClientDisabled(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		want bool
	}{{"ka", true}, {"kb", false}} {
		r, err := e.APIKeys().KeyByHash(ctx, hashOf(c.id))
		if err != nil || r.ClientDisabled != c.want {
			t.Errorf("KeyByHash(%s) = %+v, %v; want ClientDisabled %t", c.id, r, err, c.want)
		}
		if r := getKey(t, e, c.id); r.ClientDisabled != c.want {
			t.Errorf("Key(%s).ClientDisabled = %t, want %t", c.id, r.ClientDisabled, c.want)
		}
	}
	rs, err := e.APIKeys().Keys(ctx, "")
	if err != nil || len(rs) != 2 || !rs[0].ClientDisabled || rs[1].ClientDisabled {
		t.Errorf("Keys = %+v, %v; want ka of a disabled client, then kb", rs, err)
	}
	if err := e.APIKeys().SetClientDisabled(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if r, err := e.APIKeys().KeyByHash(ctx, hashOf("ka")); err != nil || r.ClientDisabled {
		t.Errorf("KeyByHash(ka) after enabling = %+v, %v; want ClientDisabled false", r, err)
	}
}

func testKeysOrder(t *testing.T, e *env) {
	ctx := context.Background()
	for _, c := range []string{"a", "b", "c"} {
		createClient(t, e, newClient(c))
	}
	for _, k := range []*apikey.Record{
		newKey("k1", "a", t0.Add(2*time.Minute)),
		newKey("k2", "a", t0),
		newKey("k3", "a", t0.Add(time.Minute)),
		// Same time as k3: ties in insertion order.
		newKey("k0", "a", t0.Add(time.Minute)),
		newKey("k5", "b", t0.Add(30*time.Second)),
	} {
		createKey(t, e, k)
	}
	for _, tc := range []struct {
		client string
		want   []string
	}{
		{"a", []string{"k2", "k3", "k0", "k1"}},
		{"b", []string{"k5"}},
		{"c", []string{}},
		{"", []string{"k2", "k5", "k3", "k0", "k1"}},
	} {
		rs, err := e.APIKeys().Keys(ctx, tc.client)
		if err != nil {
			t.Errorf("Keys(%q): %v", tc.client, err)
			continue
		}
		if got := keyIDs(rs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Keys(%q) = %v, want %v", tc.client, got, tc.want)
		}
	}
	if _, err := e.APIKeys().Keys(ctx, "nope"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Keys(unknown client) = %v, want ErrNotFound", err)
	}
}

func testKeyTimes(t *testing.T, e *env) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2026, 3, 1, 17, 30, 0, 123_456_789, zone)
	want := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	c := newClient("a")
	c.CreatedAt, c.TokenLifetime = at, 90*time.Second+time.Microsecond
	createClient(t, e, c)
	k := newKey("k1", "a", at)
	k.ExpiresAt, k.LastUsedAt = at.Add(time.Hour), at.Add(time.Minute)
	createKey(t, e, k)
	if err := e.APIKeys().RotateKey(context.Background(), "k1", at.Add(2*time.Hour), newKey("k2", "a", at)); err != nil {
		t.Fatal(err)
	}
	if err := e.APIKeys().RevokeKey(context.Background(), "k1", at.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := getKey(t, e, "k1")
	gotClient, err := e.APIKeys().Client(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"Client.CreatedAt", gotClient.CreatedAt, want},
		{"CreatedAt", got.CreatedAt, want},
		{"ExpiresAt", got.ExpiresAt, want.Add(time.Hour)},
		{"LastUsedAt", got.LastUsedAt, want.Add(time.Minute)},
		{"GraceUntil", got.GraceUntil, want.Add(2 * time.Hour)},
		{"RevokedAt", got.RevokedAt, want.Add(3 * time.Hour)},
	} {
		// == and not Equal: the location must be UTC and the monotonic
		// reading gone.
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if gotClient.TokenLifetime != 90*time.Second {
		t.Errorf("TokenLifetime = %v, want 1m30s (milliseconds)", gotClient.TokenLifetime)
	}
}

func testRotate(t *testing.T, e *env) {
	ctx := context.Background()
	ks := e.APIKeys()
	createClient(t, e, newClient("a"))
	createClient(t, e, newClient("b"))
	createKey(t, e, newKey("k1", "a", t0))
	g0 := generation(t, e)

	grace := t0.Add(24 * time.Hour)
	k2 := newKey("k2", "a", t0.Add(time.Hour))
	if err := ks.RotateKey(ctx, "k1", grace, k2); err != nil {
		t.Fatalf("RotateKey(k1): %v", err)
	}
	if got := getKey(t, e, "k2"); !reflect.DeepEqual(got, *k2) {
		t.Errorf("new key =\n%+v\nwant\n%+v", got, *k2)
	}
	old := getKey(t, e, "k1")
	if old.ReplacedBy != "k2" || !old.GraceUntil.Equal(grace) || !old.RevokedAt.IsZero() {
		t.Errorf("old key: ReplacedBy %q, GraceUntil %v, RevokedAt %v; want k2, %v, zero", old.ReplacedBy, old.GraceUntil, old.RevokedAt, grace)
	}
	g1 := generation(t, e)
	if g1 == g0 {
		t.Errorf("Generation stayed %d after a rotation", g0)
	}

	// The replaced key cannot be rotated again; nothing is stored.
	err := ks.RotateKey(ctx, "k1", grace, newKey("k3", "a", t0.Add(2*time.Hour)))
	if !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("second RotateKey(k1) = %v, want ErrConflict", err)
	}
	if _, err := ks.Key(ctx, "k3"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Key(k3) after a refused rotation = %v, want ErrNotFound", err)
	}
	if g := generation(t, e); g != g1 {
		t.Errorf("Generation moved from %d to %d on a refused rotation", g1, g)
	}

	// Nor can a revoked key.
	if err := ks.RevokeKey(ctx, "k2", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := ks.RotateKey(ctx, "k2", grace, newKey("k4", "a", t0)); !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("RotateKey of a revoked key = %v, want ErrConflict", err)
	}
	if err := ks.RotateKey(ctx, "nope", grace, newKey("k5", "a", t0)); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("RotateKey of an unknown key = %v, want ErrNotFound", err)
	}

	// A key is replaced by a key of its own client.
	createKey(t, e, newKey("k6", "a", t0))
	if err := ks.RotateKey(ctx, "k6", grace, newKey("k7", "b", t0)); err == nil {
		t.Error("RotateKey accepted a new key of another client")
	}
	// A zero grace means none.
	if err := ks.RotateKey(ctx, "k6", time.Time{}, newKey("k8", "a", t0)); err != nil {
		t.Fatalf("RotateKey without grace: %v", err)
	}
	if got := getKey(t, e, "k6"); got.ReplacedBy != "k8" || !got.GraceUntil.IsZero() {
		t.Errorf("key rotated without grace: ReplacedBy %q, GraceUntil %v", got.ReplacedBy, got.GraceUntil)
	}
	if rs, err := ks.Keys(ctx, ""); err != nil || !reflect.DeepEqual(keyIDs(rs), []string{"k1", "k6", "k8", "k2"}) {
		t.Errorf("Keys = %v, %v; want k1 k6 k8 k2", keyIDs(rs), err)
	}
}

// A rotation whose new key cannot be stored changes nothing.
func testRotateAtomic(t *testing.T, e *env) {
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	createKey(t, e, newKey("k1", "a", t0))
	createKey(t, e, newKey("k2", "a", t0))
	g0 := generation(t, e)
	dup := newKey("k3", "a", t0)
	dup.Hash = hashOf("k2")
	err := e.APIKeys().RotateKey(ctx, "k1", t0.Add(time.Hour), dup)
	if !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("RotateKey to a key with a stored hash = %v, want ErrConflict", err)
	}
	noHash(t, err, dup.Hash)
	if got := getKey(t, e, "k1"); got.ReplacedBy != "" || !got.GraceUntil.IsZero() {
		t.Errorf("k1 after a failed rotation: ReplacedBy %q, GraceUntil %v; want unchanged", got.ReplacedBy, got.GraceUntil)
	}
	if g := generation(t, e); g != g0 {
		t.Errorf("Generation moved from %d to %d on a failed rotation", g0, g)
	}
	if err := e.APIKeys().RotateKey(ctx, "k1", t0.Add(time.Hour), newKey("k3", "a", t0)); err != nil {
		t.Errorf("RotateKey after the failed one: %v", err)
	}
}

func testRotateConcurrent(t *testing.T, e *env) {
	const n = 16
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	createKey(t, e, newKey("k", "a", t0))
	stores := []store.Store{e}
	if s := e.second(t); s != nil {
		stores = append(stores, s)
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			next := newKey(fmt.Sprint("next", i), "a", t0.Add(ms(i)))
			errs[i] = stores[i%len(stores)].APIKeys().RotateKey(ctx, "k", t0.Add(time.Hour), next)
		})
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner == "":
			winner = fmt.Sprint("next", i)
		case err == nil:
			t.Errorf("rotations %s and next%d both won", winner, i)
		case !errors.Is(err, apikey.ErrConflict):
			t.Errorf("rotation %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner == "" {
		t.Fatal("no rotation won")
	}
	if got := getKey(t, e, "k"); got.ReplacedBy != winner {
		t.Errorf("k replaced by %q, want the winner %s", got.ReplacedBy, winner)
	}
	if rs, err := e.APIKeys().Keys(ctx, "a"); err != nil || len(rs) != 2 {
		t.Errorf("Keys(a) = %v, %v; want k and the winner's key only", keyIDs(rs), err)
	}
}

func testRevokeKey(t *testing.T, e *env) {
	ctx := context.Background()
	ks := e.APIKeys()
	createClient(t, e, newClient("a"))
	createKey(t, e, newKey("k1", "a", t0))
	createKey(t, e, newKey("k2", "a", t0))
	g0 := generation(t, e)
	at := t0.Add(time.Hour)
	if err := ks.RevokeKey(ctx, "k1", at); err != nil {
		t.Fatalf("RevokeKey(k1): %v", err)
	}
	if got := getKey(t, e, "k1"); !got.RevokedAt.Equal(at) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, at)
	}
	if got := getKey(t, e, "k2"); !got.RevokedAt.IsZero() {
		t.Errorf("k2 revoked at %v along with k1", got.RevokedAt)
	}
	g1 := generation(t, e)
	if g1 == g0 {
		t.Errorf("Generation stayed %d after a revocation", g0)
	}
	if err := ks.RevokeKey(ctx, "k1", at.Add(time.Hour)); !errors.Is(err, apikey.ErrConflict) {
		t.Errorf("second RevokeKey(k1) = %v, want ErrConflict", err)
	}
	if got := getKey(t, e, "k1"); !got.RevokedAt.Equal(at) {
		t.Errorf("RevokedAt = %v after a second revocation, want the first, %v", got.RevokedAt, at)
	}
	if g := generation(t, e); g != g1 {
		t.Errorf("Generation moved from %d to %d on a refused revocation", g1, g)
	}
	if err := ks.RevokeKey(ctx, "nope", at); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("RevokeKey(unknown) = %v, want ErrNotFound", err)
	}
	// A key in its rotation grace can be revoked, ending the grace.
	if err := ks.RotateKey(ctx, "k2", at.Add(24*time.Hour), newKey("k3", "a", at)); err != nil {
		t.Fatal(err)
	}
	if err := ks.RevokeKey(ctx, "k2", at); err != nil {
		t.Errorf("RevokeKey of a replaced key: %v", err)
	}
}

func testTouchKeys(t *testing.T, e *env) {
	ctx := context.Background()
	ks := e.APIKeys()
	createClient(t, e, newClient("a"))
	for _, id := range []string{"k1", "k2", "k3"} {
		createKey(t, e, newKey(id, "a", t0))
	}
	g0 := generation(t, e)
	t1 := t0.Add(time.Hour)
	if err := ks.TouchKeys(ctx, map[string]time.Time{"k1": t1, "k2": t1, "nope": t1}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}
	if err := ks.TouchKeys(ctx, map[string]time.Time{"k1": t1.Add(-time.Minute), "k2": t1.Add(time.Minute)}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}
	if err := ks.TouchKeys(ctx, nil); err != nil {
		t.Errorf("TouchKeys(nil): %v", err)
	}
	for id, want := range map[string]time.Time{"k1": t1, "k2": t1.Add(time.Minute), "k3": {}} {
		if got := getKey(t, e, id).LastUsedAt; !got.Equal(want) {
			t.Errorf("%s: LastUsedAt = %v, want %v", id, got, want)
		}
	}
	if g := generation(t, e); g != g0 {
		t.Errorf("Generation moved from %d to %d on TouchKeys", g0, g)
	}
}

// Generation is the database's: a change made through one handle (an
// instance, a process) is seen through another.
func testGenerationShared(t *testing.T, e *env) {
	s := e.second(t)
	if s == nil {
		t.Skip("the backend cannot open a second handle on its database")
	}
	ctx := context.Background()
	createClient(t, e, newClient("a"))
	createKey(t, e, newKey("k1", "a", t0))
	createKey(t, e, newKey("k2", "a", t0))
	g0 := generation(t, s)
	if g := generation(t, e); g != g0 {
		t.Fatalf("two handles disagree on Generation: %d and %d", g, g0)
	}
	if err := e.APIKeys().RevokeKey(ctx, "k1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	g1 := generation(t, s)
	if g1 == g0 {
		t.Errorf("the second handle's Generation stayed %d after a revocation through the first", g0)
	}
	if r, err := s.APIKeys().KeyByHash(ctx, hashOf("k1")); err != nil || r.RevokedAt.IsZero() {
		t.Errorf("the second handle reads k1 as %+v, %v; want revoked", r, err)
	}
	if err := s.APIKeys().SetClientDisabled(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	if g := generation(t, e); g == g1 {
		t.Errorf("the first handle's Generation stayed %d after a client was disabled through the second", g1)
	}
	if err := s.APIKeys().RotateKey(ctx, "k2", t0.Add(time.Hour), newKey("k3", "a", t0)); err != nil {
		t.Fatal(err)
	}
	if g := generation(t, e); g != generation(t, s) {
		t.Errorf("two handles disagree on Generation after a rotation: %d and %d", g, generation(t, s))
	}
}

func signingKey(id string, created time.Time) authserver.StoredKey {
	return authserver.StoredKey{
		ID:        id,
		Alg:       "ES256",
		Public:    []byte("public " + id),
		Sealed:    []byte("sealed " + id),
		CreatedAt: created,
	}
}

func signingKeys(t *testing.T, s store.Store) map[string]authserver.StoredKey {
	t.Helper()
	ks, err := s.SigningKeys().SigningKeys(context.Background())
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	out := map[string]authserver.StoredKey{}
	for _, k := range ks {
		out[k.ID] = k
	}
	return out
}

func rotateSigning(t *testing.T, s store.Store, next authserver.StoredKey, now, drop time.Time) {
	t.Helper()
	if err := s.SigningKeys().RotateSigningKeys(context.Background(), next, now, drop); err != nil {
		t.Fatalf("RotateSigningKeys(%s): %v", next.ID, err)
	}
}

func testSigningRotation(t *testing.T, e *env) {
	if got := signingKeys(t, e); len(got) != 0 {
		t.Fatalf("SigningKeys of an empty store = %v", got)
	}
	t1, t2, t3 := t0.Add(24*time.Hour), t0.Add(48*time.Hour), t0.Add(72*time.Hour)
	k1, k2, k3, k4 := signingKey("k1", t0), signingKey("k2", t1), signingKey("k3", t2), signingKey("k4", t3)
	k4.Alg = "EdDSA"

	with := func(k authserver.StoredKey, state authserver.KeyState, activated, retired time.Time) authserver.StoredKey {
		k.State, k.ActivatedAt, k.RetiredAt = state, activated, retired
		return k
	}
	check := func(step string, want ...authserver.StoredKey) {
		t.Helper()
		wantMap := map[string]authserver.StoredKey{}
		for _, k := range want {
			wantMap[k.ID] = k
		}
		if got := signingKeys(t, e); !reflect.DeepEqual(got, wantMap) {
			t.Errorf("after %s, SigningKeys =\n%+v\nwant\n%+v", step, got, wantMap)
		}
	}

	rotateSigning(t, e, k1, t0, t0.Add(-24*time.Hour))
	check("the first rotation", with(k1, authserver.Next, time.Time{}, time.Time{}))
	rotateSigning(t, e, k2, t1, t0)
	check("the second rotation",
		with(k1, authserver.Current, t1, time.Time{}),
		with(k2, authserver.Next, time.Time{}, time.Time{}))
	rotateSigning(t, e, k3, t2, t0)
	check("the third rotation",
		with(k1, authserver.Retired, t1, t2),
		with(k2, authserver.Current, t2, time.Time{}),
		with(k3, authserver.Next, time.Time{}, time.Time{}))
	// k1, retired at t2, goes; k2, retired now, stays.
	rotateSigning(t, e, k4, t3, t2.Add(ms(1)))
	check("the fourth rotation",
		with(k2, authserver.Retired, t2, t3),
		with(k3, authserver.Current, t3, time.Time{}),
		with(k4, authserver.Next, time.Time{}, time.Time{}))
	// Retired keys stay until dropRetiredBefore passes their retirement.
	k5 := signingKey("k5", t3)
	rotateSigning(t, e, k5, t3.Add(time.Hour), t3)
	check("the fifth rotation",
		with(k2, authserver.Retired, t2, t3),
		with(k3, authserver.Retired, t3, t3.Add(time.Hour)),
		with(k4, authserver.Current, t3.Add(time.Hour), time.Time{}),
		with(k5, authserver.Next, time.Time{}, time.Time{}))

	// A zero CreatedAt is the rotation's time.
	k6 := signingKey("k6", time.Time{})
	rotateSigning(t, e, k6, t3.Add(2*time.Hour), t3.Add(2*time.Hour))
	if got := signingKeys(t, e)["k6"]; !got.CreatedAt.Equal(t3.Add(2 * time.Hour)) {
		t.Errorf("CreatedAt of a key given none = %v, want the rotation's time", got.CreatedAt)
	}
}

func testSigningRefused(t *testing.T, e *env) {
	ctx := context.Background()
	rotateSigning(t, e, signingKey("k1", t0), t0, t0)
	rotateSigning(t, e, signingKey("k2", t0), t0.Add(time.Hour), t0)
	before := signingKeys(t, e)
	current := signingKey("k3", t0)
	current.State = authserver.Current
	for name, bad := range map[string]authserver.StoredKey{
		"a stored ID":     signingKey("k1", t0),
		"no ID":           signingKey("", t0),
		"state Current":   current,
		"no sealed key":   {ID: "k4", Alg: "ES256", Public: []byte("p"), CreatedAt: t0},
		"an ID not text":  signingKey("k\xff", t0),
		"no public key":   {ID: "k5", Alg: "ES256", Sealed: []byte("s"), CreatedAt: t0},
		"alg with a NUL:": {ID: "k6", Alg: "ES256\x00", Public: []byte("p"), Sealed: []byte("s"), CreatedAt: t0},
	} {
		if err := e.SigningKeys().RotateSigningKeys(ctx, bad, t0.Add(2*time.Hour), t0); err == nil {
			t.Errorf("RotateSigningKeys accepted a key with %s", name)
		}
	}
	if got := signingKeys(t, e); !reflect.DeepEqual(got, before) {
		t.Errorf("refused rotations changed the keys:\n%+v\nwant\n%+v", got, before)
	}
}

// Rotations by several instances at once are serialized: each moves
// every key one step, and at most one key is Current, one Next.
func testSigningConcurrent(t *testing.T, e *env) {
	const n = 12
	stores := []store.Store{e}
	if s := e.second(t); s != nil {
		stores = append(stores, s)
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			now := t0.Add(time.Duration(i) * time.Minute)
			errs[i] = stores[i%len(stores)].SigningKeys().RotateSigningKeys(context.Background(),
				signingKey(fmt.Sprint("k", i), now), now, time.Time{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("rotation %d: %v", i, err)
		}
	}
	count := map[authserver.KeyState]int{}
	for _, k := range signingKeys(t, e) {
		count[k.State]++
		switch {
		case k.State == authserver.Current && (k.ActivatedAt.IsZero() || !k.RetiredAt.IsZero()),
			k.State == authserver.Retired && (k.ActivatedAt.IsZero() || k.RetiredAt.IsZero()),
			k.State == authserver.Next && (!k.ActivatedAt.IsZero() || !k.RetiredAt.IsZero()):
			t.Errorf("key %s is %s, activated %v, retired %v", k.ID, k.State, k.ActivatedAt, k.RetiredAt)
		}
	}
	if count[authserver.Current] != 1 || count[authserver.Next] != 1 || count[authserver.Retired] != n-2 {
		t.Errorf("after %d rotations: %v; want 1 current, 1 next, %d retired", n, count, n-2)
	}
}

// tokenOf is a token of client issued at iat.
func tokenOf(jti, client string, iat time.Time) token.TokenRef {
	return token.TokenRef{JTI: jti, ClientID: client, IssuedAt: iat, Expires: iat.Add(15 * time.Minute)}
}

func isRevoked(t *testing.T, s store.Store, ref token.TokenRef) bool {
	t.Helper()
	ok, err := s.RevokedTokens().TokenRevoked(context.Background(), ref)
	if err != nil {
		t.Fatalf("TokenRevoked(%+v): %v", ref, err)
	}
	return ok
}

func testRevokedTokens(t *testing.T, e *env) {
	ctx := context.Background()
	rs := e.RevokedTokens()
	createClient(t, e, newClient("shop"))
	revoked := func(jti string) bool {
		t.Helper()
		return isRevoked(t, e, tokenOf(jti, "shop", t0))
	}
	if revoked("a") {
		t.Error("TokenRevoked(a) before any revocation")
	}
	for _, r := range []struct {
		jti string
		exp time.Time
	}{
		{"a", t0.Add(time.Hour)},
		{"b", t0.Add(2 * time.Hour)},
		// Again: no error, and the revocation lasts as long as the
		// latest expiry given.
		{"a", t0.Add(time.Hour)},
		{"a", t0.Add(30 * time.Minute)},
	} {
		if err := rs.RevokeToken(ctx, r.jti, r.exp); err != nil {
			t.Fatalf("RevokeToken(%s, %v): %v", r.jti, r.exp, err)
		}
	}
	if !revoked("a") || !revoked("b") || revoked("c") {
		t.Errorf("TokenRevoked a, b, c = %t, %t, %t; want true, true, false", revoked("a"), revoked("b"), revoked("c"))
	}
	if err := rs.PruneRevoked(ctx, t0.Add(45*time.Minute)); err != nil {
		t.Fatalf("PruneRevoked: %v", err)
	}
	if !revoked("a") {
		t.Error("a pruned before its expiry")
	}
	// Expired before t: pruned; at t: kept.
	if err := rs.PruneRevoked(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("PruneRevoked: %v", err)
	}
	if revoked("a") || !revoked("b") {
		t.Errorf("after pruning, TokenRevoked a, b = %t, %t; want false, true", revoked("a"), revoked("b"))
	}
	for _, bad := range []struct {
		jti string
		exp time.Time
	}{{"", t0}, {"c", time.Time{}}, {"c\x00", t0}} {
		if err := rs.RevokeToken(ctx, bad.jti, bad.exp); err == nil {
			t.Errorf("RevokeToken(%q, %v) accepted", bad.jti, bad.exp)
		}
	}
}

// Every token of a client issued up to a time, by its iat: those issued
// later are not revoked, other clients' are not, and revoking again keeps
// the latest time. Pruned once every such token has expired.
func testRevokedClientTokens(t *testing.T, e *env) {
	ctx := context.Background()
	rs := e.RevokedTokens()
	createClient(t, e, newClient("shop"))
	createClient(t, e, newClient("other"))
	before, at, after := tokenOf("1", "shop", t0), t0.Add(ms(500)), tokenOf("2", "shop", t0.Add(time.Second))
	if isRevoked(t, e, before) || isRevoked(t, e, after) {
		t.Fatal("tokens revoked before any revocation")
	}
	if err := rs.RevokeClientTokens(ctx, "shop", at); err != nil {
		t.Fatalf("RevokeClientTokens: %v", err)
	}
	if !isRevoked(t, e, before) || !isRevoked(t, e, tokenOf("3", "shop", at)) {
		t.Error("a token issued before (or at) the revocation is not revoked")
	}
	if isRevoked(t, e, after) || isRevoked(t, e, tokenOf("1", "other", t0)) {
		t.Error("a later token, or another client's, is revoked")
	}
	if err := rs.RevokeClientTokens(ctx, "shop", t0.Add(-time.Hour)); err != nil {
		t.Fatalf("RevokeClientTokens earlier: %v", err)
	}
	if !isRevoked(t, e, before) {
		t.Error("an earlier revocation undid a later one")
	}
	if s2 := e.second(t); s2 != nil && !isRevoked(t, s2, before) {
		t.Error("another handle does not see the revocation")
	}
	// Kept until every token it covers has expired.
	forget := at.Add(authserver.MaxLifetime + authserver.ClockSkew)
	if err := rs.PruneRevoked(ctx, forget); err != nil {
		t.Fatal(err)
	}
	if !isRevoked(t, e, before) {
		t.Error("pruned while a token it covers could still be valid")
	}
	if err := rs.PruneRevoked(ctx, forget.Add(ms(1))); err != nil {
		t.Fatal(err)
	}
	if isRevoked(t, e, before) {
		t.Error("not pruned after every token it covers expired")
	}
	for _, bad := range []struct {
		client string
		at     time.Time
	}{{"", t0}, {"shop", time.Time{}}, {"sh\x00op", t0}} {
		if err := rs.RevokeClientTokens(ctx, bad.client, bad.at); err == nil {
			t.Errorf("RevokeClientTokens(%q, %v) accepted", bad.client, bad.at)
		}
	}
}

// A disabled client's tokens are revoked whatever their iat, for as long
// as it is disabled; a client the store does not know has no valid
// tokens: introspection and validation agree with the client's state.
func testRevokedDisabledClient(t *testing.T, e *env) {
	ctx := context.Background()
	createClient(t, e, newClient("shop"))
	tok := tokenOf("1", "shop", t0)
	if err := e.APIKeys().SetClientDisabled(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	if !isRevoked(t, e, tok) || !isRevoked(t, e, tokenOf("2", "shop", t0.Add(time.Hour))) {
		t.Error("a disabled client's token is not revoked")
	}
	if err := e.APIKeys().SetClientDisabled(ctx, "shop", false); err != nil {
		t.Fatal(err)
	}
	if isRevoked(t, e, tok) {
		t.Error("enabled again (and no revocation of its tokens): its token is still revoked")
	}
	if !isRevoked(t, e, tokenOf("1", "nobody", t0)) || !isRevoked(t, e, tokenOf("1", "", t0)) {
		t.Error("a token of a client the store does not know is not revoked")
	}
}
