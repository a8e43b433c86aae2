package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/internal/store/storetest"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func open(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
		path := filepath.Join(t.TempDir(), "rampart.db")
		reopen := func(t *testing.T) store.Store { return open(t, path) }
		return reopen(t), reopen
	})
}

func TestFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	db := open(t, path)
	defer db.Close()
	if err := db.Reports().AddReports(context.Background(), []store.Report{{
		Received: time.Now(),
		Content:  store.ReportContent{Digest: strings.Repeat("ab", 32)},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
}

func TestCompanionsRestricted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	open(t, path).Close()
	// Companions left readable by someone else are tightened at Open.
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := open(t, path)
	defer db.Close()
	for _, p := range []string{path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other access", filepath.Base(p), st.Mode().Perm())
		}
	}
}

func TestPragmas(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "rampart.db"))
	defer db.Close()
	ctx := context.Background()
	for _, c := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
	} {
		for _, pool := range []struct {
			name string
			db   *sql.DB
		}{{"write", db.write}, {"read", db.read}} {
			var got string
			if err := pool.db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("%s pool: PRAGMA %s = %s, want %s", pool.name, c.pragma, got, c.want)
			}
		}
	}
	if _, err := db.read.ExecContext(ctx, "DELETE FROM bundles"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	db := open(t, path)
	if _, err := db.write.Exec("INSERT INTO schema_migrations (version, applied_ms) VALUES (999, 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(context.Background(), path)
	var newer *sqlq.NewerSchemaError
	if !errors.As(err, &newer) || newer.Database != 999 {
		t.Fatalf("Open of a newer schema = %v, want NewerSchemaError", err)
	}
	if !strings.HasPrefix(err.Error(), "sqlite: ") || !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say what is wrong", err)
	}
}

func TestMigrationsApplyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	open(t, path).Close()
	db := open(t, path)
	defer db.Close()
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var n, v int
	if err := db.read.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || v != len(ms) {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d, %[3]d", n, v, len(ms))
	}
}

func TestPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rampart.db")
	open(t, path).Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the path given: %v", err)
	}
}

func BenchmarkAddReports(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "rampart.db"))
	defer db.Close()
	storetest.BenchmarkAddReports(b, db)
}

func BenchmarkKeyByHash(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "rampart.db"))
	defer db.Close()
	storetest.BenchmarkKeyByHash(b, db)
}

// The database holds an API key's hash and hint, never the key: read as
// bytes, the file and its WAL show the hint and not the key, nor the part
// of it the hint does not show.
func TestNoKeyInTheClear(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rampart.db")
	db := open(t, path)
	defer db.Close()
	key, err := apikey.Generate(apikey.Live)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.APIKeys().CreateClient(ctx, &apikey.Client{ID: "payments"}); err != nil {
		t.Fatal(err)
	}
	if err := db.APIKeys().CreateKey(ctx, &apikey.Record{
		ID: "k1", ClientID: "payments", Hash: apikey.Hash(key, []byte("pepper")), Hint: key.Hint(),
	}); err != nil {
		t.Fatal(err)
	}
	secret := key.String()
	check := func(when string) {
		t.Helper()
		var data []byte
		for _, p := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(p)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			data = append(data, b...)
		}
		if !bytes.Contains(data, []byte(key.Hint())) {
			t.Fatalf("%s: the hint is not in the files: this test cannot see the rows", when)
		}
		// The messages do not show the key, though it is a throwaway:
		// test logs are kept too.
		for what, s := range map[string]string{"the key": secret, "the part of the key the hint hides": secret[len(key.Hint())-len("…"):]} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s: the database files hold %s", when, what)
			}
		}
	}
	check("open")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed")
}

// A database a binary before 0005_known_cert_pins.sql made opens, and its
// report groups read back, without known certificate pins.
func TestOpensADatabaseWithoutKnownCertPins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL) STRICT"); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:4] {
		if _, err := old.Exec(m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := old.Exec("INSERT INTO schema_migrations VALUES (?, 0)", m.Version); err != nil {
			t.Fatal(err)
		}
	}
	digest := strings.Repeat("ab", 32)
	if _, err := old.Exec(`INSERT INTO report_groups (digest, format, hostname, port, noted_hostname, include_subdomains,
		mode, reason, served_pin, served_subject, app_bundle_id, app_version, app_platform, body)
		VALUES (?, 'rfc7469', 'api.example.com', 443, 'example.com', 1, 'enforce', 'pin-mismatch', 'sha256/x=', 'CN=x', '', '', '', ?)`,
		digest, []byte(`{"rampart-known-cert-pins":["cert-sha256:00"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec("INSERT INTO report_events (group_id, received_ms, source, user_agent, device) VALUES (1, 1000, '192.0.2.1', '', '')"); err != nil {
		t.Fatal(err)
	}
	old.Close()

	db := open(t, path)
	defer db.Close()
	gs, err := db.Reports().Groups(context.Background(), store.ReportFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].Content.Digest != digest || gs[0].Content.KnownCertPins != nil || gs[0].Reports != 1 ||
		!bytes.Contains(gs[0].Content.Body, []byte("cert-sha256:00")) {
		t.Errorf("groups after the upgrade: %+v", gs)
	}
}
