package api

import (
	"encoding/json"
	"testing"
	"time"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

// Time writes every time as RFC 3339 in UTC, clamping what has no RFC 3339
// form, and reads back what it wrote.
func TestTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 25, 13, 0, 0, 0, time.FixedZone("", 3600)), `"2026-11-25T12:00:00Z"`},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), `"9999-12-31T23:59:59Z"`},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), `"9999-12-31T23:59:59Z"`},
		{time.Date(275760, 9, 13, 0, 0, 0, 0, time.UTC), `"9999-12-31T23:59:59Z"`},
		{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), `"0000-01-01T00:00:00Z"`},
		{time.Time{}, `"0001-01-01T00:00:00Z"`},
	} {
		b, err := json.Marshal(NewTime(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("%v: %s %v, want %s", tc.in, b, err, tc.want)
		}
		var back Time
		if err := json.Unmarshal(b, &back); err != nil || back.Location() != time.UTC {
			t.Errorf("%s does not read back: %v %v", b, back, err)
		}
	}
}

// A published bundle is its header and the time it was published, in
// this order: the answer of POST /v1/admin/bundles.
func TestPublishedBundleJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	b, err := json.Marshal(PublishedBundle{Bundle{"mobile", 7, "kid", NewTime(at), NewTime(at.Add(time.Hour))}, NewTime(at)})
	want := `{"name":"mobile","version":7,"kid":"kid","issued_at":"2026-11-25T12:00:00Z","expires_at":"2026-11-25T13:00:00Z","published_at":"2026-11-25T12:00:00Z"}`
	if err != nil || string(b) != want {
		t.Errorf("%s %v\nwant %s", b, err, want)
	}
}
