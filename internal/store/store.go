// Package store holds what the control plane keeps: pin failure reports,
// signed pin bundles, and what authenticates clients (clients and API
// keys, token signing keys, revoked tokens). It defines the interfaces, or
// takes them from the public packages that use them ([apikey.Store],
// [authserver.KeyStore], [authserver.RevocationStore]); the backends live in
// its subpackages and pass one shared suite, [storetest]:
//
//   - sqlite: the default, a file in the data directory (pure Go, WAL), no
//     set-up;
//   - postgres: for several control-plane instances sharing one database.
//
// backend.Open picks one from a DSN. Every method takes a
// [context.Context]; times are stored with millisecond precision, in UTC.
//
// Rate-limit state never lives here (see package ratelimit). Secrets are
// never stored in the clear: the stores are given API keys only as their
// HMAC and signing keys only sealed, and never log either.
//
// [storetest]: https://pkg.go.dev/github.com/rampartsec/rampart/internal/store/storetest
package store

import (
	"context"
	"errors"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/token/authserver"
)

// Errors callers branch on.
var (
	// ErrNotFound is returned when the thing asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrStaleVersion is returned by PublishBundle when the bundle's
	// version is not greater than the latest published version of that
	// name.
	ErrStaleVersion = errors.New("store: version not greater than the latest published")
)

// Store is a control-plane database.
type Store interface {
	Reports() ReportStore
	Bundles() BundleStore
	// APIKeys returns the clients and API keys. Its errors wrap
	// apikey.ErrNotFound and apikey.ErrConflict, not this package's.
	APIKeys() apikey.Store
	// SigningKeys returns the token signing keys.
	SigningKeys() authserver.KeyStore
	// RevokedTokens returns the revoked access tokens.
	RevokedTokens() authserver.RevocationStore
	// Settings returns the installation's settings, such as the check
	// value of its master key.
	Settings() SettingStore
	// CT returns the Certificate Transparency monitor's state.
	CT() CTStore
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database. Calls in progress may fail.
	Close() error
}

// Report is one pin validation failure report as received: the content
// that identical reports share (Content) and what is particular to this
// delivery.
type Report struct {
	Received  time.Time
	Source    string // the client's address, without port
	UserAgent string
	// Device identifies the reporting installation when the report says
	// (TrustKit's app-vendor-id); empty otherwise.
	Device  string
	Content ReportContent
}

// ReportContent is what makes two reports identical. Reports with the
// same Digest are aggregated: stored once, counted many times.
type ReportContent struct {
	// Digest is the lowercase hex SHA-256 of the canonical report without
	// its date-time and device fields; the aggregation key.
	Digest string
	// Format is "rfc7469" or "trustkit".
	Format            string
	Hostname          string
	Port              int
	NotedHostname     string
	IncludeSubdomains bool
	// Mode is "enforce" or "report-only"; empty when the report does not
	// say.
	Mode string
	// Reason is why validation failed, e.g. "pin-mismatch"; empty when
	// the report does not say.
	Reason string
	// ServedPin is the SPKI pin ("sha256/...") of the certificate the
	// server presented (the first of the served chain, else of the
	// validated chain): the unexpected key. ServedSubject is its subject.
	ServedPin     string
	ServedSubject string
	AppBundleID   string
	AppVersion    string
	AppPlatform   string
	// KnownCertPins are the certificate pins the client expected
	// (rampart-known-cert-pins: "cert-sha256:<hex>", each a word without
	// white space); nil when the report names none, and for groups stored
	// before the store kept them.
	KnownCertPins []string
	// Body is the report's JSON as first received (at most
	// report.MaxSize, 64 KiB).
	Body []byte
}

// ReportFilter selects reports. Zero fields select everything.
type ReportFilter struct {
	// Domain matches the noted hostname (the rule) or the hostname.
	Domain string
	// Since and Until bound the receive time: Since <= t < Until.
	Since, Until time.Time
	Mode         string
	ServedPin    string
	AppVersion   string
	// GroupID selects the reports of one group (ReportGroup.ID).
	GroupID int64
	// Limit bounds the number of rows returned; 0 means 100.
	Limit int
}

