// Package goroutines helps tests check that a type leaves no goroutine
// behind: Settle waits for the count to come back to a baseline, and
// fails with every goroutine's stack when it does not.
package goroutines

import (
	"runtime"
	"testing"
	"time"
)

// Settle waits until no more than n goroutines run, for up to 5 s (a
// goroutine that has done its work may still be returning), and fails t
// with the stacks of all goroutines if they do not settle.
func Settle(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
