package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/sqlq"
)

const (
	findGroupsSQL = "SELECT digest, id FROM report_groups WHERE digest = ANY($1)"
	// DO NOTHING rather than DO UPDATE: an update would lock the row
	// until commit, making every instance that ingests the same failure
	// wait for the others, and write a new row version each time. When a
	// concurrent transaction inserted the digest first, nothing is
	// returned and the group is looked up again once it has committed.
	insertGroupSQL = "INSERT INTO report_groups (" + sqlq.GroupInsertColumns + ")" +
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)" +
		" ON CONFLICT (digest) DO NOTHING RETURNING id"
	insertEventsSQL = "INSERT INTO report_events (group_id, received_ms, source, user_agent, device)" +
		" SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[])"
)

type reports struct{ db *DB }

func (r reports) AddReports(ctx context.Context, rs []store.Report) error {
	if err := sqlq.CheckReports(rs); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	if err := r.addReports(ctx, rs); err != nil {
		return fmt.Errorf("postgres: add reports: %w", err)
	}
	return nil
}

func (r reports) addReports(ctx context.Context, rs []store.Report) error {
	groups, index := sqlq.Aggregate(rs)
	tx, err := r.db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)

	if err := findGroups(ctx, tx, groups); err != nil {
		return err
	}
	if err := insertGroups(ctx, tx, groups); err != nil {
		return err
	}
	if err := findGroups(ctx, tx, groups); err != nil {
		return err
	}

	ids := make([]int64, len(rs))
	received := make([]int64, len(rs))
	sources := make([]string, len(rs))
	agents := make([]string, len(rs))
	devices := make([]string, len(rs))
	for i, rep := range rs {
		ids[i] = groups[index[i]].ID
		if ids[i] == 0 {
			return fmt.Errorf("group of digest %s neither found nor inserted", rep.Content.Digest)
		}
		received[i] = sqlq.Millis(rep.Received)
		sources[i], agents[i], devices[i] = rep.Source, rep.UserAgent, rep.Device
	}
	if _, err := tx.Exec(ctx, insertEventsSQL, ids, received, sources, agents, devices); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// findGroups fills in the IDs of the groups that exist and have none yet,
// in one query.
func findGroups(ctx context.Context, tx pgx.Tx, groups []sqlq.Distinct) error {
	pos := map[string]int{}
	var digests []string
	for i, g := range groups {
		if g.ID == 0 {
			pos[g.Content.Digest] = i
			digests = append(digests, g.Content.Digest)
		}
	}
	if len(digests) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, findGroupsSQL, digests)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d  string
			id int64
		)
		if err := rows.Scan(&d, &id); err != nil {
			return err
		}
		groups[pos[d]].ID = id
	}
	return rows.Err()
}

// insertGroups inserts the groups still without an ID, in one round trip,
// in the order given (ascending digests).
func insertGroups(ctx context.Context, tx pgx.Tx, groups []sqlq.Distinct) error {
	var (
		b    pgx.Batch
		todo []int
	)
	for i, g := range groups {
		if g.ID == 0 {
			b.Queue(insertGroupSQL, sqlq.GroupArgs(g)...)
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &b)
	for _, i := range todo {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		for rows.Next() {
			if err := rows.Scan(&groups[i].ID); err != nil {
				rows.Close()
				br.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

func (r reports) Groups(ctx context.Context, f store.ReportFilter) ([]store.ReportGroup, error) {
	q := sqlq.Groups(sqlq.Postgres, f)
	rows, err := r.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: report groups: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ReportGroup, error) {
		return sqlq.ScanGroup(row.Scan)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: report groups: %w", err)
	}
	return out, nil
}

func (r reports) Count(ctx context.Context, f store.ReportFilter, by store.Dimension) ([]store.Tally, error) {
	q, err := sqlq.Count(sqlq.Postgres, f, by)
	if err != nil {
		return nil, fmt.Errorf("postgres: count reports: %w", err)
	}
	rows, err := r.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: count reports: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Tally, error) {
		var t store.Tally
		err := row.Scan(&t.Key, &t.Label, &t.Reports, &t.Clients)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: count reports: %w", err)
	}
	return out, nil
}

func (r reports) Timeline(ctx context.Context, f store.ReportFilter, width time.Duration) ([]store.Bucket, error) {
	q, err := sqlq.Timeline(sqlq.Postgres, f, width)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	rows, err := r.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: report timeline: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Bucket, error) {
		var k, n int64
		err := row.Scan(&k, &n)
		return store.Bucket{Start: sqlq.BucketStart(f.Since, width, k), Reports: n}, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: report timeline: %w", err)
	}
	return out, nil
}

func (r reports) Total(ctx context.Context, f store.ReportFilter) (int64, error) {
	q := sqlq.Total(sqlq.Postgres, f)
	var n int64
	if err := r.db.pool.QueryRow(ctx, q.SQL, q.Args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: count reports: %w", err)
	}
	return n, nil
}

func (r reports) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{sqlq.PruneEventsSQL, sqlq.PruneGroupsSQL} {
		var args []any
		if q == sqlq.PruneEventsSQL {
			args = []any{sqlq.Millis(before)}
		}
		for {
			tag, err := r.db.pool.Exec(ctx, q, args...)
			if err != nil {
				// A group that gained a report while it was being
				// deleted is kept by the foreign key; the next run
				// deletes it if it is empty again.
				return total, fmt.Errorf("postgres: prune reports: %w", err)
			}
			n := tag.RowsAffected()
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
	q := sqlq.Deliveries(sqlq.Postgres, f)
	rows, err := r.db.pool.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: report deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Delivery, error) {
		return sqlq.ScanDelivery(row.Scan)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: report deliveries: %w", err)
	}
	return out, nil
}

// usageSQL adds up the report tables' space, indexes and TOAST included,
// from the sizes of their files: no scan.
const usageSQL = "SELECT pg_total_relation_size('report_groups'::regclass) + pg_total_relation_size('report_events'::regclass)"

// Usage measures the report tables; the free space of the server's disk
// is not known here (Free is -1).
func (r reports) Usage(ctx context.Context) (store.Usage, error) {
	u := store.Usage{Free: -1}
	if err := r.db.pool.QueryRow(ctx, usageSQL).Scan(&u.Bytes); err != nil {
		return u, fmt.Errorf("postgres: usage: %w", err)
	}
	return u, nil
}
