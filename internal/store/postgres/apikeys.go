package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

const (
	insertClientSQL = "INSERT INTO clients (" + sqlq.ClientColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)" +
		" ON CONFLICT (id) DO NOTHING"
	insertKeySQL  = "INSERT INTO api_keys (" + sqlq.KeyInsertColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
	bumpSQL       = "UPDATE auth_generation SET generation = generation + 1"
	generationSQL = "SELECT generation FROM auth_generation"
	// Touches only move forward, so that a late batch from a slow
	// instance cannot hide a more recent use.
	touchKeySQL = "UPDATE api_keys SET last_used_ms = $2 WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms < $2)"
	// The conditions repeat what RotateKey checked under FOR UPDATE, so
	// that the row lock is not all that stands behind ErrConflict.
	replaceKeySQL = "UPDATE api_keys SET replaced_by = $1, grace_ms = $2 WHERE id = $3 AND replaced_by IS NULL AND revoked_ms IS NULL"
)

// apiKeys implements apikey.Store.
//
// Writes that move the generation lock the row they change (RotateKey
// with SELECT ... FOR UPDATE, so that of concurrent rotations of a key
// one wins and the others see it replaced), then the generation row,
// always in that order, so they cannot deadlock with each other.
// TouchKeys locks keys in ID order and never the generation.
type apiKeys struct{ db *DB }

// inTx runs fn in a READ COMMITTED transaction and commits it if fn
// succeeds.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db.pool, readCommitted, fn)
}

func bump(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, bumpSQL)
	return err
}

func (s apiKeys) KeyByHash(ctx context.Context, hash []byte) (*apikey.Record, error) {
	r, err := sqlq.ScanKey(s.db.pool.QueryRow(ctx, sqlq.KeySelect+" WHERE k.hash = $1", hash).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		// Not the hash: it is what a key is looked up by.
		return nil, fmt.Errorf("postgres: key by hash: %w", err)
	}
	return &r, nil
}

func (s apiKeys) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := s.db.pool.QueryRow(ctx, generationSQL).Scan(&g); err != nil {
		return 0, fmt.Errorf("postgres: key generation: %w", err)
	}
	return g, nil
}

func (s apiKeys) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	var b pgx.Batch
	for _, id := range slices.Sorted(maps.Keys(used)) {
		if !used[id].IsZero() {
			b.Queue(touchKeySQL, id, sqlq.Millis(used[id]))
		}
	}
	if b.Len() == 0 {
		return nil
	}
	// One round trip; in ID order, so that instances touching the same
	// keys at once take their row locks in the same order.
	err := s.db.inTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &b).Close() })
	if err != nil {
		return fmt.Errorf("postgres: touch keys: %w", err)
	}
	return nil
}

func (s apiKeys) CreateClient(ctx context.Context, c *apikey.Client) error {
	if err := sqlq.CheckClient(c); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = sqlq.Now()
	}
	tag, err := s.db.pool.Exec(ctx, insertClientSQL, sqlq.ClientArgs(c)...)
	if err != nil {
		return fmt.Errorf("postgres: create client %q: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create client %q: ID taken: %w", c.ID, apikey.ErrConflict)
	}
	return nil
}

func (s apiKeys) Client(ctx context.Context, id string) (*apikey.Client, error) {
	c, err := sqlq.ScanClient(s.db.pool.QueryRow(ctx,
		"SELECT "+sqlq.ClientColumns+" FROM clients WHERE id = $1", id).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: client %q: %w", id, err)
	}
	return &c, nil
}

