package cli

import (
	"time"

	"github.com/rampartsec/rampart/internal/util/days"
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

// parseDays is days.Parse.
func parseDays(s string) (time.Duration, error) { return days.Parse(s) }

// shortDuration is days.Format.
func shortDuration(d time.Duration) string { return days.Format(d) }
