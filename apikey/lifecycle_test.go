package apikey_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/testing/goroutines"
)

// touchLookup is a Lookup that knows one key and hands every batch of
// last-used times to the test, after release lets it.
type touchLookup struct {
	lookup
	batches chan map[string]time.Time
	release chan struct{} // closed: TouchKeys returns
}

func newTouchLookup(k apikey.Key, pepper []byte) *touchLookup {
	h := apikey.Hash(k, pepper)
	return &touchLookup{
		lookup:  lookup{recs: map[string]*apikey.Record{string(h): {ID: "key_" + k.String()[8:14], ClientID: "shop", Hash: h}}},
		batches: make(chan map[string]time.Time, 10),
		release: make(chan struct{}),
	}
}

func (l *touchLookup) TouchKeys(_ context.Context, used map[string]time.Time) error {
	l.batches <- used
	<-l.release
	return nil
}

func nextBatch(t *testing.T, l *touchLookup) map[string]time.Time {
	t.Helper()
	select {
	case b := <-l.batches:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no last-used times written")
		return nil
	}
}

// The last-used times are written TouchInterval after a use, by a
// goroutine that ends with the write: an idle Verifier holds none, and
// needs no Start.
func TestVerifierIdleHoldsNoGoroutine(t *testing.T) {
	pepper := []byte("pepper")
	k, _ := apikey.Generate(apikey.Live)
	l := newTouchLookup(k, pepper)
	close(l.release)
	before := runtime.NumGoroutine()
	v := &apikey.Verifier{Store: l, Pepper: pepper, TouchInterval: time.Millisecond}
	if _, err := v.Verify(context.Background(), k.String()); err != nil {
		t.Fatal(err)
	}
	if b := nextBatch(t, l); len(b) != 1 {
		t.Fatalf("batch %v, want the one key", b)
	}
	goroutines.Settle(t, before)
	// A use after the write schedules the next one.
	if _, err := v.Verify(context.Background(), k.String()); err != nil {
		t.Fatal(err)
	}
	if b := nextBatch(t, l); len(b) != 1 {
		t.Fatalf("second batch %v, want the one key", b)
	}
	for i := range 2 {
		if err := v.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	goroutines.Settle(t, before)
	select {
	case b := <-l.batches:
		t.Fatalf("Close wrote %v with nothing pending", b)
	default:
	}
}

// Close waits for a write in progress, then writes what was used since:
// once it returns, nothing runs and nothing is lost.
func TestVerifierCloseWaitsForTheWrite(t *testing.T) {
	pepper := []byte("pepper")
	k, _ := apikey.Generate(apikey.Live)
	l := newTouchLookup(k, pepper)
	before := runtime.NumGoroutine()
	v := &apikey.Verifier{Store: l, Pepper: pepper, TouchInterval: time.Millisecond}
	ctx := context.Background()
	if _, err := v.Verify(ctx, k.String()); err != nil {
		t.Fatal(err)
	}
	nextBatch(t, l) // the write is in progress, held by release
	closed := make(chan struct{})
	go func() {
		v.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a write was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(l.release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the write")
	}
	goroutines.Settle(t, before)
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Close writes the uses not written yet at once, without waiting for
// TouchInterval.
func TestVerifierCloseWritesPending(t *testing.T) {
	pepper := []byte("pepper")
	k, _ := apikey.Generate(apikey.Live)
	l := newTouchLookup(k, pepper)
	close(l.release)
	v := &apikey.Verifier{Store: l, Pepper: pepper, TouchInterval: time.Hour}
	if _, err := v.Verify(context.Background(), k.String()); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-l.batches:
		t.Fatalf("written before the interval: %v", b)
	default:
	}
	before := runtime.NumGoroutine()
	v.Close()
	if b := nextBatch(t, l); len(b) != 1 {
		t.Fatalf("batch %v, want the one key", b)
	}
	goroutines.Settle(t, before)
}

// A Verifier without a Store is refused by Check, and Verify says so
// rather than panicking.
func TestVerifierCheck(t *testing.T) {
	var v apikey.Verifier
	if err := v.Check(); err == nil {
		t.Error("Check of a Verifier without a Store: no error")
	}
	k, _ := apikey.Generate(apikey.Live)
	var refused *apikey.RefusedError
	if _, err := v.Verify(context.Background(), k.String()); err == nil || errors.As(err, &refused) {
		t.Errorf("Verify without a Store = %v, want a configuration error", err)
	}
	if err := v.Close(); err != nil {
		t.Errorf("Close of an unused Verifier: %v", err)
	}
	ok := &apikey.Verifier{Store: &lookup{}}
	if err := ok.Check(); err != nil {
		t.Errorf("Check with a Store: %v", err)
	}
}
