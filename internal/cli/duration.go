package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// durationFlag is the one duration flag of every command: Go durations
// ("72h", "15m") and a leading number of days ("3d", "1d12h", "90d"),
// shown briefly ("72h", not "72h0m0s"). Use (*durationFlag)(&d).
type durationFlag time.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return "0" // which pflag does not print as a default
	}
	return shortDuration(time.Duration(*d))
}

func (d *durationFlag) Type() string { return "duration" }

func (d *durationFlag) Set(s string) error {
	v, err := parseDays(s)
	if err != nil {
		return err
	}
	*d = durationFlag(v)
	return nil
}

// maxDays bounds a number of days: larger ones are typos, and would
// overflow a time.Duration.
const maxDays = 100000

// parseDays parses a duration as time.ParseDuration does, with a
// leading whole number of days: "3d", "1d12h", "90d".
func parseDays(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q: want a duration such as 72h, 3d or 1d12h", s)
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > maxDays || days != strconv.Itoa(n) {
		return 0, bad
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || r > math.MaxInt64-d || rest[0] == '+' {
			return 0, bad
		}
		d += r
	}
	return d, nil
}

// shortDuration writes d as time.Duration does, without the zero minutes
// and seconds: 72h, 1h30m, 15m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
