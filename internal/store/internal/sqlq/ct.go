package sqlq

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
)

// CT builds the CT monitor's statements (the tables of 0006_ct.sql) in
// one dialect: the same SQL in both backends, which run them in their own
// transactions.
type CT struct{ D Dialect }

func (c CT) q(sql string, args ...any) Query {
	b := builder{d: c.D}
	var out strings.Builder
	n := 0
	for i := 0; i < len(sql); i++ {
		if sql[i] == '?' {
			out.WriteString(b.arg(args[n]))
			n++
			continue
		}
		out.WriteByte(sql[i])
	}
	return Query{SQL: out.String(), Args: b.args}
}

// Claim takes or renews a log's lease; one row affected when it did.
func (c CT) Claim(log, owner string, now time.Time, ttl time.Duration) Query {
	return c.q(`INSERT INTO ct_logs (log_id, owner, lease_until_ms) VALUES (?, ?, ?)
		ON CONFLICT (log_id) DO UPDATE SET owner = excluded.owner, lease_until_ms = excluded.lease_until_ms
		WHERE ct_logs.owner = excluded.owner OR ct_logs.lease_until_ms <= ?`,
		log, owner, Millis(now.Add(ttl)), Millis(now))
}

// Position reads a log's position; scan it with [ScanPosition].
func (c CT) Position(log string) Query {
	return c.q(`SELECT has_position, tree_size, root, head_ms, next_index, frontier FROM ct_logs WHERE log_id = ?`, log)
}

// ScanPosition reads the row of [CT.Position].
func ScanPosition(scan func(dest ...any) error) (ct.Position, bool, error) {
	var has, size, headMS, next int64
	var root, frontier []byte
	if err := scan(&has, &size, &root, &headMS, &next, &frontier); err != nil {
		return ct.Position{}, false, err
	}
	if has == 0 {
		return ct.Position{}, false, nil
	}
	p := ct.Position{Head: ct.Head{Size: size, Time: Time(headMS)}, Next: next}
	if len(root) != tlog.HashSize || len(frontier)%tlog.HashSize != 0 {
		return ct.Position{}, false, errors.New("a stored CT position is malformed")
	}
	copy(p.Head.Root[:], root)
	for len(frontier) > 0 {
		var h tlog.Hash
		copy(h[:], frontier)
		p.Frontier = append(p.Frontier, h)
		frontier = frontier[tlog.HashSize:]
	}
	return p, true, nil
}

// SavePosition stores a position under the lease; one row affected when
// owner holds it.
func (c CT) SavePosition(log, owner string, now time.Time, p ct.Position) Query {
	var frontier []byte
	for _, h := range p.Frontier {
		frontier = append(frontier, h[:]...)
	}
	if frontier == nil {
		frontier = []byte{}
	}
	return c.q(`UPDATE ct_logs SET has_position = 1, tree_size = ?, root = ?, head_ms = ?, next_index = ?, frontier = ?
		WHERE log_id = ? AND owner = ? AND lease_until_ms > ?`,
		p.Head.Size, p.Head.Root[:], Millis(p.Head.Time), p.Next, frontier, log, owner, Millis(now))
}

// MaxFinding bounds a sighting's finding JSON.
const MaxFinding = 64 << 10

// CheckSighting refuses what may not be stored.
func CheckSighting(s store.CTSighting) error {
	switch {
	case s.LogID == "" || s.Index < 0:
		return errors.New("a CT sighting needs a log ID and an index")
	case len(s.TBSHash) != 64 || strings.ToLower(s.TBSHash) != s.TBSHash:
		return fmt.Errorf("TBS hash %q is not 64 lowercase hex digits", s.TBSHash)
	case s.Class.Severity() == 0:
		return fmt.Errorf("unknown CT class %q", s.Class)
	case s.Seen.IsZero():
		return errors.New("a CT sighting needs the time it was seen")
	case len(s.Finding) > MaxFinding:
		return fmt.Errorf("a CT finding of %d bytes (at most %d)", len(s.Finding), MaxFinding)
	}
	if _, err := hex.DecodeString(s.TBSHash); err != nil {
		return fmt.Errorf("TBS hash %q is not hex", s.TBSHash)
	}
	fields := []string{"log ID", s.LogID, "log name", s.Log, "key", s.SPKI, "issuer", s.Issuer}
	for _, n := range s.Names {
		fields = append(fields, "name", n)
	}
	if err := checkText(fields...); err != nil {
		return err
	}
	if !utf8.Valid(s.Finding) {
		return errors.New("a CT finding that is not UTF-8 JSON")
	}
	return nil
}

// InsertSighting records one entry; no row affected when it is known.
func (c CT) InsertSighting(s store.CTSighting) Query {
	return c.q(`INSERT INTO ct_sightings (log_id, idx, tbs_hash, log_name, precert, logged_ms, seen_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log_id, idx) DO NOTHING`,
		s.LogID, s.Index, s.TBSHash, s.Log, boolInt(s.Precert), Millis(s.Logged), Millis(s.Seen))
}

// InsertCert records a certificate first seen; no row affected when it
// is known.
func (c CT) InsertCert(s store.CTSighting) Query {
	names, _ := json.Marshal(nonNil(s.Names))
	return c.q(`INSERT INTO ct_certs (tbs_hash, class, severity, spki, issuer, names, first_ms, last_ms, sightings, finding)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (tbs_hash) DO NOTHING`,
		s.TBSHash, string(s.Class), s.Class.Severity(), s.SPKI, s.Issuer, string(names), Millis(s.Seen), Millis(s.Seen), nonNilBytes(s.Finding))
}

