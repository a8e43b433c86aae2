package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

type ctStore struct{ db *DB }

var ctq = sqlq.CT{D: sqlq.SQLite}

// CT returns the Certificate Transparency monitor's state.
func (db *DB) CT() store.CTStore { return ctStore{db} }

func (s ctStore) exec(ctx context.Context, q sqlq.Query) (int64, error) {
	res, err := s.db.write.ExecContext(ctx, q.SQL, q.Args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s ctStore) Claim(ctx context.Context, log, owner string, now time.Time, ttl time.Duration) (bool, error) {
	n, err := s.exec(ctx, ctq.Claim(log, owner, now, ttl))
	if err != nil {
		return false, fmt.Errorf("sqlite: claim CT log: %w", err)
	}
	return n == 1, nil
}

func (s ctStore) Position(ctx context.Context, log string) (ct.Position, bool, error) {
	q := ctq.Position(log)
	p, ok, err := sqlq.ScanPosition(s.db.read.QueryRowContext(ctx, q.SQL, q.Args...).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return ct.Position{}, false, nil
	}
	if err != nil {
		return ct.Position{}, false, fmt.Errorf("sqlite: CT position: %w", err)
	}
	return p, ok, nil
}

func (s ctStore) SavePosition(ctx context.Context, log, owner string, now time.Time, p ct.Position) error {
	n, err := s.exec(ctx, ctq.SavePosition(log, owner, now, p))
	if err != nil {
		return fmt.Errorf("sqlite: save CT position: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("sqlite: save CT position: %w", store.ErrLeaseLost)
	}
	return nil
}

func (s ctStore) AddSighting(ctx context.Context, sg store.CTSighting) (*store.CTAlert, error) {
	if err := sqlq.CheckSighting(sg); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add CT sighting: %w", err)
	}
	defer tx.Rollback()
	alert, err := ctq.AddSighting(func(q sqlq.Query) (int64, error) {
		res, err := tx.ExecContext(ctx, q.SQL, q.Args...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}, func(q sqlq.Query) (int64, error) {
		var id int64
		err := tx.QueryRowContext(ctx, q.SQL, q.Args...).Scan(&id)
		return id, err
	}, sg)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add CT sighting: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: add CT sighting: %w", err)
	}
	return alert, nil
}

func (s ctStore) Certificates(ctx context.Context, f store.CTFilter) ([]store.CTCertificate, error) {
	q := ctq.Certificates(f)
	rows, err := s.db.read.QueryContext(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: CT certificates: %w", err)
	}
	defer rows.Close()
	var out []store.CTCertificate
	for rows.Next() {
		c, err := sqlq.ScanCert(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: CT certificates: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: CT certificates: %w", err)
	}
	return out, nil
}

func (s ctStore) DueAlerts(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.CTAlert, error) {
	q := ctq.DueAlerts(owner, now, lease, limit)
	rows, err := s.db.write.QueryContext(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: due CT alerts: %w", err)
	}
	defer rows.Close()
	var out []store.CTAlert
	for rows.Next() {
		a, err := sqlq.ScanAlert(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: due CT alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: due CT alerts: %w", err)
	}
	slices.SortFunc(out, func(a, b store.CTAlert) int { return int(a.ID - b.ID) })
	return out, nil
}

func (s ctStore) AlertDelivered(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.exec(ctx, ctq.AlertDelivered(id, at)); err != nil {
		return fmt.Errorf("sqlite: CT alert delivered: %w", err)
	}
	return nil
}

func (s ctStore) AlertFailed(ctx context.Context, id int64, next time.Time, reason string) error {
	if _, err := s.exec(ctx, ctq.AlertFailed(id, next, reason)); err != nil {
		return fmt.Errorf("sqlite: CT alert failed: %w", err)
	}
	return nil
}