// ReportGroup is a set of identical reports and how often they arrived
// within a filter. Counts and FirstSeen/LastSeen are of the deliveries
// within the filter, not of all time.
type ReportGroup struct {
	ID      int64
	Content ReportContent
	// Reports counts the deliveries; Clients the distinct devices (or
	// source addresses when reports carry no device).
	Reports, Clients    int64
	FirstSeen, LastSeen time.Time
}

// Dimension is what CountReports groups by.
type Dimension string

const (
	ByDomain    Dimension = "domain"     // noted hostname
	ByServedPin Dimension = "served_pin" // the unexpected key; Label is its subject
	ByApp       Dimension = "app"        // Key is "platform version"
	ByMode      Dimension = "mode"
)

// Tally is one row of CountReports.
type Tally struct {
	Key     string
	Label   string
	Reports int64
	Clients int64
}

// Bucket is one step of a timeline.
type Bucket struct {
	Start   time.Time
	Reports int64
}

// Delivery is one report of a group as it arrived.
type Delivery struct {
	Received  time.Time
	Source    string
	UserAgent string
	Device    string
}

// Usage is the space reports take, for storage caps.
type Usage struct {
	// Bytes is the space of the reports as the backend measures it,
	// without a scan: for SQLite the pages in use in the database file
	// (which holds the auth tables too, a small part of it); for
	// PostgreSQL the report tables with their indexes and TOAST data.
	Bytes int64
	// Free is the space left on the file system holding the database,
	// or -1 when the backend cannot tell (PostgreSQL: the server's disk
	// is not this machine's).
	Free int64
}

// ReportStore keeps failure reports.
type ReportStore interface {
	// AddReports stores reports in one transaction: all or none. When it
	// returns nil, every report is durable.
	AddReports(ctx context.Context, rs []Report) error
	// Groups lists the groups of identical reports received within f,
	// most recently seen first.
	Groups(ctx context.Context, f ReportFilter) ([]ReportGroup, error)
	// Count tallies the reports within f by dimension, most reports first.
	Count(ctx context.Context, f ReportFilter, by Dimension) ([]Tally, error)
	// Timeline counts the reports within f per bucket of the given width,
	// oldest first; buckets without reports are omitted. f.Since must be
	// set; bucket boundaries are Since + k*width; f.Limit does not apply.
	Timeline(ctx context.Context, f ReportFilter, width time.Duration) ([]Bucket, error)
	// Total counts the reports within f.
	Total(ctx context.Context, f ReportFilter) (int64, error)
	// Prune deletes the reports received before t, and the groups left
	// without reports, a bounded number of rows per transaction so that
	// ingestion is never held up for long. It returns the number of
	// reports deleted.
	Prune(ctx context.Context, before time.Time) (int64, error)
	// Deliveries lists the reports received within f (usually of one
	// group, f.GroupID), most recent first, at most f.Limit.
	Deliveries(ctx context.Context, f ReportFilter) ([]Delivery, error)
	// Usage measures the space reports take and what is left, cheaply
	// enough to be called every few seconds.
	Usage(ctx context.Context) (Usage, error)
}

// SettingStore keeps named values of the installation.
type SettingStore interface {
	// Get returns the value stored under name, or ErrNotFound.
	Get(ctx context.Context, name string) (string, error)
	// Init stores value under name unless a value is stored there
	// already, and returns the value stored under name after the call:
	// value, or the one found. Concurrent calls agree on one value,
	// across every instance sharing the database.
	Init(ctx context.Context, name, value string) (string, error)
}

// Bundle is a published signed pin bundle.
type Bundle struct {
	Name        string
	Version     int64
	KeyID       string
	IssuedAt    time.Time
	ExpiresAt   time.Time
	PublishedAt time.Time
	// JWS is the bundle in JWS compact serialization, exactly as signed.
	JWS string
}

// BundleStore keeps the published pin bundles.
type BundleStore interface {
	// Publish stores b. It fails with ErrStaleVersion, atomically, when
	// a bundle of the same name with an equal or greater version exists.
	Publish(ctx context.Context, b Bundle) error
	// Latest returns the bundle of that name with the greatest version, or
	// ErrNotFound.
	Latest(ctx context.Context, name string) (Bundle, error)
	// List returns published bundles, newest publication first; all names
	// when name is empty. limit 0 means 100.
	List(ctx context.Context, name string, limit int) ([]Bundle, error)
}