// BumpCert counts another sighting of a known certificate.
func (c CT) BumpCert(s store.CTSighting) Query {
	return c.q(`UPDATE ct_certs SET sightings = sightings + 1, last_ms = CASE WHEN last_ms < ? THEN ? ELSE last_ms END WHERE tbs_hash = ?`,
		Millis(s.Seen), Millis(s.Seen), s.TBSHash)
}

// EscalateCert raises a known certificate's class; one row affected when
// the sighting's class is worse.
func (c CT) EscalateCert(s store.CTSighting) Query {
	return c.q(`UPDATE ct_certs SET class = ?, severity = ?, finding = ? WHERE tbs_hash = ? AND severity < ?`,
		string(s.Class), s.Class.Severity(), nonNilBytes(s.Finding), s.TBSHash, s.Class.Severity())
}

// InsertAlert queues an alert and returns its ID.
func (c CT) InsertAlert(s store.CTSighting) Query {
	return c.q(`INSERT INTO ct_alerts (tbs_hash, class, created_ms, payload, next_ms) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		s.TBSHash, string(s.Class), Millis(s.Seen), nonNilBytes(s.Finding), Millis(s.Seen))
}

// Certificates lists certificates; scan rows with [ScanCert].
func (c CT) Certificates(f store.CTFilter) Query {
	sql := `SELECT tbs_hash, class, spki, issuer, names, first_ms, last_ms, sightings, finding FROM ct_certs WHERE 1 = 1`
	var args []any
	if f.Class != "" {
		sql += " AND class = ?"
		args = append(args, string(f.Class))
	}
	if f.SPKI != "" {
		sql += " AND spki = ?"
		args = append(args, f.SPKI)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	sql += " ORDER BY severity DESC, first_ms DESC, tbs_hash LIMIT ?"
	return c.q(sql, append(args, limit)...)
}

// ScanCert reads a row of [CT.Certificates].
func ScanCert(scan func(dest ...any) error) (store.CTCertificate, error) {
	var cert store.CTCertificate
	var class, names string
	var first, last int64
	if err := scan(&cert.TBSHash, &class, &cert.SPKI, &cert.Issuer, &names, &first, &last, &cert.Sightings, &cert.Finding); err != nil {
		return cert, err
	}
	cert.Class = ct.Class(class)
	cert.FirstSeen, cert.LastSeen = Time(first), Time(last)
	if err := json.Unmarshal([]byte(names), &cert.Names); err != nil {
		return cert, fmt.Errorf("a stored certificate's names: %w", err)
	}
	return cert, nil
}

// DueAlerts leases due alerts; scan the rows with [ScanAlert].
func (c CT) DueAlerts(owner string, now time.Time, lease time.Duration, limit int) Query {
	return c.q(`UPDATE ct_alerts SET owner = ?, lease_until_ms = ? WHERE id IN (
		SELECT id FROM ct_alerts WHERE delivered_ms IS NULL AND next_ms > 0 AND next_ms <= ? AND (lease_until_ms <= ? OR owner = ?)
		ORDER BY id LIMIT ?`+c.D.SkipLocked+`)
		RETURNING id, tbs_hash, class, created_ms, payload, attempts, last_error`,
		owner, Millis(now.Add(lease)), Millis(now), Millis(now), owner, limit)
}

// ScanAlert reads a row of [CT.DueAlerts].
func ScanAlert(scan func(dest ...any) error) (store.CTAlert, error) {
	var a store.CTAlert
	var class string
	var created int64
	if err := scan(&a.ID, &a.TBSHash, &class, &created, &a.Payload, &a.Attempts, &a.LastError); err != nil {
		return a, err
	}
	a.Class, a.Created = ct.Class(class), Time(created)
	return a, nil
}

// AlertDelivered marks an alert delivered.
func (c CT) AlertDelivered(id int64, at time.Time) Query {
	return c.q(`UPDATE ct_alerts SET delivered_ms = ?, lease_until_ms = 0 WHERE id = ?`, Millis(at), id)
}

// AlertFailed counts a failed attempt; a zero next stops the attempts.
func (c CT) AlertFailed(id int64, next time.Time, reason string) Query {
	var nextMS int64
	if !next.IsZero() {
		nextMS = Millis(next)
	}
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	reason = strings.ToValidUTF8(strings.ReplaceAll(reason, "\x00", ""), "?")
	return c.q(`UPDATE ct_alerts SET attempts = attempts + 1, next_ms = ?, last_error = ?, lease_until_ms = 0 WHERE id = ?`, nextMS, reason, id)
}

// AddSighting is CTStore.AddSighting's transaction, through the
// backend's exec (rows affected) and insertID (the returned ID), run in
// one transaction: the sighting's primary key makes a second delivery of
// an entry a no-op; the certificate's insert and the escalation each
// affect a row in one transaction only, so one alert is raised per
// certificate and class however many instances see it.
func (c CT) AddSighting(exec, insertID func(Query) (int64, error), sg store.CTSighting) (*store.CTAlert, error) {
	if n, err := exec(c.InsertSighting(sg)); err != nil || n == 0 {
		return nil, err // an entry already recorded raises nothing
	}
	n, err := exec(c.InsertCert(sg))
	if err != nil {
		return nil, err
	}
	raised := n == 1
	if !raised {
		if _, err := exec(c.BumpCert(sg)); err != nil {
			return nil, err
		}
		n, err := exec(c.EscalateCert(sg))
		if err != nil {
			return nil, err
		}
		raised = n == 1
	}
	if !raised || !sg.Alert {
		return nil, nil
	}
	id, err := insertID(c.InsertAlert(sg))
	if err != nil {
		return nil, err
	}
	return &store.CTAlert{ID: id, TBSHash: sg.TBSHash, Class: sg.Class, Created: Time(Millis(sg.Seen)), Payload: sg.Finding}, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
