// Package sqlite is the default [store.Store]: one file in the data
// directory, needing no set-up, through the pure-Go modernc.org/sqlite.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: a write that
// returned is on disk, and survives the process being killed or the
// machine losing power. The file is created with mode 0600, and its -wal
// and -shm companions are kept no more permissive than it.
//
// # Concurrency
//
// SQLite allows one writer at a time. All writes go through a pool of
// exactly one connection, which starts its transactions with BEGIN
// IMMEDIATE, so writers queue in Go instead of failing with SQLITE_BUSY,
// and a transaction never has to upgrade a read lock (the cause of
// deadlocks between SQLite writers). Reads use a separate pool of
// read-only connections, which WAL lets run alongside the writer. Another
// process opening the same file waits up to the busy timeout.
//
// The write lock that BEGIN IMMEDIATE takes is also what makes the auth
// stores' check-then-write transactions atomic, against other processes
// too: of concurrent RotateKey calls on one key, one wins; signing key
// rotations run one after the other. The key generation is a row bumped
// in the transaction of each change, so a process that reads the new
// number reads the change.
//
// # Schema
//
// The migrations under migrations/ are embedded and applied in order by
// [Open], each recorded in schema_migrations; a database whose schema is
// newer than this binary is refused.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/token/authserver"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// busyTimeout bounds the wait for a lock held by another process (or a
// checkpoint); within a process, writers queue on the one connection.
const busyTimeout = 10 * time.Second

// readConns is the size of the read pool. Dashboard queries are few;
// more connections would only cost memory (each has its own page cache).
const readConns = 4

// DB is a SQLite database. It implements [store.Store].
type DB struct {
	path  string
	write *sql.DB // exactly one connection
	read  *sql.DB // query_only connections

	findGroup, insertGroup, insertEvent, insertEvents *sql.Stmt
	// keyByHash and tokenRevoked run on the read pool, which prepares
	// them once per connection: parsing them would cost more than running
	// them, on the path of requests (API keys, token introspection).
	keyByHash, tokenRevoked *sql.Stmt

	commits atomic.Int64 // of AddReports, to schedule optimize
}

var _ store.Store = (*DB)(nil)

// Open opens the database file at path, creating it with mode 0600 if it
// does not exist, and brings its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: no database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := create(abs); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db := &DB{path: abs}
	if err := db.open(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", abs, err)
	}
	return db, nil
}

// create makes the database file with mode 0600 if it does not exist, so
// that SQLite never creates it with the umask's mode, even briefly. An
// existing file keeps the mode its owner gave it.
func create(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The new directory entry must reach the disk too, or a power loss
	// could lose the file with every commit made to it.
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// dsn returns the driver's DSN for the file: a URI, so that any path can
// be expressed, with the pragmas every connection needs.
func dsn(path string, params ...string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	q := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=foreign_keys(1)",
		// A schema cannot make the connection run functions with side
		// effects (defence against a planted database file).
		"_pragma=trusted_schema(0)",
		// In WAL mode FULL syncs the WAL at every commit: what
		// AddReports promises. NORMAL would lose the last commits on
		// power loss.
		"_pragma=synchronous(FULL)",
	}
	return "file:" + r.Replace(path) + "?" + strings.Join(append(q, params...), "&")
}

