package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

// tokenRevokedSQL: a token is revoked by its jti, by a revocation of its
// client's tokens at or after its iat, or when its client is disabled or
// unknown. Arguments: sqlq.TokenRevokedArgs.
const tokenRevokedSQL = "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?1)" +
	" OR NOT EXISTS (SELECT 1 FROM clients WHERE id = ?2 AND disabled = 0)" +
	" OR EXISTS (SELECT 1 FROM revoked_clients WHERE client_id = ?2 AND revoked_ms >= ?3)"

// signingKeys implements authserver.KeyStore. Rotations are serialized by the
// write lock that BEGIN IMMEDIATE takes, which other processes opening
// the file wait for too; the schema's partial unique index stands behind
// it, allowing one Current and one Next key at most.
type signingKeys struct{ db *DB }

func (s signingKeys) SigningKeys(ctx context.Context) ([]authserver.StoredKey, error) {
	rows, err := s.db.read.QueryContext(ctx, "SELECT "+sqlq.SigningKeyColumns+" FROM signing_keys ORDER BY created_ms, id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	defer rows.Close()
	var out []authserver.StoredKey
	for rows.Next() {
		k, err := sqlq.ScanSigningKey(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: signing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	return out, nil
}

func (s signingKeys) RotateSigningKeys(ctx context.Context, next authserver.StoredKey, now, dropRetiredBefore time.Time) error {
	if err := sqlq.CheckSigningKey(next); err != nil {
		return fmt.Errorf("sqlite: rotate signing keys: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		var taken bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE id = ?)", next.ID).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return fmt.Errorf("signing key %q is already stored", next.ID)
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"UPDATE signing_keys SET state = 'retired', retired_ms = ? WHERE state = 'current'", []any{sqlq.Millis(now)}},
			{"UPDATE signing_keys SET state = 'current', activated_ms = ? WHERE state = 'next'", []any{sqlq.Millis(now)}},
			{"INSERT INTO signing_keys (" + sqlq.SigningKeyColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sqlq.SigningKeyArgs(next)},
			{"DELETE FROM signing_keys WHERE state = 'retired' AND retired_ms < ?", []any{sqlq.Millis(dropRetiredBefore)}},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: rotate signing keys: %w", err)
	}
	return nil
}

// revokedTokens implements authserver.RevocationStore.
type revokedTokens struct{ db *DB }

func (s revokedTokens) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	if err := sqlq.CheckRevocation(jti, expires); err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	// Revoking again is a no-op, but for keeping the revocation as long
	// as the latest expiry given.
	if _, err := s.db.write.ExecContext(ctx, "INSERT INTO revoked_tokens (jti, expires_ms) VALUES (?, ?)"+
		" ON CONFLICT (jti) DO UPDATE SET expires_ms = MAX(expires_ms, excluded.expires_ms)",
		jti, sqlq.Millis(expires)); err != nil {
		return fmt.Errorf("sqlite: revoke token %q: %w", jti, err)
	}
	return nil
}

func (s revokedTokens) RevokeClientTokens(ctx context.Context, clientID string, at time.Time) error {
	if err := sqlq.CheckClientRevocation(clientID, at); err != nil {
		return fmt.Errorf("sqlite: revoke client tokens: %w", err)
	}
	// Revoking again keeps the latest time.
	if _, err := s.db.write.ExecContext(ctx, "INSERT INTO revoked_clients (client_id, revoked_ms, expires_ms) VALUES (?, ?, ?)"+
		" ON CONFLICT (client_id) DO UPDATE SET revoked_ms = MAX(revoked_ms, excluded.revoked_ms), expires_ms = MAX(expires_ms, excluded.expires_ms)",
		clientID, sqlq.Millis(at), sqlq.Millis(sqlq.ClientRevocationExpiry(at))); err != nil {
		return fmt.Errorf("sqlite: revoke the tokens of client %q: %w", clientID, err)
	}
	return nil
}

func (s revokedTokens) TokenRevoked(ctx context.Context, t token.TokenRef) (bool, error) {
	var revoked bool
	if err := s.db.tokenRevoked.QueryRowContext(ctx, sqlq.TokenRevokedArgs(t)...).Scan(&revoked); err != nil {
		return false, fmt.Errorf("sqlite: token %q revoked: %w", t.JTI, err)
	}
	return revoked, nil
}

func (s revokedTokens) PruneRevoked(ctx context.Context, before time.Time) error {
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{"DELETE FROM revoked_tokens WHERE expires_ms < ?", "DELETE FROM revoked_clients WHERE expires_ms < ?"} {
			if _, err := tx.ExecContext(ctx, q, sqlq.Millis(before)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: prune revoked tokens: %w", err)
	}
	return nil
}
