// Package sqlq holds what the SQL backends share, so that they cannot
// drift apart:
//
//   - the report queries ([Groups], [Count], [Timeline], [Total]), which
//     are the same SQL in both dialects but for placeholders and the
//     byte-order collation that makes tie-breaking identical;
//   - the checks on what may be stored ([CheckReports], [CheckBundle],
//     [CheckClient], [CheckNewKey], [CheckRotation], [CheckSigningKey],
//     [CheckRevocation]);
//   - the columns and scans of the auth tables of 0002_auth.sql
//     ([KeySelect], [ScanKey], ...), whose writes each backend makes
//     under its own locking;
//   - the reading of embedded migrations ([Migrations]).
//
// The queries expect the schema of the backends' 0001_init.sql:
// report_groups (alias g) holds the content of identical reports,
// report_events (alias e) one row per delivery, times in Unix
// milliseconds. Counts are always of the events within the filter, so the
// time bounds apply to events, not to groups.
package sqlq

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin/report"
)

// Dialect is what differs between the SQL backends in the shared queries.
type Dialect struct {
	// Placeholder returns the marker of the n-th argument, counting from 1.
	Placeholder func(n int) string
	// Binary is the collation clause that orders text by bytes, so that
	// ties are broken the same way whatever the database's locale.
	Binary string
	// TimeIndex follows "report_events e" in time-bounded queries. SQLite
	// would otherwise walk the (group_id, received_ms) index to save a
	// sort in GROUP BY, reading every event ever stored to count those
	// of the last hour; reading the range and sorting it is what keeps
	// a dashboard's cost proportional to the window it shows. PostgreSQL
	// estimates ranges from its statistics and needs no hint.
	TimeIndex string
	// SkipLocked follows a subquery that leases rows, so that instances
	// leasing at once take different rows (PostgreSQL); SQLite's single
	// writer needs none.
	SkipLocked string
}

// SQLite and Postgres are the dialects of the two backends.
var (
	SQLite = Dialect{
		Placeholder: func(int) string { return "?" },
		Binary:      " COLLATE BINARY",
		TimeIndex:   " INDEXED BY report_events_received",
	}
	Postgres = Dialect{Placeholder: func(n int) string { return "$" + strconv.Itoa(n) }, Binary: ` COLLATE "C"`, SkipLocked: " FOR UPDATE SKIP LOCKED"}
)

// Query is a statement and its arguments.
type Query struct {
	SQL  string
	Args []any
}

type builder struct {
	d    Dialect
	args []any
}

func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return b.d.Placeholder(len(b.args))
}

// DefaultLimit is the number of rows returned when a filter sets none.
const DefaultLimit = 100

// Limit returns the row limit f asks for.
func Limit(f store.ReportFilter) int {
	if f.Limit <= 0 {
		return DefaultLimit
	}
	return f.Limit
}

