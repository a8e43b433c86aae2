package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

type bundles struct{ db *DB }

func (s bundles) Publish(ctx context.Context, b store.Bundle) error {
	if err := sqlq.CheckBundle(b); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if b.PublishedAt.IsZero() {
		b.PublishedAt = time.Now()
	}
	// The check and the insert are atomic because the transaction holds
	// the write lock from its start (BEGIN IMMEDIATE).
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: publish bundle: %w", err)
	}
	defer tx.Rollback()
	var latest sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(version) FROM bundles WHERE name = ?", b.Name).Scan(&latest); err != nil {
		return fmt.Errorf("sqlite: publish bundle: %w", err)
	}
	if latest.Valid && latest.Int64 >= b.Version {
		return fmt.Errorf("sqlite: bundle %q version %d (latest %d): %w", b.Name, b.Version, latest.Int64, store.ErrStaleVersion)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO bundles ("+sqlq.BundleColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		sqlq.BundleArgs(b)...); err != nil {
		return fmt.Errorf("sqlite: publish bundle: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: publish bundle: %w", err)
	}
	return nil
}

func (s bundles) Latest(ctx context.Context, name string) (store.Bundle, error) {
	row := s.db.read.QueryRowContext(ctx,
		"SELECT "+sqlq.BundleColumns+" FROM bundles WHERE name = ? ORDER BY version DESC LIMIT 1", name)
	b, err := sqlq.ScanBundle(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Bundle{}, fmt.Errorf("sqlite: bundle %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Bundle{}, fmt.Errorf("sqlite: bundle %q: %w", name, err)
	}
	return b, nil
}

func (s bundles) List(ctx context.Context, name string, limit int) ([]store.Bundle, error) {
	if limit <= 0 {
		limit = sqlq.DefaultLimit
	}
	q := "SELECT " + sqlq.BundleColumns + " FROM bundles"
	var args []any
	if name != "" {
		q += " WHERE name = ?"
		args = append(args, name)
	}
	q += " ORDER BY published_ms DESC, name, version DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list bundles: %w", err)
	}
	defer rows.Close()
	var out []store.Bundle
	for rows.Next() {
		b, err := sqlq.ScanBundle(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list bundles: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list bundles: %w", err)
	}
	return out, nil
}
