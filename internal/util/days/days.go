// Package days reads and writes durations the way Rampart's commands and
// configuration files take them: Go durations ("72h", "15m") with a
// leading whole number of days ("3d", "1d12h", "90d").
package days

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Max bounds a number of days: larger ones are typos, and would overflow
// a time.Duration.
const Max = 100000

// Parse parses a duration as time.ParseDuration does, with a leading
// whole number of days: "3d", "1d12h", "90d". Its errors say what to give.
func Parse(s string) (time.Duration, error) {
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
	if err != nil || n < 0 || n > Max || days != strconv.Itoa(n) {
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

// Format writes d as time.Duration does, without the zero minutes and
// seconds: 72h, 1h30m, 15m. Parse reads it back.
func Format(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