// Millis converts t to the stored representation.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// Time converts a stored time back, in UTC.
func Time(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// clientExpr identifies a client: its device when the report names one,
// else its address. The prefixes keep a device ID that happens to equal
// an address from being counted as the same client.
const clientExpr = `CASE WHEN e.device <> '' THEN 'd:' || e.device ELSE 's:' || e.source END`

// from returns the FROM and WHERE clauses selecting the events within f.
// The groups table is joined only when needed (by a content filter or the
// caller), because the join costs a lookup per event on large scans.
func (b *builder) from(f store.ReportFilter, joinGroups bool) string {
	var where []string
	if !f.Since.IsZero() {
		where = append(where, "e.received_ms >= "+b.arg(Millis(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, "e.received_ms < "+b.arg(Millis(f.Until)))
	}
	if f.Domain != "" {
		where = append(where, "(g.noted_hostname = "+b.arg(f.Domain)+" OR g.hostname = "+b.arg(f.Domain)+")")
		joinGroups = true
	}
	if f.Mode != "" {
		where = append(where, "g.mode = "+b.arg(f.Mode))
		joinGroups = true
	}
	if f.ServedPin != "" {
		where = append(where, "g.served_pin = "+b.arg(f.ServedPin))
		joinGroups = true
	}
	if f.AppVersion != "" {
		where = append(where, "g.app_version = "+b.arg(f.AppVersion))
		joinGroups = true
	}
	if f.GroupID != 0 {
		where = append(where, "e.group_id = "+b.arg(f.GroupID))
	}
	s := " FROM report_events e"
	if !f.Since.IsZero() || !f.Until.IsZero() {
		s += b.d.TimeIndex
	}
	if joinGroups {
		s += " JOIN report_groups g ON g.id = e.group_id"
	}
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	return s
}

// GroupColumns are the columns Groups selects, in the order a backend
// scans them: the content, then reports, clients, first and last seen.
const GroupColumns = "g.id, g.digest, g.format, g.hostname, g.port, g.noted_hostname, " +
	"g.include_subdomains, g.mode, g.reason, g.served_pin, g.served_subject, " +
	"g.app_bundle_id, g.app_version, g.app_platform, g.known_cert_pins, g.body, " +
	"a.reports, a.clients, a.first_ms, a.last_ms"

// Groups selects the groups with events within f, most recently seen
// first, ties by ID. Aggregating before joining for the content keeps the
// bodies out of the GROUP BY.
func Groups(d Dialect, f store.ReportFilter) Query {
	b := &builder{d: d}
	from := b.from(f, false)
	limit := b.arg(Limit(f))
	return Query{
		SQL: "SELECT " + GroupColumns + " FROM (" +
			"SELECT e.group_id, COUNT(*) AS reports, COUNT(DISTINCT " + clientExpr + ") AS clients, " +
			"MIN(e.received_ms) AS first_ms, MAX(e.received_ms) AS last_ms" + from +
			" GROUP BY e.group_id ORDER BY last_ms DESC, e.group_id LIMIT " + limit +
			") a JOIN report_groups g ON g.id = a.group_id ORDER BY a.last_ms DESC, g.id",
		Args: b.args,
	}
}

// dimensions maps each Dimension to its key and label expressions.
var dimensions = map[store.Dimension][2]string{
	store.ByDomain:    {"g.noted_hostname", "CAST('' AS TEXT)"},
	store.ByServedPin: {"g.served_pin", "g.served_subject"},
	store.ByApp:       {"TRIM(g.app_platform || ' ' || g.app_version)", "CAST('' AS TEXT)"},
	store.ByMode:      {"g.mode", "CAST('' AS TEXT)"},
}

// ErrUnknownDimension is returned by Count for a Dimension it does not know.
var ErrUnknownDimension = errors.New("unknown dimension")

// Count tallies the events within f by dimension: most reports first,
// ties by key in byte order. The label of a key is the greatest of its
// labels, so that it does not depend on the scan order.
func Count(d Dialect, f store.ReportFilter, by store.Dimension) (Query, error) {
	dim, ok := dimensions[by]
	if !ok {
		return Query{}, fmt.Errorf("%w %q", ErrUnknownDimension, by)
	}
	b := &builder{d: d}
	from := b.from(f, true)
	limit := b.arg(Limit(f))
	return Query{
		SQL: "SELECT k, l, n, c FROM (" +
			"SELECT " + dim[0] + " AS k, MAX(" + dim[1] + ") AS l, COUNT(*) AS n, COUNT(DISTINCT " + clientExpr + ") AS c" +
			from + " GROUP BY " + dim[0] +
			") t ORDER BY n DESC, k" + d.Binary + " LIMIT " + limit,
		Args: b.args,
	}, nil
}

// Timeline counts the events within f per bucket of width, numbering the
// buckets from f.Since. The caller turns bucket k into Since + k*width.
func Timeline(d Dialect, f store.ReportFilter, width time.Duration) (Query, error) {
	if f.Since.IsZero() {
		return Query{}, errors.New("timeline needs a start (Since)")
	}
	if width < time.Millisecond || width%time.Millisecond != 0 {
		return Query{}, fmt.Errorf("timeline width %v is not a positive whole number of milliseconds", width)
	}
	b := &builder{d: d}
	since := b.arg(Millis(f.Since))
	w := b.arg(width.Milliseconds())
	from := b.from(f, false)
	return Query{
		SQL: "SELECT (e.received_ms - " + since + ") / " + w + " AS k, COUNT(*)" + from +
			" GROUP BY k ORDER BY k",
		Args: b.args,
	}, nil
}

// BucketStart returns the start of bucket k of a timeline from since.
func BucketStart(since time.Time, width time.Duration, k int64) time.Time {
	return Time(Millis(since)).Add(time.Duration(k) * width)
}

// DeliveryColumns are the columns Deliveries selects, in scan order.
const DeliveryColumns = "e.received_ms, e.source, e.user_agent, e.device"

// Deliveries selects the events within f, most recent first, ties by ID
// descending (the later insert first).
func Deliveries(d Dialect, f store.ReportFilter) Query {
	b := &builder{d: d}
	from := b.from(f, false)
	limit := b.arg(Limit(f))
	return Query{SQL: "SELECT " + DeliveryColumns + from + " ORDER BY e.received_ms DESC, e.id DESC LIMIT " + limit, Args: b.args}
}

// ScanDelivery reads a row of Deliveries.
func ScanDelivery(scan func(...any) error) (store.Delivery, error) {
	var d store.Delivery
	var received int64
	if err := scan(&received, &d.Source, &d.UserAgent, &d.Device); err != nil {
		return d, err
	}
	d.Received = Time(received)
	return d, nil
}

// Setting names are short identifiers; values are text.
func CheckSetting(name, value string) error {
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("setting name %q: want 1 to 64 of a-z, 0-9, _ and .", truncate(name, 80))
	}
	if err := checkText("setting "+name, value); err != nil {
		return err
	}
	return nil
}

// Total counts the events within f.
func Total(d Dialect, f store.ReportFilter) Query {
	b := &builder{d: d}
	from := b.from(f, false)
	return Query{SQL: "SELECT COUNT(*)" + from, Args: b.args}
}

// CheckReports returns an error naming the first report that may not be
// stored: one whose Digest is not a lowercase hex SHA-256, whose receive
// time is unset, whose body is over [report.MaxSize], or whose known
// certificate pins are not words (empty, or holding white space, which
// separates them in storage). Backends check the whole batch before
// writing, so that a bad report stores nothing.
func CheckReports(rs []store.Report) error {
	for i, r := range rs {
		if err := checkReport(r); err != nil {
			return fmt.Errorf("report %d: %w", i, err)
		}
	}
	return nil
}

func checkReport(r store.Report) error {
	if !isDigest(r.Content.Digest) {
		return fmt.Errorf("digest %q is not 64 lowercase hex digits", truncate(r.Content.Digest, 80))
	}
	if r.Received.IsZero() {
		return errors.New("receive time not set")
	}
	if len(r.Content.Body) > report.MaxSize {
		return fmt.Errorf("body of %d bytes is over %d", len(r.Content.Body), report.MaxSize)
	}
	// PostgreSQL refuses NUL and invalid UTF-8 in text; refusing them
	// here makes every backend behave alike.
	c := r.Content
	for name, v := range map[string]string{"source": r.Source, "user agent": r.UserAgent, "device": r.Device,
		"format": c.Format, "hostname": c.Hostname, "noted hostname": c.NotedHostname, "mode": c.Mode, "reason": c.Reason,
		"served pin": c.ServedPin, "served subject": c.ServedSubject, "app bundle id": c.AppBundleID,
		"app version": c.AppVersion, "app platform": c.AppPlatform} {
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%s %q is not text (invalid UTF-8 or NUL)", name, truncate(v, 80))
		}
	}
	for _, p := range c.KnownCertPins {
		if p == "" || !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r == 0 || unicode.IsSpace(r) }) {
			return fmt.Errorf("known certificate pin %q is not a word of text", truncate(p, 80))
		}
	}
	return nil
}

