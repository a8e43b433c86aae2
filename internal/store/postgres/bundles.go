package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

type bundles struct{ db *DB }

func (s bundles) Publish(ctx context.Context, b store.Bundle) error {
	if err := sqlq.CheckBundle(b); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if b.PublishedAt.IsZero() {
		b.PublishedAt = time.Now()
	}
	err := s.publish(ctx, b)
	if isUniqueViolation(err) {
		// Not reachable while the lock is held; kept so that the primary
		// key, not only the lock, stands behind ErrStaleVersion.
		err = store.ErrStaleVersion
	}
	if err != nil {
		return fmt.Errorf("postgres: publish bundle %q version %d: %w", b.Name, b.Version, err)
	}
	return nil
}

func (s bundles) publish(ctx context.Context, b store.Bundle) error {
	tx, err := s.db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	// Serializes publishers of this name until commit; at READ
	// COMMITTED, the query below then sees what the previous holder
	// committed.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", bundleLockClass, b.Name); err != nil {
		return err
	}
	var latest *int64
	if err := tx.QueryRow(ctx, "SELECT MAX(version) FROM bundles WHERE name = $1", b.Name).Scan(&latest); err != nil {
		return err
	}
	if latest != nil && *latest >= b.Version {
		return fmt.Errorf("latest is %d: %w", *latest, store.ErrStaleVersion)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO bundles ("+sqlq.BundleColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
		sqlq.BundleArgs(b)...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (s bundles) Latest(ctx context.Context, name string) (store.Bundle, error) {
	row := s.db.pool.QueryRow(ctx,
		"SELECT "+sqlq.BundleColumns+" FROM bundles WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
	b, err := sqlq.ScanBundle(row.Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Bundle{}, fmt.Errorf("postgres: bundle %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Bundle{}, fmt.Errorf("postgres: bundle %q: %w", name, err)
	}
	return b, nil
}

func (s bundles) List(ctx context.Context, name string, limit int) ([]store.Bundle, error) {
	if limit <= 0 {
		limit = sqlq.DefaultLimit
	}
	// $1 = '' selects every name; one statement for both cases.
	rows, err := s.db.pool.Query(ctx, "SELECT "+sqlq.BundleColumns+" FROM bundles"+
		" WHERE $1 = '' OR name = $1"+
		` ORDER BY published_ms DESC, name COLLATE "C", version DESC LIMIT $2`, name, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list bundles: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Bundle, error) {
		return sqlq.ScanBundle(row.Scan)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list bundles: %w", err)
	}
	return out, nil
}
