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
		{"7d", 7 * 24 * time.Hour, "168h"},
		{"1d12h", 36 * time.Hour, "36h"},
		{"90d", 90 * 24 * time.Hour, "2160h"},
		{"0d", 0, "0"},
		{"15m", 15 * time.Minute, "15m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"90s", 90 * time.Second, "1m30s"},
		{"2160h", 90 * 24 * time.Hour, "2160h"},
	} {
		var d time.Duration
		f := (*durationFlag)(&d)
		if err := f.Set(tc.in); err != nil || d != tc.want || f.String() != tc.show {
			t.Errorf("%q: %v %v %q, want %v %q", tc.in, d, err, f.String(), tc.want, tc.show)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "+1d", "07d", "1.5d", "3d-1h", "3d+1h", "1w", "3dd", "1d 2h", "7days",
		"soon", "99999999999d", "100001d", "100000d2562047h"} {
		var d time.Duration
		if err := (*durationFlag)(&d).Set(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, d)
		} else if !strings.Contains(err.Error(), "want a duration such as") {
			t.Errorf("%q: error %q does not say what to give", bad, err)
		}
	}
}

// FuzzParseDays: whatever parses reads back the same from the way the
// flag shows it; an error says what to give.
func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"3d", "1d12h", "72h", "15m", "0", "1d1h1m1s", "-1h", "1d-1h", "9223372036s", "7d", "0d", "-5m", "1.5h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d time.Duration
		flag := (*durationFlag)(&d)
		if err := flag.Set(s); err != nil {
			if !strings.Contains(err.Error(), "want a duration such as") {
				t.Fatalf("%q: error %q does not say what to give", s, err)
			}
			return
		}
		if strings.Contains(s, "d") && d < 0 {
			t.Fatalf("%q: negative %v", s, d)
		}
		var back time.Duration
		if err := (*durationFlag)(&back).Set(flag.String()); err != nil || back != d {
			t.Fatalf("%q = %v, shown %q, reads back %v %v", s, d, flag.String(), back, err)
		}
	})
}
