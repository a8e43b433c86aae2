package ctwatch

import "github.com/rampartsec/rampart/ct"

// SinkOf is the watcher's sink, for tests.
func SinkOf(w *Watcher) ct.Sink { return sink{w} }
