package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

const (
	insertClientSQL = "INSERT INTO clients (" + sqlq.ClientColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)" +
		" ON CONFLICT (id) DO NOTHING"
	insertKeySQL  = "INSERT INTO api_keys (" + sqlq.KeyInsertColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
	keyByHashSQL  = sqlq.KeySelect + " WHERE k.hash = ?"
	bumpSQL       = "UPDATE auth_generation SET generation = generation + 1 WHERE id = 1"
	generationSQL = "SELECT generation FROM auth_generation WHERE id = 1"
	// Touches only move forward, so that a late batch from a slow
	// instance cannot hide a more recent use.
	touchKeySQL = "UPDATE api_keys SET last_used_ms = ?1 WHERE id = ?2 AND (last_used_ms IS NULL OR last_used_ms < ?1)"
	// The conditions repeat what RotateKey checked: the write lock makes
	// them true, but the constraint belongs with the write.
	replaceKeySQL = "UPDATE api_keys SET replaced_by = ?, grace_ms = ? WHERE id = ? AND replaced_by IS NULL AND revoked_ms IS NULL"
)

// apiKeys implements apikey.Store. Every write runs on the one writer
// connection in a transaction begun with BEGIN IMMEDIATE, so the checks
// it makes hold until it commits, against this process and any other.
type apiKeys struct{ db *DB }

// inTx runs fn in a write transaction and commits it if fn succeeds.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func bump(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, bumpSQL)
	return err
}

func (s apiKeys) KeyByHash(ctx context.Context, hash []byte) (*apikey.Record, error) {
	r, err := sqlq.ScanKey(s.db.keyByHash.QueryRowContext(ctx, hash).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		// Not the hash: it is what a key is looked up by.
		return nil, fmt.Errorf("sqlite: key by hash: %w", err)
	}
	return &r, nil
}

func (s apiKeys) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := s.db.read.QueryRowContext(ctx, generationSQL).Scan(&g); err != nil {
		return 0, fmt.Errorf("sqlite: key generation: %w", err)
	}
	return g, nil
}

func (s apiKeys) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, touchKeySQL)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range slices.Sorted(maps.Keys(used)) {
			if used[id].IsZero() {
				continue
			}
			if _, err := stmt.ExecContext(ctx, sqlq.Millis(used[id]), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: touch keys: %w", err)
	}
	return nil
}

func (s apiKeys) CreateClient(ctx context.Context, c *apikey.Client) error {
	if err := sqlq.CheckClient(c); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = sqlq.Now()
	}
	res, err := s.db.write.ExecContext(ctx, insertClientSQL, sqlq.ClientArgs(c)...)
	if err != nil {
		return fmt.Errorf("sqlite: create client %q: %w", c.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create client %q: %w", c.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create client %q: ID taken: %w", c.ID, apikey.ErrConflict)
	}
	return nil
}

func (s apiKeys) Client(ctx context.Context, id string) (*apikey.Client, error) {
	c, err := sqlq.ScanClient(s.db.read.QueryRowContext(ctx,
		"SELECT "+sqlq.ClientColumns+" FROM clients WHERE id = ?", id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: client %q: %w", id, err)
	}
	return &c, nil
}

func (s apiKeys) Clients(ctx context.Context) ([]apikey.Client, error) {
	rows, err := s.db.read.QueryContext(ctx, "SELECT "+sqlq.ClientColumns+" FROM clients ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: list clients: %w", err)
	}
	defer rows.Close()
	var out []apikey.Client
	for rows.Next() {
		c, err := sqlq.ScanClient(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list clients: %w", err)
	}
	return out, nil
}

func (s apiKeys) SetClientDisabled(ctx context.Context, id string, disabled bool) error {
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE clients SET disabled = ? WHERE id = ?", disabled, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return apikey.ErrNotFound
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("sqlite: set client %q disabled=%t: %w", id, disabled, err)
	}
	return nil
}

func (s apiKeys) CreateKey(ctx context.Context, r *apikey.Record) error {
	if err := sqlq.CheckNewKey(r); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = sqlq.Now()
	}
	if err := s.db.inTx(ctx, func(tx *sql.Tx) error { return insertKey(ctx, tx, r) }); err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", r.ID, err)
	}
	return nil
}

