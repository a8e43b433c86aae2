// Package postgres is the [store.Store] for several control-plane
// instances sharing one PostgreSQL database, through pgx.
//
// # Why pgxpool and not database/sql
//
// The pool is used directly, not through pgx's database/sql adapter,
// because ingestion is the hot path: pgx pipelines a [pgx.Batch] of group
// inserts in one round trip, encodes Go slices as arrays so that a whole
// batch of events is one INSERT ... SELECT FROM unnest, and caches
// prepared statements per connection. database/sql would cost a round
// trip per statement.
//
// # Durability and concurrency
//
// AddReports and Publish commit before they return; their durability is
// the server's (synchronous_commit, on by default). Transactions run at
// READ COMMITTED. Ingesting instances never wait on each other for known
// report groups (no row is updated); new groups are inserted in digest
// order so that concurrent batches cannot deadlock. Publishes of one
// bundle name are serialized by a transaction-scoped advisory lock, so
// the version check and the insert are atomic.
//
// The auth stores lock what they check: RotateKey reads the old key FOR
// UPDATE, signing key rotations take an advisory lock of their own. The
// key generation is a row bumped in the transaction of each change, so an
// instance that reads the new number reads the change.
//
// # Schema
//
// The migrations under migrations/ are embedded and applied in order by
// [Open] in one transaction holding an advisory lock, so instances
// starting together migrate once; each is recorded in schema_migrations,
// and a database whose schema is newer than this binary is refused.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/dsn"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/token/authserver"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys. The migration lock is the 64-bit "rampart1", the
// signing key rotation lock the 64-bit "rampsign"; bundle locks use the
// two-key form, which PostgreSQL keeps apart from 64-bit keys: the class
// "ramp" and a hash of the bundle name.
const (
	migrationLock   int64 = 0x72616d7061727431
	signingKeysLock int64 = 0x72616d707369676e
	bundleLockClass int32 = 0x72616d70
)

// DB is a PostgreSQL database. It implements [store.Store].
type DB struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*DB)(nil)

// Open connects to the database named by dsn (a postgres:// URL or
// keyword/value string, with pgxpool's pool_* settings) and brings its
// schema up to date. Error messages never contain the DSN's password.
func Open(ctx context.Context, dsnString string) (*DB, error) {
	db, err := open(ctx, dsnString)
	if err != nil {
		return nil, dsn.Redact(err, dsnString)
	}
	return db, nil
}

func open(ctx context.Context, dsnString string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsnString)
	if err != nil {
		// Not wrapped: the parse error holds the DSN, password and all,
		// for anyone who unwraps it.
		return nil, fmt.Errorf("postgres: invalid DSN: %s", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "rampart"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return db, nil
}

// Describe names the database dsnString connects to, for start-up lines:
// "PostgreSQL user@host:port, database name", without the password, with
// the driver's defaults (PGHOST, PGUSER, ...) applied.
func Describe(dsnString string) string {
	cfg, err := pgconn.ParseConfig(dsnString)
	if err != nil {
		return "PostgreSQL (invalid DSN)"
	}
	host := cfg.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("PostgreSQL %s@%s:%d, database %s", cfg.User, host, cfg.Port, cfg.Database)
}

var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

func (db *DB) migrate(ctx context.Context) error {
	ms, err := sqlq.Migrations(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	// Taken before anything else, CREATE TABLE IF NOT EXISTS included:
	// two of those racing can fail on the catalog's unique index.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return err
	}
	if current > len(ms) {
		return &sqlq.NewerSchemaError{Database: current, Known: len(ms)}
	}
	for _, m := range ms[current:] {
		// No arguments: pgx sends it with the simple protocol, which
		// allows several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.Version); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
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

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
