package store

import (
	"context"
	"errors"
	"time"

	"github.com/rampartsec/rampart/ct"
)

// ErrLeaseLost is returned by CTStore.SavePosition when the owner no
// longer holds the log's lease: another instance took the log over.
var ErrLeaseLost = errors.New("store: the log's lease is held by another instance")

// A CTSighting is a logged certificate that concerns the organisation,
// as the CT monitor found it in one log entry.
type CTSighting struct {
	// LogID is the log's ID (standard base64), Log its name, Index the
	// entry's position.
	LogID, Log string
	Index      int64
	// Logged is the entry's timestamp; Seen when the monitor judged it.
	Logged, Seen time.Time
	Precert      bool
	// TBSHash identifies the certificate across its precertificate and
	// final forms (64 lowercase hex digits); for an entry that could not
	// be read, the hash of its bytes.
	TBSHash string
	// Class is the verdict's class; Alert says the class calls for an
	// alert (rogue, rollover, unparsed).
	Class ct.Class
	Alert bool
	// SPKI is the key's pin ("sha256/..."), empty when unreadable.
	SPKI   string
	Issuer string
	Names  []string
	// Finding is the finding's JSON (ct.Finding's schema), at most 64 KiB.
	Finding []byte
}

// A CTCertificate is a certificate the monitor has seen, with its worst
// class and its sightings, across logs.
type CTCertificate struct {
	TBSHash string
	Class   ct.Class
	SPKI    string
	Issuer  string
	Names   []string
	// FirstSeen and LastSeen are when the monitor first and last judged
	// an entry of it; Sightings counts those entries.
	FirstSeen, LastSeen time.Time
	Sightings           int64
	// Finding is the JSON of the sighting that set its class.
	Finding []byte
}

// CTFilter selects certificates. Zero fields select everything.
type CTFilter struct {
	Class ct.Class
	SPKI  string
	// Limit bounds the rows; 0 means 100.
	Limit int
}

// A CTAlert is an alert to deliver: raised by the first sighting of a
// certificate whose class calls for one, or by a sighting that makes a
// known certificate's class worse.
type CTAlert struct {
	ID        int64
	TBSHash   string
	Class     ct.Class
	Created   time.Time
	Payload   []byte // the finding's JSON
	Attempts  int
	LastError string
}

// CTStore keeps the Certificate Transparency monitor's state: each log's
// position, leased to one instance at a time so that instances sharing a
// database split the logs; the certificates seen and their sightings; and
// the alerts to deliver. No sighting is recorded twice (one per log
// entry), and no certificate raises two alerts for one class, whatever
// the number of instances.
type CTStore interface {
	// Claim takes the lease on log for owner until now+ttl, or renews
	// the lease owner holds. It returns false, changing nothing, while
	// another owner's lease runs.
	Claim(ctx context.Context, log, owner string, now time.Time, ttl time.Duration) (bool, error)
	// Position returns log's stored position; false when there is none.
	Position(ctx context.Context, log string) (ct.Position, bool, error)
	// SavePosition stores log's position if owner holds its lease at now,
	// and fails with ErrLeaseLost otherwise.
	SavePosition(ctx context.Context, log, owner string, now time.Time, p ct.Position) error
	// AddSighting records a sighting, at most once per (LogID, Index),
	// and returns the alert it raised, or nil.
	AddSighting(ctx context.Context, s CTSighting) (*CTAlert, error)
	// Certificates lists the certificates seen, worst class first, then
	// most recently first seen.
	Certificates(ctx context.Context, f CTFilter) ([]CTCertificate, error)
	// DueAlerts leases to owner, until now+lease, up to limit undelivered
	// alerts whose next attempt is due, oldest first.
	DueAlerts(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]CTAlert, error)
	// AlertDelivered marks an alert delivered. AlertFailed counts a failed
	// attempt and schedules the next at next (zero: never again).
	AlertDelivered(ctx context.Context, id int64, at time.Time) error
	AlertFailed(ctx context.Context, id int64, next time.Time, reason string) error
}
