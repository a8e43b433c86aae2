package report_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/goroutines"
	"github.com/rampartsec/rampart/pin/report"
)

// noKeepAlive is a client that leaves no idle connection, and so no
// connection goroutine, behind.
func noKeepAlive() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// The sender runs while reports are queued and ends with the queue: a
// Reporter needs no Start, and an idle one holds no goroutine.
func TestReporterIdleHoldsNoGoroutine(t *testing.T) {
	col := newCollector(t)
	f, _ := failure(t, col.URL, time.Time{})
	before := runtime.NumGoroutine()
	r := &report.Reporter{Client: noKeepAlive()}
	for round := 1; round <= 2; round++ {
		for i := range 3 {
			g := *f
			g.Port = 10*round + i // distinct reports
			r.Report(&g)
		}
		flush(t, r)
		if s := r.Stats(); s.Sent != uint64(3*round) {
			t.Fatalf("round %d: stats %+v, want %d sent", round, s, 3*round)
		}
		goroutines.Settle(t, before)
	}
	for i := range 2 {
		if err := r.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	goroutines.Settle(t, before)
}

// Close stops accepting reports; those queued are still sent, and the
// sender ends after them.
func TestReporterCloseSendsQueued(t *testing.T) {
	release := make(chan struct{})
	hold := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hold.Close()
	f, _ := failure(t, hold.URL, time.Time{})
	before := runtime.NumGoroutine()
	r := &report.Reporter{Client: noKeepAlive()}
	for i := range 2 {
		g := *f
		g.Port = i
		r.Report(&g) // one in flight, one queued
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Report(f)
	close(release)
	flush(t, r)
	if s := r.Stats(); s.Sent != 2 || s.Dropped != 1 {
		t.Errorf("stats %+v, want 2 sent and the report after Close dropped", s)
	}
	goroutines.Settle(t, before)
}
