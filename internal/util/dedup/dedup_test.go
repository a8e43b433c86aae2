package dedup

import (
	"fmt"
	"testing"
	"time"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestWindow(t *testing.T) {
	var w Window
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !w.First("a", t0) || w.First("a", t0.Add(time.Hour)) {
		t.Fatal("a key must be first once within the window")
	}
	if !w.First("b", t0) {
		t.Fatal("another key is first")
	}
	if w.First("a", t0.Add(24*time.Hour-1)) {
		t.Fatal("key forgotten before 24 hours")
	}
	if !w.First("a", t0.Add(24*time.Hour)) {
		t.Fatal("key remembered for 24 hours or more")
	}
	w.Forget("b")
	if !w.First("b", t0.Add(time.Minute)) {
		t.Fatal("a forgotten key is first again")
	}
}

// Memory stays bounded whatever the keys and timing: unique keys, repeats,
// and the forget/record cycle of a failing delivery.
func TestWindowBounded(t *testing.T) {
	w := Window{Max: 100}
	t0 := time.Now()
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		k := fmt.Sprint(i % 1000)
		if w.First(k, now) && i%3 == 0 {
			w.Forget(k)
		}
		if w.Len() > 100 {
			t.Fatalf("holds %d keys, max 100", w.Len())
		}
		if len(w.order) > 4*100+130 { // live entries ≤ 2·Max, plus a dead prefix compacted at half
			t.Fatalf("order holds %d entries", len(w.order))
		}
	}
	// With room, the newest keys are the ones kept.
	if w.First("998", t0.Add(100_000*time.Millisecond)) { // i = 99998 was not forgotten
		t.Error("the most recent key was evicted")
	}
}
