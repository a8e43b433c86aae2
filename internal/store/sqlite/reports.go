package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

// Groups are looked up before they are inserted, rather than upserted
// with DO UPDATE to have RETURNING give the ID: most reports repeat a
// known failure, and the update would rewrite the group's row, body
// included, into the WAL for every batch that mentions it. The lookup and
// the insert cannot race: this connection is the only writer.
const (
	findGroupSQL   = "SELECT id FROM report_groups WHERE digest = ?"
	insertGroupSQL = "INSERT INTO report_groups (" + sqlq.GroupInsertColumns + ")" +
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)

// eventRows is how many events one statement inserts: with one
// statement per row, more time goes to the driver than to SQLite.
const eventRows = 64

// insertEventsSQL returns the statement inserting n events.
func insertEventsSQL(n int) string {
	return "INSERT INTO report_events (group_id, received_ms, source, user_agent, device) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", n), ", ")
}

type reports struct{ db *DB }

func (r reports) AddReports(ctx context.Context, rs []store.Report) error {
	if err := sqlq.CheckReports(rs); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	groups, index := sqlq.Aggregate(rs)
	tx, err := r.db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: add reports: %w", err)
	}
	defer tx.Rollback()
	find := tx.StmtContext(ctx, r.db.findGroup)
	insertGroup := tx.StmtContext(ctx, r.db.insertGroup)
	for i := range groups {
		err := find.QueryRowContext(ctx, groups[i].Content.Digest).Scan(&groups[i].ID)
		if errors.Is(err, sql.ErrNoRows) {
			err = insertGroup.QueryRowContext(ctx, sqlq.GroupArgs(groups[i])...).Scan(&groups[i].ID)
		}
		if err != nil {
			return fmt.Errorf("sqlite: add reports: %w", err)
		}
	}
	insertMany := tx.StmtContext(ctx, r.db.insertEvents)
	insertOne := tx.StmtContext(ctx, r.db.insertEvent)
	args := make([]any, 0, 5*eventRows)
	for start, n := 0, 0; start < len(rs); start += n {
		stmt := insertMany
		n = eventRows
		if len(rs)-start < eventRows {
			stmt, n = insertOne, 1
		}
		args = args[:0]
		for i := start; i < start+n; i++ {
			rep := rs[i]
			args = append(args, groups[index[i]].ID, sqlq.Millis(rep.Received), rep.Source, rep.UserAgent, rep.Device)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlite: add reports: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add reports: %w", err)
	}
	if r.db.commits.Add(1)%optimizeEvery == 0 {
		// The reports are stored: a failure here only leaves the
		// planner's statistics as they were, to be retried later.
		_ = r.db.optimize(ctx)
	}
	return nil
}

func (r reports) Groups(ctx context.Context, f store.ReportFilter) ([]store.ReportGroup, error) {
	q := sqlq.Groups(sqlq.SQLite, f)
	var out []store.ReportGroup
	err := r.query(ctx, q, func(rows *sql.Rows) error {
		g, err := sqlq.ScanGroup(rows.Scan)
		if err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: report groups: %w", err)
	}
	return out, nil
}

func (r reports) Count(ctx context.Context, f store.ReportFilter, by store.Dimension) ([]store.Tally, error) {
	q, err := sqlq.Count(sqlq.SQLite, f, by)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count reports: %w", err)
	}
	var out []store.Tally
	err = r.query(ctx, q, func(rows *sql.Rows) error {
		var t store.Tally
		if err := rows.Scan(&t.Key, &t.Label, &t.Reports, &t.Clients); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: count reports: %w", err)
	}
	return out, nil
}

func (r reports) Timeline(ctx context.Context, f store.ReportFilter, width time.Duration) ([]store.Bucket, error) {
	q, err := sqlq.Timeline(sqlq.SQLite, f, width)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	var out []store.Bucket
	err = r.query(ctx, q, func(rows *sql.Rows) error {
		var k, n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		out = append(out, store.Bucket{Start: sqlq.BucketStart(f.Since, width, k), Reports: n})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: report timeline: %w", err)
	}
	return out, nil
}

func (r reports) Total(ctx context.Context, f store.ReportFilter) (int64, error) {
	q := sqlq.Total(sqlq.SQLite, f)
	var n int64
	if err := r.db.read.QueryRowContext(ctx, q.SQL, q.Args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count reports: %w", err)
	}
	return n, nil
}

// query runs q on the read pool and calls row for each row.
func (r reports) query(ctx context.Context, q sqlq.Query, row func(*sql.Rows) error) error {
	rows, err := r.db.read.QueryContext(ctx, q.SQL, q.Args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (r reports) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{sqlq.PruneEventsSQL, sqlq.PruneGroupsSQL} {
		var args []any
		if q == sqlq.PruneEventsSQL {
			args = []any{sqlq.Millis(before)}
		}
		for {
			// One short transaction per batch: AddReports, which shares
			// the one write connection, waits at most one batch.
			res, err := r.db.write.ExecContext(ctx, q, args...)
			if err != nil {
				return total, fmt.Errorf("sqlite: prune reports: %w", err)
			}
			n, _ := res.RowsAffected()
			if q == sqlq.PruneEventsSQL {
				total += n
			}
			if n < sqlq.PruneBatch {
				break
			}
		}
	}
	return total, nil
}

func (r reports) Deliveries(ctx context.Context, f store.ReportFilter) ([]store.Delivery, error) {
	q := sqlq.Deliveries(sqlq.SQLite, f)
	var out []store.Delivery
	err := r.query(ctx, q, func(rows *sql.Rows) error {
		d, err := sqlq.ScanDelivery(rows.Scan)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: report deliveries: %w", err)
	}
	return out, nil
}

// usageSQL is the space in use in the database file: its pages less
// those on the free list. The WAL's committed pages count, as the
// connection sees the database through it.
const usageSQL = "SELECT (p.page_count - f.freelist_count) * s.page_size" +
	" FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s"

// Usage measures the database file's pages in use and the free space of
// the file system holding it.
func (r reports) Usage(ctx context.Context) (store.Usage, error) {
	u := store.Usage{Free: -1}
	if err := r.db.read.QueryRowContext(ctx, usageSQL).Scan(&u.Bytes); err != nil {
		return u, fmt.Errorf("sqlite: usage: %w", err)
	}
	free, err := freeSpace(filepath.Dir(r.db.path))
	if err != nil {
		return u, fmt.Errorf("sqlite: free space: %w", err)
	}
	u.Free = free
	return u, nil
}
