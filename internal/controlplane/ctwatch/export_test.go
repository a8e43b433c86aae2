package ctwatch

import (
	"context"

	"github.com/rampartsec/rampart/ct"
)

// SinkOf is the watcher's sink, for tests.
func SinkOf(w *Watcher) ct.Sink { return sink{w} }

// DeliverDue sends the alerts due now, for tests.
func DeliverDue(w *Watcher, ctx context.Context) { w.deliverDue(ctx) }
