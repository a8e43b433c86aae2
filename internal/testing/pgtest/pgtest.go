// Package pgtest gives a test a PostgreSQL database of its own.
//
// The server is named by the environment variable RAMPART_TEST_POSTGRES,
// a postgres:// URL whose user may create databases, e.g.
//
//	postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//
// Tests needing it are skipped when it is unset. Each gets a new database,
// so that tests can run in parallel and never touch the database the URL
// names (migrations would create tables in it).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env is the environment variable naming the test server.
const Env = "RAMPART_TEST_POSTGRES"

// Database creates a database named rampart_test_<random hex>, dropped
// when the test ends, and returns its DSN. It skips the test when [Env]
// is unset.
func Database(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(Env)
	if admin == "" {
		t.Skip(Env + " is not set (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)")
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatal(Env + " must be a postgres:// URL")
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "rampart_test_" + hex.EncodeToString(b)

	exec := func(sql string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends the connections a failing test left open.
		if err := exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
