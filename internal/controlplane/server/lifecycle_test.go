package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/goroutines"
	"github.com/rampartsec/rampart/pin"
)

// New starts nothing; Start starts the committer and the pruning, Close
// stops both and may be called twice; Start twice, or after Close, is an
// error.
func TestStartAndClose(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rogue, _ := rogueLeaves(t)
	ctx := context.Background()

	before := runtime.NumGoroutine()
	s, err := New(Config{Store: st, AdminToken: testToken, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := runtime.NumGoroutine(); n != before {
		t.Errorf("New started %d goroutines", n-before)
	}
	post := func() int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/reports", bytes.NewReader(rfc7469(t, "api.payments.test", pin.Enforce, rogue, time.Now())))
		r.Header.Set("Content-Type", "application/json")
		s.ServeHTTP(w, r)
		return w.Code
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Errorf("report before Start: %d, want 503", code)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start: no error")
	}
	if code := post(); code != http.StatusNoContent {
		t.Errorf("report after Start: %d, want 204", code)
	}
	for i := range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	goroutines.Settle(t, before)
	if err := s.Start(ctx); err == nil {
		t.Error("Start after Close: no error")
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Errorf("report after Close: %d, want 503", code)
	}
	if n, err := st.Reports().Total(ctx, store.ReportFilter{}); err != nil || n != 1 {
		t.Errorf("%d reports stored (%v), want the one sent between Start and Close", n, err)
	}
}

// A Server that is never started closes, twice, without waiting.
func TestCloseWithoutStart(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Config{Store: st, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
}
