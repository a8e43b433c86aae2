package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/ratelimit"
)

// An HTTP/1.1 client that half-closes its connection after the request
// (the server sees EOF and cancels the request's context) still reads the
// answer: it must be the truth, 204 after the commit, never an implicit
// 200 before it.
func TestHalfClosedClientGetsTheTruth(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	body := rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now())
	c, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("half-closed client got %s, want 204 No Content", resp.Status)
	}
	if n, _ := e.store.Reports().Total(context.Background(), store.ReportFilter{}); n != 1 {
		t.Errorf("%d reports stored after a 204, want 1", n)
	}
}

// failingStore refuses every batch holding a report of one digest, as a
// database refuses a value it cannot store.
type failingStore struct {
	store.Store
	poison string
}

type failingReports struct {
	store.ReportStore
	poison string
}

func (f failingStore) Reports() store.ReportStore { return failingReports{f.Store.Reports(), f.poison} }

func (f failingReports) AddReports(ctx context.Context, rs []store.Report) error {
	for _, r := range rs {
		if strings.Contains(r.Content.Hostname, f.poison) {
			return errors.New("database: invalid byte sequence")
		}
	}
	return f.ReportStore.AddReports(ctx, rs)
}

// One report the database refuses fails alone, not with the batch it
// was committed in.
func TestOneBadReportFailsAlone(t *testing.T) {
	e := newEnv(t, nil)
	fs := failingStore{Store: e.store, poison: "poison"}
	s, err := New(Config{Store: fs, AdminToken: testToken, ReportLimit: ratelimit.Limit{Rate: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer func() { hs.Close(); s.Close(context.Background()) }()
	env := &testEnv{srv: s, http: hs, store: e.store, clock: e.clock}
	rogue, _ := rogueLeaves(t)
	var wg sync.WaitGroup
	codes := make([]int, 64)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := fmt.Sprintf("h%d.payments.test", i)
			if i == 7 {
				host = "poison.payments.test"
			}
			codes[i], _, _ = env.postReport(t, rfc7469(t, host, pin.Enforce, rogue, e.clock.Now()))
		}()
	}
	wg.Wait()
	for i, c := range codes {
		want := http.StatusNoContent
		if i == 7 {
			want = http.StatusServiceUnavailable
		}
		if c != want {
			t.Errorf("report %d: %d, want %d", i, c, want)
		}
	}
	if n, _ := e.store.Reports().Total(context.Background(), store.ReportFilter{}); n != 63 {
		t.Errorf("%d reports stored, want the 63 good ones", n)
	}
}

// Control characters are refused in report fields and cleaned from the
// User-Agent; time fields must be times.
func TestReportTextIsClean(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	tk := trustKit(t, "api.payments.test", "1.0", "dev", true, rogue)
	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"NUL in app-bundle-id", bytes.Replace(tk, []byte(`"com.example.wallet"`), []byte(`"com.x\u0000evil"`), 1), "app-bundle-id has a control character"},
		{"line break in app-version", bytes.Replace(tk, []byte(`"app-version":"1.0"`), []byte(`"app-version":"1.0\nforged log line"`), 1), "app-version has a control character"},
		{"huge expiration date", bytes.Replace(rfc7469(t, "a.test", pin.Enforce, rogue, e.clock.Now()), []byte(`"effective-expiration-date":null`), []byte(`"effective-expiration-date":"`+strings.Repeat("9", 60000)+`"`), 1), "effective-expiration-date"},
		{"expiration date not a date", bytes.Replace(tk, []byte(`"known-pins-expiration-date":null`), []byte(`"known-pins-expiration-date":"soon"`), 1), "known-pins-expiration-date"},
	} {
		code, _, body := e.postReport(t, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), tc.msg) {
			t.Errorf("%s: %d %s, want 400 containing %q", tc.name, code, body, tc.msg)
		}
	}
	code, _, body := e.postReport(t, tk, "User-Agent", "app/1.0 \xff\xfe")
	wantStatus(t, "bad User-Agent", code, http.StatusNoContent, body)
	tallies, _ := e.store.Reports().Count(context.Background(), store.ReportFilter{}, store.ByApp)
	if len(tallies) != 1 || tallies[0].Reports != 1 {
		t.Fatalf("stored: %+v", tallies)
	}
}

// A large report costs more of its sender's budget than a usual one.
func TestLargeReportsCostMore(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReportLimit = ratelimit.PerSecond(1, 3) })
	rogue, _ := rogueLeaves(t)
	big := bytes.Replace(rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()),
		[]byte(`"rampart-reason":"pin-mismatch"`), []byte(`"rampart-reason":"pin-mismatch","padding":"`+strings.Repeat("x", 40<<10)+`"`), 1)
	code, _, body := e.postReport(t, big)
	wantStatus(t, "first 40 KiB report (1 + 2 of a burst of 3)", code, http.StatusNoContent, body)
	code, _, body = e.postReport(t, big)
	wantStatus(t, "second one", code, http.StatusTooManyRequests, body)
}
