package backend

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/store/postgres"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/testing/pgtest"
)

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ dsn, file string }{
		{filepath.Join(dir, "plain.db"), "plain.db"},
		{"sqlite:" + filepath.Join(dir, "prefixed.db"), "prefixed.db"},
		{"sqlite://" + filepath.Join(dir, "url.db"), "url.db"},
	} {
		s, err := Open(context.Background(), tc.dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", tc.dsn, err)
		}
		if _, ok := s.(*sqlite.DB); !ok {
			t.Errorf("Open(%q) = %T, want *sqlite.DB", tc.dsn, s)
		}
		s.Close()
		if _, err := os.Stat(filepath.Join(dir, tc.file)); err != nil {
			t.Errorf("Open(%q) did not create %s: %v", tc.dsn, tc.file, err)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	for _, d := range []string{dsn, "postgresql" + strings.TrimPrefix(dsn, "postgres")} {
		s, err := Open(context.Background(), d)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if _, ok := s.(*postgres.DB); !ok {
			t.Errorf("Open(%s) = %T, want *postgres.DB", d, s)
		}
		s.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	const secret = "hunter2-secret"
	for _, tc := range []struct{ dsn, want string }{
		{"", "no database given"},
		{"mysql://root:" + secret + "@db/rampart", `unsupported database scheme "mysql"`},
		{"sqlite://relative.db", "absolute path"},
		{"postgres://rampart:" + secret + "@127.0.0.1:1/rampart?connect_timeout=1", "postgres: "},
		{"postgresql://rampart:" + secret + "@127.0.0.1:bad/rampart", "postgres: invalid DSN"},
		{"sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", secret+".db"), "sqlite: "},
	} {
		_, err := Open(context.Background(), tc.dsn)
		if err == nil {
			t.Errorf("Open(%q) succeeded", tc.dsn)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "store: ") || !strings.Contains(msg, tc.want) {
			t.Errorf("Open(%q) = %q, want it prefixed store: and to contain %q", tc.dsn, msg, tc.want)
		}
		if strings.Contains(tc.dsn, "://") && strings.Contains(msg, secret) {
			t.Errorf("Open(%q) shows the password: %q", tc.dsn, msg)
		}
	}
}

// Describe names the database for start-up lines and never shows a
// password (usability 25: host and database name, not just "postgres").
func TestDescribe(t *testing.T) {
	const secret = "s3cret-pw"
	dir := t.TempDir()
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://rampart:" + secret + "@db.internal:5433/payments?sslmode=require", "PostgreSQL rampart@db.internal:5433, database payments"},
		{"postgresql://rampart:" + secret + "@[2001:db8::5]/cp", "PostgreSQL rampart@[2001:db8::5]:5432, database cp"},
		{"postgres://rampart:bad:" + secret + "@db:notaport/x", "PostgreSQL (invalid DSN)"},
		{filepath.Join(dir, "rampart.db"), filepath.Join(dir, "rampart.db")},
		{"sqlite:" + filepath.Join(dir, "x.db"), filepath.Join(dir, "x.db")},
	} {
		got := Describe(tc.dsn)
		if got != tc.want {
			t.Errorf("Describe(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
		if strings.Contains(got, secret) {
			t.Errorf("Describe(%q) shows the password", tc.dsn)
		}
	}
	if f, ok := File("postgres://db/x"); ok || f != "" {
		t.Errorf("File(postgres) = %q, %v", f, ok)
	}
	if f, ok := File("relative.db"); !ok || !filepath.IsAbs(f) {
		t.Errorf("File(relative.db) = %q, %v", f, ok)
	}
}