func (s apiKeys) Clients(ctx context.Context) ([]apikey.Client, error) {
	rows, err := s.db.pool.Query(ctx, "SELECT "+sqlq.ClientColumns+` FROM clients ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list clients: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (apikey.Client, error) {
		return sqlq.ScanClient(row.Scan)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list clients: %w", err)
	}
	return out, nil
}

func (s apiKeys) SetClientDisabled(ctx context.Context, id string, disabled bool) error {
	err := s.db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE clients SET disabled = $1 WHERE id = $2", disabled, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apikey.ErrNotFound
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("postgres: set client %q disabled=%t: %w", id, disabled, err)
	}
	return nil
}

func (s apiKeys) CreateKey(ctx context.Context, r *apikey.Record) error {
	if err := sqlq.CheckNewKey(r); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = sqlq.Now()
	}
	if _, err := s.db.pool.Exec(ctx, insertKeySQL, sqlq.KeyArgs(r)...); err != nil {
		return fmt.Errorf("postgres: create key %q: %w", r.ID, insertKeyError(err, r))
	}
	return nil
}

// insertKeyError says which constraint refused r, wrapping the sentinel.
// The PostgreSQL error is dropped then, not wrapped: its detail holds the
// values, the hash among them.
func insertKeyError(err error, r *apikey.Record) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.ConstraintName {
	case "api_keys_client_exists":
		return fmt.Errorf("client %q: %w", r.ClientID, apikey.ErrNotFound)
	case "api_keys_pkey":
		return fmt.Errorf("key ID taken: %w", apikey.ErrConflict)
	case "api_keys_hash_unique":
		return fmt.Errorf("another key has the same hash: %w", apikey.ErrConflict)
	}
	return err
}

func (s apiKeys) Key(ctx context.Context, id string) (*apikey.Record, error) {
	r, err := sqlq.ScanKey(s.db.pool.QueryRow(ctx, sqlq.KeySelect+" WHERE k.id = $1", id).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		err = apikey.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: key %q: %w", id, err)
	}
	return &r, nil
}

func (s apiKeys) Keys(ctx context.Context, clientID string) ([]apikey.Record, error) {
	out, err := s.keys(ctx, clientID)
	if err != nil {
		if clientID == "" {
			return nil, fmt.Errorf("postgres: list keys: %w", err)
		}
		return nil, fmt.Errorf("postgres: list keys of client %q: %w", clientID, err)
	}
	return out, nil
}

func (s apiKeys) keys(ctx context.Context, clientID string) ([]apikey.Record, error) {
	q, args := sqlq.KeySelect+sqlq.KeyOrder, []any(nil)
	if clientID != "" {
		q, args = sqlq.KeySelect+" WHERE k.client_id = $1"+sqlq.KeyOrder, []any{clientID}
	}
	rows, err := s.db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (apikey.Record, error) {
		return sqlq.ScanKey(row.Scan)
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && clientID != "" {
		// No keys, or no such client: only the second is an error.
		var exists bool
		if err := s.db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)", clientID).Scan(&exists); err != nil {
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
		return fmt.Errorf("postgres: rotate key %q: %w", oldID, err)
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = sqlq.Now()
	}
	err := s.db.inTx(ctx, func(tx pgx.Tx) error {
		var (
			clientID   string
			revoked    *int64
			replacedBy *string
		)
		// FOR UPDATE: a concurrent rotation or revocation of the key
		// waits for this one to commit, then reads what it wrote.
		err := tx.QueryRow(ctx, "SELECT client_id, revoked_ms, replaced_by FROM api_keys WHERE id = $1 FOR UPDATE", oldID).
			Scan(&clientID, &revoked, &replacedBy)
		if errors.Is(err, pgx.ErrNoRows) {
			return apikey.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := sqlq.CheckRotation(clientID, revoked, replacedBy, next); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertKeySQL, sqlq.KeyArgs(next)...); err != nil {
			return fmt.Errorf("new key %q: %w", next.ID, insertKeyError(err, next))
		}
		tag, err := tx.Exec(ctx, replaceKeySQL, next.ID, sqlq.NullMillis(graceUntil), oldID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("revoked or replaced meanwhile: %w", apikey.ErrConflict)
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("postgres: rotate key %q: %w", oldID, err)
	}
	return nil
}

func (s apiKeys) RevokeKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	err := s.db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
			sqlq.Millis(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)", id).Scan(&exists); err != nil {
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
		return fmt.Errorf("postgres: revoke key %q: %w", id, err)
	}
	return nil
}
