// Package api declares the JSON of the control plane's admin API
// (/v1/admin/...) and of its error answers: what internal/controlplane/server writes
// and internal/app/cli reads, declared once so that the two cannot drift
// apart. The member names and shapes are the API; they change only with
// it.
package api

import (
	"encoding/json"
	"time"
)

// Time is a time in the admin API: RFC 3339 in UTC. It always encodes:
// RFC 3339 has four-digit years, so a time past the end of year 9999 (a
// bundle signed to expire in year 10000, say: stored data, whatever its
// origin, must not break every answer that lists it) is written as
// 9999-12-31T23:59:59Z, and one before year 0 as 0000-01-01T00:00:00Z.
// The zero Time is 0001-01-01T00:00:00Z.
type Time struct{ time.Time }

var (
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
)

// NewTime returns t as a Time, in UTC.
func NewTime(t time.Time) Time { return Time{t.UTC()} }

// MarshalJSON implements [json.Marshaler].
func (t Time) MarshalJSON() ([]byte, error) {
	u := t.UTC()
	switch {
	case u.After(maxTime):
		u = maxTime
	case u.Before(minTime):
		u = minTime
	}
	return u.MarshalJSON()
}

// Error is the body of every refusal: {"error": "what is wrong"}.
type Error struct {
	Message string `json:"error"`
}

// Bundle describes a signed pin bundle by its header: what
// rampart bundle verify --json prints, with the policy beside it.
type Bundle struct {
	Name      string `json:"name"`
	Version   int64  `json:"version"`
	KeyID     string `json:"kid"`
	IssuedAt  Time   `json:"issued_at"`
	ExpiresAt Time   `json:"expires_at"`
}

// PublishedBundle is a bundle the control plane publishes: the answer of
// POST /v1/admin/bundles (201 Created), an entry of GET
// /v1/admin/bundles and of the summary.
type PublishedBundle struct {
	Bundle
	PublishedAt Time `json:"published_at"`
}

// Bundles is the answer of GET /v1/admin/bundles, newest first.
type Bundles struct {
	Bundles []PublishedBundle `json:"bundles"`
}

// ReportGroup is one group of identical failure reports: what they say
// (see internal/store.ReportContent), how many arrived from how many
// clients within the filter, and the first report as received (null when
// the stored body is not JSON).
type ReportGroup struct {
	ID                int64  `json:"id"`
	Format            string `json:"format"`
	Hostname          string `json:"hostname"`
	Port              int    `json:"port"`
	NotedHostname     string `json:"noted_hostname"`
	IncludeSubdomains bool   `json:"include_subdomains"`
	Mode              string `json:"mode,omitempty"`
	Reason            string `json:"reason,omitempty"`
	ServedPin         string `json:"served_pin"`
	ServedSubject     string `json:"served_subject"`
	AppBundleID       string `json:"app_bundle_id,omitempty"`
	AppVersion        string `json:"app_version,omitempty"`
	AppPlatform       string `json:"app_platform,omitempty"`
	// KnownCertPins are the certificate pins the client expected
	// (rampart-known-cert-pins), omitted when the report named none.
	KnownCertPins []string        `json:"known_cert_pins,omitempty"`
	Reports       int64           `json:"reports"`
	Clients       int64           `json:"clients"`
	FirstSeen     Time            `json:"first_seen"`
	LastSeen      Time            `json:"last_seen"`
	Report        json.RawMessage `json:"report"`
}

// ReportGroups is the answer of GET /v1/admin/reports, most recently
// seen first.
type ReportGroups struct {
	Groups []ReportGroup `json:"groups"`
}

// Summary is the answer of GET /v1/admin/reports/summary: the counts of a
// range, as the dashboard shows them.
type Summary struct {
	Since Time `json:"since"`
	Until Time `json:"until"`
	// Bucket is the timeline's step as an ISO 8601 duration ("PT1H",
	// "P1D"); BucketSeconds the same in seconds.
	Bucket        string   `json:"bucket"`
	BucketSeconds int64    `json:"bucket_seconds"`
	Total         int64    `json:"total"`
	Timeline      []Bucket `json:"timeline"`
	ByDomain      []Tally  `json:"by_domain"`
	ByServedPin   []Tally  `json:"by_served_pin"`
	ByApp         []Tally  `json:"by_app"`
	ByMode        []Tally  `json:"by_mode"`
	// Bundles are the latest published bundles, newest first.
	Bundles []PublishedBundle `json:"bundles"`
}

// Bucket is one step of a timeline: the reports received from Start on.
type Bucket struct {
	Start   Time  `json:"start"`
	Reports int64 `json:"reports"`
}

// Tally is one row of a count by domain, served key, app or mode.
type Tally struct {
	Key     string `json:"key"`
	Label   string `json:"label,omitempty"`
	Reports int64  `json:"reports"`
	Clients int64  `json:"clients"`
}
