package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/internal/store/storetest"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/testing/pgtest"
)

func openTest(t testing.TB, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
		dsn := pgtest.Database(t)
		reopen := func(t *testing.T) store.Store { return openTest(t, dsn) }
		return reopen(t), reopen
	})
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.Database(t)
	const n = 8
	var (
		wg   sync.WaitGroup
		dbs  = make([]*DB, n)
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var rows, version int
	if err := dbs[0].pool.QueryRow(context.Background(),
		"SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != len(ms) || version != len(ms) {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d, %[3]d", rows, version, len(ms))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.Database(t)
	db := openTest(t, dsn)
	if _, err := db.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version) VALUES (999)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(context.Background(), dsn)
	var newer *sqlq.NewerSchemaError
	if !errors.As(err, &newer) || newer.Database != 999 {
		t.Fatalf("Open of a newer schema = %v, want NewerSchemaError", err)
	}
	if !strings.HasPrefix(err.Error(), "postgres: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestErrorsHidePassword(t *testing.T) {
	const secret = "s3cr3t-pa55"
	for _, dsn := range []string{
		"postgres://rampart:" + secret + "@127.0.0.1:1/rampart?sslmode=disable&connect_timeout=1",
		"postgres://rampart:" + secret + "@127.0.0.1:notaport/rampart",
		"postgres://rampart:" + secret + "/oops@127.0.0.1/rampart",
		"host=127.0.0.1 port=1 user=rampart password=" + secret + " sslmode=disable connect_timeout=1",
		"host=127.0.0.1 port=x user=rampart password='" + secret + "'",
		"postgres://127.0.0.1:1/rampart?password=" + secret + "&sslmode=disable&connect_timeout=1",
	} {
		_, err := Open(context.Background(), dsn)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		t.Log(err)
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pa55") {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "postgres: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

func BenchmarkAddReports(b *testing.B) {
	db := openTest(b, pgtest.Database(b))
	defer db.Close()
	storetest.BenchmarkAddReports(b, db)
}

func BenchmarkKeyByHash(b *testing.B) {
	db := openTest(b, pgtest.Database(b))
	defer db.Close()
	storetest.BenchmarkKeyByHash(b, db)
}

// The database holds an API key's hash and hint, never the key: every
// row of the auth tables, as text (bytea in hex), shows the hint and not
// the key, nor the part of it the hint does not show, in text or hex.
func TestNoKeyInTheClear(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.Database(t))
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
	var rows strings.Builder
	for _, table := range []string{"clients", "api_keys", "signing_keys", "revoked_tokens", "auth_generation"} {
		var text *string
		if err := db.pool.QueryRow(ctx, "SELECT string_agg(t::text, E'\\n') FROM "+table+" t").Scan(&text); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if text != nil {
			rows.WriteString(*text + "\n")
		}
	}
	if !strings.Contains(rows.String(), key.Hint()) {
		t.Fatalf("the hint is not in the rows: this test cannot see them\n%s", rows.String())
	}
	secret := key.String()
	// The messages do not show the key, though it is a throwaway: test
	// logs are kept too.
	for what, s := range map[string]string{"the key": secret, "the part of the key the hint hides": secret[len(key.Hint())-len("…"):]} {
		if strings.Contains(rows.String(), s) || strings.Contains(rows.String(), hex.EncodeToString([]byte(s))) {
			t.Errorf("the rows hold %s", what)
		}
	}
}

// A database a binary before 0005_known_cert_pins.sql made opens, is
// migrated, and its report groups read back without known certificate
// pins (the SQLite test of the same name, on PostgreSQL).
func TestOpensADatabaseWithoutKnownCertPins(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	old, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(ctx, "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:4] {
		if _, err := old.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := old.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.Version); err != nil {
			t.Fatal(err)
		}
	}
	digest := strings.Repeat("ab", 32)
	if _, err := old.Exec(ctx, `INSERT INTO report_groups (digest, format, hostname, port, noted_hostname, include_subdomains,
		mode, reason, served_pin, served_subject, app_bundle_id, app_version, app_platform, body)
		VALUES ($1, 'rfc7469', 'api.example.com', 443, 'example.com', true, 'enforce', 'pin-mismatch', 'sha256/x=', 'CN=x', '', '', '', $2)`,
		digest, []byte(`{"rampart-known-cert-pins":["cert-sha256:00"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(ctx, "INSERT INTO report_events (group_id, received_ms, source, user_agent, device) SELECT id, 1000, '192.0.2.1', '', '' FROM report_groups"); err != nil {
		t.Fatal(err)
	}
	old.Close()

	db := openTest(t, dsn)
	defer db.Close()
	gs, err := db.Reports().Groups(ctx, store.ReportFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].Content.Digest != digest || gs[0].Content.KnownCertPins != nil || gs[0].Reports != 1 ||
		!strings.Contains(string(gs[0].Content.Body), "cert-sha256:00") {
		t.Errorf("groups after the upgrade: %+v", gs)
	}
	var version int
	if err := db.pool.QueryRow(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&version); err != nil || version != len(ms) {
		t.Errorf("schema version %d (%v), want %d", version, err, len(ms))
	}
}