func (db *DB) open(ctx context.Context) error {
	var err error
	db.write, err = sql.Open("sqlite", dsn(db.path, "_pragma=journal_mode(WAL)", "_txlock=immediate",
		// Bounds the work of PRAGMA optimize (see optimize).
		"_pragma=analysis_limit(1000)"))
	if err != nil {
		return err
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)

	var mode string
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		// Happens on file systems without shared memory support; the
		// concurrency model above would not hold.
		return fmt.Errorf("journal mode is %q, not wal", mode)
	}
	if err := migrate(ctx, db.write); err != nil {
		return err
	}
	if err := restrictCompanions(db.path); err != nil {
		return err
	}
	if err := db.optimize(ctx); err != nil {
		return err
	}

	db.read, err = sql.Open("sqlite", dsn(db.path, "_pragma=query_only(1)"))
	if err != nil {
		return err
	}
	db.read.SetMaxOpenConns(readConns)
	db.read.SetMaxIdleConns(readConns)
	if err := db.read.PingContext(ctx); err != nil {
		return err
	}

	// Prepared once on the writer's only connection, so that every
	// transaction reuses them (tx.Stmt finds them on its connection).
	if db.findGroup, err = db.write.PrepareContext(ctx, findGroupSQL); err != nil {
		return err
	}
	if db.insertGroup, err = db.write.PrepareContext(ctx, insertGroupSQL); err != nil {
		return err
	}
	if db.insertEvent, err = db.write.PrepareContext(ctx, insertEventsSQL(1)); err != nil {
		return err
	}
	if db.insertEvents, err = db.write.PrepareContext(ctx, insertEventsSQL(eventRows)); err != nil {
		return err
	}
	if db.keyByHash, err = db.read.PrepareContext(ctx, keyByHashSQL); err != nil {
		return err
	}
	if db.tokenRevoked, err = db.read.PrepareContext(ctx, tokenRevokedSQL); err != nil {
		return err
	}
	return nil
}

// optimizeEvery is how many AddReports commits pass between two runs of
// PRAGMA optimize: about 65,000 reports at the collector's batch size.
const optimizeEvery = 256

// optimize refreshes the planner's statistics when the tables have grown
// enough to make them stale. Without them, SQLite answers a time-bounded
// query by scanning every event of every group instead of seeking the
// range asked for in each. It is run at Open and every [optimizeEvery]
// commits, because the data grows from nothing while the process runs.
// 0x10002 makes it consider every table, not only those this connection
// queried (the queries run on the read pool); analysis_limit keeps each
// run to milliseconds.
func (db *DB) optimize(ctx context.Context) error {
	_, err := db.write.ExecContext(ctx, "PRAGMA optimize=0x10002")
	return err
}

// restrictCompanions keeps the -wal and -shm files, which hold recent
// data too, no more permissive than the database. SQLite gives them the
// database's mode when it creates them; this covers files left by an
// earlier run under other settings.
func restrictCompanions(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	want := st.Mode().Perm()
	for _, p := range []string{path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode().Perm()&^want != 0 {
			if err := os.Chmod(p, st.Mode().Perm()&want); err != nil {
				return err
			}
		}
	}
	return nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	// BEGIN IMMEDIATE (the writer's _txlock) takes the write lock first,
	// so two processes opening a new file migrate one after the other.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_ms INTEGER NOT NULL
	) STRICT`); err != nil {
		return err
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return err
	}
	if current > len(ms) {
		return &sqlq.NewerSchemaError{Database: current, Known: len(ms)}
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
			m.Version, time.Now().UnixMilli()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Reports returns the report store.
func (db *DB) Reports() store.ReportStore { return reports{db} }

// Bundles returns the bundle store.
func (db *DB) Bundles() store.BundleStore { return bundles{db} }

// APIKeys returns the store of clients and API keys.
func (db *DB) APIKeys() apikey.Store { return apiKeys{db} }

// SigningKeys returns the store of token signing keys.
func (db *DB) SigningKeys() authserver.KeyStore { return signingKeys{db} }

// RevokedTokens returns the store of revoked access tokens.
func (db *DB) RevokedTokens() authserver.RevocationStore { return revokedTokens{db} }

// Ping checks that both pools answer.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// Close closes the database. The writer closes last so that, as the last
// connection, it checkpoints the WAL into the database file.
func (db *DB) Close() error {
	var errs []error
	for _, s := range []*sql.Stmt{db.findGroup, db.insertGroup, db.insertEvent, db.insertEvents, db.keyByHash, db.tokenRevoked} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	for _, p := range []*sql.DB{db.read, db.write} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}
