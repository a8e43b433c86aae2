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

type settings struct{ db *DB }

// Settings returns the installation's settings.
func (db *DB) Settings() store.SettingStore { return settings{db} }

func (s settings) Get(ctx context.Context, name string) (string, error) {
	var v string
	err := s.db.read.QueryRowContext(ctx, "SELECT value FROM settings WHERE name = ?", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	return v, nil
}

// Init inserts and reads back in one transaction on the only writer,
// which holds the database's write lock from BEGIN IMMEDIATE: another
// process's Init runs wholly before or after.
func (s settings) Init(ctx context.Context, name, value string) (string, error) {
	if err := sqlq.CheckSetting(name, value); err != nil {
		return "", fmt.Errorf("sqlite: %w", err)
	}
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO settings (name, value, created_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
		name, value, sqlq.Millis(time.Now())); err != nil {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	var v string
	if err := tx.QueryRowContext(ctx, "SELECT value FROM settings WHERE name = ?", name).Scan(&v); err != nil {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	return v, nil
}
