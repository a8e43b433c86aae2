package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	_ "github.com/rampartsec/rampart/internal/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/pgtest"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/internal/store/storetest"
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
	var rows, version int
	if err := dbs[0].pool.QueryRow(context.Background(),
		"SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || version != 1 {
		t.Errorf("schema_migrations has %d rows up to version %d, want 1, 1", rows, version)
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
