package secrets_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	. "github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/token/authserver"
)

func openDB(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The first master key to use a database is recorded; another one is
// refused with a message saying how to fix it, and a master.key made for
// that attempt is removed again. The right key still works.
func TestVerifyRecordsThenRefusesAnother(t *testing.T) {
	t.Setenv(Env, "")
	ctx := context.Background()
	st := openDB(t)
	first, err := Load(t.TempDir(), true)
	if err != nil || first.Created == "" {
		t.Fatalf("Load: %+v, %v", first, err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), first); err != nil {
		t.Fatalf("Verify at first use: %v", err)
	}
	if v, err := st.Settings().Get(ctx, store.MasterKeyCheckSetting); err != nil || !strings.HasPrefix(v, "v1:") {
		t.Fatalf("check value %q, %v", v, err)
	}

	otherDir := t.TempDir()
	other, err := Load(otherDir, true)
	if err != nil {
		t.Fatal(err)
	}
	err = Verify(ctx, store.MasterKeyRecords(st), other)
	var me *MismatchError
	if !errors.Is(err, ErrMismatch) || !errors.As(err, &me) {
		t.Fatalf("Verify with another key = %v, want a MismatchError", err)
	}
	path := filepath.Join(otherDir, "master.key")
	if me.Removed != path || me.Source != path {
		t.Errorf("MismatchError %+v", me)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the wrong master.key made for this run is still there (%v)", err)
	}
	for _, want := range []string{"another master key", "copy master.key from the data directory of an instance that uses this database", "removed again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// A master key that was there before is never removed.
	again, err := Load(otherDir, true)
	if err != nil {
		t.Fatal(err)
	}
	again.Created = ""
	if err := Verify(ctx, store.MasterKeyRecords(st), again); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify = %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("an existing master.key was removed: %v", err)
	}

	if err := Verify(ctx, store.MasterKeyRecords(st), first); err != nil {
		t.Errorf("Verify with the right key after a refusal: %v", err)
	}
}

// A wrong $RAMPART_MASTER_KEY is refused with the variable named.
func TestVerifyNamesTheEnvironment(t *testing.T) {
	ctx := context.Background()
	st := openDB(t)
	t.Setenv(Env, "")
	right, err := Load(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), right); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	t.Setenv(Env, base64.StdEncoding.EncodeToString(raw))
	wrong, err := Load(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), wrong); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "set $RAMPART_MASTER_KEY to the master key of the instances that use this database") {
		t.Errorf("Verify = %v", err)
	}
}

// A database from before check values holds none; its sealed signing
// keys tell the right master key from another, and nothing is recorded
// for a wrong one.
func TestVerifyDatabaseWithoutCheckValue(t *testing.T) {
	t.Setenv(Env, "")
	ctx := context.Background()
	st := openDB(t)
	right, err := Load(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := authserver.EnsureKeys(ctx, st.SigningKeys(), right.Key(SigningKeyKEK), authserver.ES256, time.Now()); err != nil {
		t.Fatal(err)
	}
	wrong, err := Load(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), wrong); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify with a key that does not unseal the signing keys = %v", err)
	}
	if _, err := st.Settings().Get(ctx, store.MasterKeyCheckSetting); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a check value was recorded for the wrong key (%v)", err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), right); err != nil {
		t.Fatalf("Verify with the key that sealed them: %v", err)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), wrong); !errors.Is(err, ErrMismatch) {
		t.Errorf("after recording: %v", err)
	}
}

// A database from before check values, with clients but no signing keys
// (admin commands and the gateway used it, never serve), does not adopt a
// master key this process has just made: its API keys were hashed under
// another. The key made is removed, and nothing is recorded; a key that
// was already there is taken at its word (an independent review of
// usability 23's fix).
func TestVerifyNewKeyForDatabaseWithClients(t *testing.T) {
	t.Setenv(Env, "")
	ctx := context.Background()
	st := openDB(t)
	if err := st.APIKeys().CreateClient(ctx, &apikey.Client{ID: "shop", Scopes: []string{"payment.read"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fresh, err := Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Created == "" {
		t.Fatal("Load did not say it made the key")
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), fresh); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify with a key made now, for a database with clients = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the key made for the refused run is still there (%v)", err)
	}
	if _, err := st.Settings().Get(ctx, store.MasterKeyCheckSetting); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a check value was recorded (%v)", err)
	}
	// The same key, found in place, is taken.
	raw := make([]byte, 32)
	rand.Read(raw)
	if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	found, err := Load(dir, true)
	if err != nil || found.Created != "" {
		t.Fatalf("Load: %v (made %q)", err, found.Created)
	}
	if err := Verify(ctx, store.MasterKeyRecords(st), found); err != nil {
		t.Errorf("Verify with the key in place: %v", err)
	}
}
