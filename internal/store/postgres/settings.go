package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

type settings struct{ db *DB }

// Settings returns the installation's settings.
func (db *DB) Settings() store.SettingStore { return settings{db} }

func (s settings) Get(ctx context.Context, name string) (string, error) {
	var v string
	err := s.db.pool.QueryRow(ctx, "SELECT value FROM settings WHERE name = $1", name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: setting %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: setting %s: %w", name, err)
	}
	return v, nil
}

// Init inserts, then reads in a statement of its own: at READ COMMITTED,
// an insert that meets a concurrent one waits for it to commit, and the
// read that follows sees whichever value won.
func (s settings) Init(ctx context.Context, name, value string) (string, error) {
	if err := sqlq.CheckSetting(name, value); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if _, err := s.db.pool.Exec(ctx, "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, value); err != nil {
		return "", fmt.Errorf("postgres: setting %s: %w", name, err)
	}
	return s.Get(ctx, name)
}
