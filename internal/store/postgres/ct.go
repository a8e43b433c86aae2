package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

type ctStore struct{ db *DB }

var ctq = sqlq.CT{D: sqlq.Postgres}

// CT returns the Certificate Transparency monitor's state.
func (db *DB) CT() store.CTStore { return ctStore{db} }

func (s ctStore) exec(ctx context.Context, q sqlq.Query) (int64, error) {
	tag, err := s.db.pool.Exec(ctx, q.SQL, q.Args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// Claim is one INSERT ... ON CONFLICT DO UPDATE ... WHERE: at READ
// COMMITTED, concurrent claims of one log serialize on its row, and the
// second sees the first's lease.
func (s ctStore) Claim(ctx context.Context, log, owner string, now time.Time, ttl time.Duration) (bool, error) {
	n, err := s.exec(ctx, ctq.Claim(log, owner, now, ttl))
	if err != nil {
		return false, fmt.Errorf("postgres: claim CT log: %w", err)
	}
	return n == 1, nil
}

func (s ctStore) Position(ctx context.Context, log string) (ct.Position, bool, error) {
	q := ctq.Position(log)
	p, ok, err := sqlq.ScanPosition(s.db.pool.QueryRow(ctx, q.SQL, q.Args...).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return ct.Position{}, false, nil
	}
	if err != nil {
		return ct.Position{}, false, fmt.Errorf("postgres: CT position: %w", err)
	}
	return p, ok, nil
}

func (s ctStore) SavePosition(ctx context.Context, log, owner string, now time.Time, p ct.Position) error {
	n, err := s.exec(ctx, ctq.SavePosition(log, owner, now, p))
	if err != nil {
		return fmt.Errorf("postgres: save CT position: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("postgres: save CT position: %w", store.ErrLeaseLost)
	}
	return nil
}

// AddSighting runs in one transaction. The sighting's primary key makes a
// second delivery of an entry a no-op; the certificate's insert (ON
// CONFLICT DO NOTHING) and the escalation (a conditional UPDATE) each
// affect a row in one transaction only, so one alert is raised per
// certificate and class however many instances see it at once.
func (s ctStore) AddSighting(ctx context.Context, sg store.CTSighting) (*store.CTAlert, error) {
	if err := sqlq.CheckSighting(sg); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var alert *store.CTAlert
	err := pgx.BeginTxFunc(ctx, s.db.pool, readCommitted, func(tx pgx.Tx) error {
		var err error
		alert, err = ctq.AddSighting(func(q sqlq.Query) (int64, error) {
			tag, err := tx.Exec(ctx, q.SQL, q.Args...)
			return tag.RowsAffected(), err
		}, func(q sqlq.Query) (int64, error) {
			var id int64
			err := tx.QueryRow(ctx, q.SQL, q.Args...).Scan(&id)
			return id, err
		}, sg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: add CT sighting: %w", err)
	}
	return alert, nil
}

func (s ctStore) Certificates(ctx context.Context, f store.CTFilter) ([]store.CTCertificate, error) {
	q := ctq.Certificates(f)
	rows, err := s.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: CT certificates: %w", err)
	}
	defer rows.Close()
	var out []store.CTCertificate
	for rows.Next() {
		c, err := sqlq.ScanCert(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("postgres: CT certificates: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: CT certificates: %w", err)
	}
	return out, nil
}

func (s ctStore) DueAlerts(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.CTAlert, error) {
	q := ctq.DueAlerts(owner, now, lease, limit)
	rows, err := s.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: due CT alerts: %w", err)
	}
	defer rows.Close()
	var out []store.CTAlert
	for rows.Next() {
		a, err := sqlq.ScanAlert(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("postgres: due CT alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: due CT alerts: %w", err)
	}
	slices.SortFunc(out, func(a, b store.CTAlert) int { return int(a.ID - b.ID) })
	return out, nil
}

func (s ctStore) AlertDelivered(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.exec(ctx, ctq.AlertDelivered(id, at)); err != nil {
		return fmt.Errorf("postgres: CT alert delivered: %w", err)
	}
	return nil
}

func (s ctStore) AlertFailed(ctx context.Context, id int64, next time.Time, reason string) error {
	if _, err := s.exec(ctx, ctq.AlertFailed(id, next, reason)); err != nil {
		return fmt.Errorf("postgres: CT alert failed: %w", err)
	}
	return nil
}