func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// CheckBundle returns an error when b may not be published: it needs a
// name and a JWS.
func CheckBundle(b store.Bundle) error {
	if b.Name == "" {
		return errors.New("bundle has no name")
	}
	if b.JWS == "" {
		return fmt.Errorf("bundle %q version %d has no JWS", b.Name, b.Version)
	}
	return nil
}

// Distinct is one digest of a batch: the content of its first report
// and, filled in by the backend, the ID of its group.
type Distinct struct {
	Content store.ReportContent
	ID      int64
}

// Aggregate returns the distinct digests of rs in ascending digest order,
// and for each report the index of its digest in that slice. Looking up
// or inserting each group once per batch, always in the same order, keeps
// concurrent batches from deadlocking on each other's index locks, and
// keeps the body of the first report received.
func Aggregate(rs []store.Report) (groups []Distinct, index []int) {
	byDigest := make(map[string]int, len(rs))
	for _, r := range rs {
		if _, ok := byDigest[r.Content.Digest]; ok {
			continue
		}
		byDigest[r.Content.Digest] = len(groups)
		groups = append(groups, Distinct{Content: r.Content})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Content.Digest < groups[j].Content.Digest })
	for i, g := range groups {
		byDigest[g.Content.Digest] = i
	}
	index = make([]int, len(rs))
	for i, r := range rs {
		index[i] = byDigest[r.Content.Digest]
	}
	return groups, index
}

// Migration is one step of a schema.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations reads the *.sql files of dir in fsys, named NNNN_what.sql
// and numbered from 1 without gaps, in order.
func Migrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name does not start with a version number", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", m.Name, i+1)
		}
	}
	return ms, nil
}

// NewerSchemaError reports a database migrated by a newer binary. Running
// against it could misread or corrupt data, so the backends refuse.
type NewerSchemaError struct {
	Database, Known int
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary knows (%d): upgrade rampart", e.Database, e.Known)
}

// PruneBatch bounds the rows one Prune transaction deletes.
const PruneBatch = 5000

// PruneEventsSQL deletes up to PruneBatch reports received before $1,
// in both dialects.
var PruneEventsSQL = fmt.Sprintf("DELETE FROM report_events WHERE id IN"+
	" (SELECT id FROM report_events WHERE received_ms < $1 ORDER BY received_ms LIMIT %d)", PruneBatch)

// PruneGroupsSQL deletes up to PruneBatch groups without reports.
var PruneGroupsSQL = fmt.Sprintf("DELETE FROM report_groups WHERE id IN"+
	" (SELECT g.id FROM report_groups g WHERE NOT EXISTS"+
	" (SELECT 1 FROM report_events e WHERE e.group_id = g.id) LIMIT %d)", PruneBatch)
