package bundle

import (
	"context"
	"time"
)

// SetSleep replaces the timer of u's Run loop, so that tests drive time.
func SetSleep(u *Updater, f func(ctx context.Context, d time.Duration) error) { u.sleep = f }
