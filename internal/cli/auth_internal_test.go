package cli

import (
	"strings"
	"testing"
	"time"
)

// Duration flags take days ("3d", "1d12h") as well as Go's units, and
// show their value briefly (72h, not 72h0m0s).
func TestDurationFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		show string
	}{
		{"3d", 72 * time.Hour, "72h"},
		{"1d12h", 36 * time.Hour, "36h"},
		{"90d", 90 * 24 * time.Hour, "2160h"},
		{"0d", 0, "0s"},
		{"15m", 15 * time.Minute, "15m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"90s", 90 * time.Second, "1m30s"},
		{"10m", 10 * time.Minute, "10m"},
	} {
		var d time.Duration
		f := durationFlag{&d}
		if err := f.Set(tc.in); err != nil || d != tc.want || f.String() != tc.show {
			t.Errorf("%q: %v %v %q, want %v %q", tc.in, d, err, f.String(), tc.want, tc.show)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "+1d", "1.5d", "3d-1h", "1w", "3dd", "1d 2h", "99999999999d", "100000d2562047h"} {
		var d time.Duration
		if err := (durationFlag{&d}).Set(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, d)
		}
	}
}

// FuzzParseDays: whatever parses is not negative, and reads back the same
// from the way it is shown.
func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"3d", "1d12h", "72h", "15m", "0", "1d1h1m1s", "-1h", "1d-1h", "9223372036s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDays(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want a duration such as") {
				t.Fatalf("%q: error %q does not say what to give", s, err)
			}
			return
		}
		if strings.Contains(s, "d") && d < 0 {
			t.Fatalf("%q: negative %v", s, d)
		}
		back, err := parseDays(shortDuration(d))
		if err != nil || back != d {
			t.Fatalf("%q = %v, shown %q, reads back %v %v", s, d, shortDuration(d), back, err)
		}
	})
}
