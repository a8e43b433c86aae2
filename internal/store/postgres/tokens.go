package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

// signingKeys implements authserver.KeyStore. Rotations by every instance are
// serialized by a transaction-scoped advisory lock, so each sees the
// states the previous one committed; the schema's partial unique index
// stands behind it, allowing one Current and one Next key at most.
type signingKeys struct{ db *DB }

func (s signingKeys) SigningKeys(ctx context.Context) ([]authserver.StoredKey, error) {
	rows, err := s.db.pool.Query(ctx, "SELECT "+sqlq.SigningKeyColumns+` FROM signing_keys ORDER BY created_ms, id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: signing keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (authserver.StoredKey, error) {
		return sqlq.ScanSigningKey(row.Scan)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: signing keys: %w", err)
	}
	return out, nil
}

func (s signingKeys) RotateSigningKeys(ctx context.Context, next authserver.StoredKey, now, dropRetiredBefore time.Time) error {
	if err := sqlq.CheckSigningKey(next); err != nil {
		return fmt.Errorf("postgres: rotate signing keys: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	err := s.db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", signingKeysLock); err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"UPDATE signing_keys SET state = 'retired', retired_ms = $1 WHERE state = 'current'", []any{sqlq.Millis(now)}},
			{"UPDATE signing_keys SET state = 'current', activated_ms = $1 WHERE state = 'next'", []any{sqlq.Millis(now)}},
			{"INSERT INTO signing_keys (" + sqlq.SigningKeyColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", sqlq.SigningKeyArgs(next)},
			{"DELETE FROM signing_keys WHERE state = 'retired' AND retired_ms < $1", []any{sqlq.Millis(dropRetiredBefore)}},
		} {
			if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.ConstraintName == "signing_keys_pkey" {
					// Not wrapped: the detail holds the row's values.
					return fmt.Errorf("signing key %q is already stored", next.ID)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: rotate signing keys: %w", err)
	}
	return nil
}

// revokedTokens implements authserver.RevocationStore.
type revokedTokens struct{ db *DB }

func (s revokedTokens) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	if err := sqlq.CheckRevocation(jti, expires); err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	// Revoking again is a no-op, but for keeping the revocation as long
	// as the latest expiry given.
	if _, err := s.db.pool.Exec(ctx, "INSERT INTO revoked_tokens (jti, expires_ms) VALUES ($1, $2)"+
		" ON CONFLICT (jti) DO UPDATE SET expires_ms = GREATEST(revoked_tokens.expires_ms, excluded.expires_ms)",
		jti, sqlq.Millis(expires)); err != nil {
		return fmt.Errorf("postgres: revoke token %q: %w", jti, err)
	}
	return nil
}

func (s revokedTokens) RevokeClientTokens(ctx context.Context, clientID string, at time.Time) error {
	if err := sqlq.CheckClientRevocation(clientID, at); err != nil {
		return fmt.Errorf("postgres: revoke client tokens: %w", err)
	}
	// Revoking again keeps the latest time.
	if _, err := s.db.pool.Exec(ctx, "INSERT INTO revoked_clients (client_id, revoked_ms, expires_ms) VALUES ($1, $2, $3)"+
		" ON CONFLICT (client_id) DO UPDATE SET revoked_ms = GREATEST(revoked_clients.revoked_ms, excluded.revoked_ms),"+
		" expires_ms = GREATEST(revoked_clients.expires_ms, excluded.expires_ms)",
		clientID, sqlq.Millis(at), sqlq.Millis(sqlq.ClientRevocationExpiry(at))); err != nil {
		return fmt.Errorf("postgres: revoke the tokens of client %q: %w", clientID, err)
	}
	return nil
}

// tokenRevokedSQL: a token is revoked by its jti, by a revocation of its
// client's tokens at or after its iat, or when its client is disabled or
// unknown. Arguments: sqlq.TokenRevokedArgs.
const tokenRevokedSQL = "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)" +
	" OR NOT EXISTS (SELECT 1 FROM clients WHERE id = $2 AND NOT disabled)" +
	" OR EXISTS (SELECT 1 FROM revoked_clients WHERE client_id = $2 AND revoked_ms >= $3)"

func (s revokedTokens) TokenRevoked(ctx context.Context, t token.TokenRef) (bool, error) {
	var revoked bool
	if err := s.db.pool.QueryRow(ctx, tokenRevokedSQL, sqlq.TokenRevokedArgs(t)...).Scan(&revoked); err != nil {
		return false, fmt.Errorf("postgres: token %q revoked: %w", t.JTI, err)
	}
	return revoked, nil
}

func (s revokedTokens) PruneRevoked(ctx context.Context, before time.Time) error {
	err := s.db.inTx(ctx, func(tx pgx.Tx) error {
		for _, q := range []string{"DELETE FROM revoked_tokens WHERE expires_ms < $1", "DELETE FROM revoked_clients WHERE expires_ms < $1"} {
			if _, err := tx.Exec(ctx, q, sqlq.Millis(before)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: prune revoked tokens: %w", err)
	}
	return nil
}