// insertKey inserts r after checking, under the write lock, what the
// constraints would refuse, so that the error says which and wraps the
// sentinel. The hash is never in the message.
func insertKey(ctx context.Context, tx *sql.Tx, r *apikey.Record) error {
	var client, idTaken, hashTaken bool
	if err := tx.QueryRowContext(ctx, "SELECT"+
		" EXISTS (SELECT 1 FROM clients WHERE id = ?),"+
		" EXISTS (SELECT 1 FROM api_keys WHERE id = ?),"+
		" EXISTS (SELECT 1 FROM api_keys WHERE hash = ?)",
		r.ClientID, r.ID, r.Hash).Scan(&client, &idTaken, &hashTaken); err != nil {
		return err
	}
	switch {
	case !client:
		return fmt.Errorf("client %q: %w", r.ClientID, apikey.ErrNotFound)
	case idTaken:
		return fmt.Errorf("key ID taken: %w", apikey.ErrConflict)
	case hashTaken:
		return fmt.Errorf("another key has the same hash: %w", apikey.ErrConflict)
	}
	_, err := tx.ExecContext(ctx, insertKeySQL, sqlq.KeyArgs(r)...)
	return err
}

func (s apiKeys) Key(ctx context.Context, id string) (*apikey.Record, error) {
	r, err := sqlq.ScanKey(s.db.read.QueryRowContext(ctx, sqlq.KeySelect+" WHERE k.id = ?", id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: key %q: %w", id, err)
	}
	return &r, nil
}

func (s apiKeys) Keys(ctx context.Context, clientID string) ([]apikey.Record, error) {
	out, err := s.keys(ctx, clientID)
	if err != nil {
		if clientID == "" {
			return nil, fmt.Errorf("sqlite: list keys: %w", err)
		}
		return nil, fmt.Errorf("sqlite: list keys of client %q: %w", clientID, err)
	}
	return out, nil
}

func (s apiKeys) keys(ctx context.Context, clientID string) ([]apikey.Record, error) {
	q, args := sqlq.KeySelect+sqlq.KeyOrder, []any(nil)
	if clientID != "" {
		q, args = sqlq.KeySelect+" WHERE k.client_id = ?"+sqlq.KeyOrder, []any{clientID}
	}
	rows, err := s.db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []apikey.Record
	for rows.Next() {
		r, err := sqlq.ScanKey(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 && clientID != "" {
		// No keys, or no such client: only the second is an error.
		var exists bool
		if err := s.db.read.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM clients WHERE id = ?)", clientID).Scan(&exists); err != nil {
			return nil, err
		}
		if !exists {
			return nil, apikey.ErrNotFound
		}
	}
	return out, nil
}

func (s apiKeys) RotateKey(ctx context.Context, oldID string, graceUntil time.Time, next *apikey.Record) error {
	if err := sqlq.CheckNewKey(next); err != nil {
		return fmt.Errorf("sqlite: rotate key %q: %w", oldID, err)
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = sqlq.Now()
	}
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		var (
			clientID   string
			revoked    *int64
			replacedBy *string
		)
		err := tx.QueryRowContext(ctx, "SELECT client_id, revoked_ms, replaced_by FROM api_keys WHERE id = ?", oldID).
			Scan(&clientID, &revoked, &replacedBy)
		if errors.Is(err, sql.ErrNoRows) {
			return apikey.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := sqlq.CheckRotation(clientID, revoked, replacedBy, next); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, next); err != nil {
			return fmt.Errorf("new key %q: %w", next.ID, err)
		}
		res, err := tx.ExecContext(ctx, replaceKeySQL, next.ID, sqlq.NullMillis(graceUntil), oldID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("revoked or replaced meanwhile: %w", apikey.ErrConflict)
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("sqlite: rotate key %q: %w", oldID, err)
	}
	return nil
}

func (s apiKeys) RevokeKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
			sqlq.Millis(at), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var exists bool
			if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?)", id).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return fmt.Errorf("already revoked: %w", apikey.ErrConflict)
			}
			return apikey.ErrNotFound
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("sqlite: revoke key %q: %w", id, err)
	}
	return nil
}
