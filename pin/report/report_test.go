package report_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

type collector struct {
	*httptest.Server
	status  atomic.Int32
	mu      sync.Mutex
	reports []map[string]any
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.status.Store(http.StatusNoContent)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("collector: %v", err)
		}
		c.mu.Lock()
		c.reports = append(c.reports, m)
		c.mu.Unlock()
		w.WriteHeader(int(c.status.Load()))
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reports)
}

func failure(t *testing.T, uri string, expires time.Time) (*pin.Failure, *testpki.Leaf) {
	t.Helper()
	ca := testpki.NewRoot(t, "Root")
	leaf := ca.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.example.test"}})
	p, err := pin.NewPolicy("", pin.Domain{
		Name: "example.test", IncludeSubdomains: true, Expires: expires, ReportURI: uri,
		Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.Fingerprint(leaf.Cert)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &pin.Failure{
		Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("", 3600)), Host: "api.example.test", Port: 8443,
		Domain: p.Match("api.example.test"), Reason: pin.ReasonMismatch,
		Served: leaf.Chain, Chains: [][]*x509.Certificate{append(leaf.Chain, ca.Cert)},
	}, leaf
}

func flush(t *testing.T, r *report.Reporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// RFC 7469 §3: the report's members and their types.
func TestNew(t *testing.T) {
	f, leaf := failure(t, "https://r.test/", time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC))
	b, err := json.Marshal(report.New(f))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	want := map[string]any{
		"date-time":                 "2026-11-25T09:00:00Z",
		"hostname":                  "api.example.test",
		"port":                      8443.0,
		"effective-expiration-date": "2027-07-01T00:00:00Z", // the end of the inclusive expiry day
		"include-subdomains":        true,
		"noted-hostname":            "example.test",
		"known-pins":                []any{`pin-sha256="` + pin.FromSPKI([]byte("a")).Base64() + `"`},
		"rampart-known-cert-pins":   []any{pin.Fingerprint(leaf.Cert).String()},
		"rampart-mode":              "enforce",
		"rampart-reason":            "pin-mismatch",
	}
	for k, w := range want {
		gb, _ := json.Marshal(m[k])
		wb, _ := json.Marshal(w)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s", k, gb, wb)
		}
	}
	if n := len(m["served-certificate-chain"].([]any)); n != 1 {
		t.Errorf("served chain has %d certs, want 1", n)
	}
	if n := len(m["validated-certificate-chain"].([]any)); n != 2 {
		t.Errorf("validated chain has %d certs, want 2", n)
	}

	f.Chains = nil
	f.Domain = &pin.Domain{Name: "x.test", Mode: pin.ReportOnly, Pins: f.Domain.Pins}
	b, _ = json.Marshal(report.New(f))
	m = nil
	json.Unmarshal(b, &m)
	if v, ok := m["effective-expiration-date"]; !ok || v != nil {
		t.Errorf("effective-expiration-date = %v (present %v), want null for a pin set without expiry", v, ok)
	}
	if v, ok := m["validated-certificate-chain"].([]any); !ok || len(v) != 0 {
		t.Errorf("validated-certificate-chain = %v, want [] when there is no verified chain", m["validated-certificate-chain"])
	}
}

func TestDeduplication(t *testing.T) {
	col := newCollector(t)
	f, _ := failure(t, col.URL, time.Time{})
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	r := &report.Reporter{Now: func() time.Time { return now }}
	defer r.Close()

	r.Report(f)
	r.Report(f)
	flush(t, r)
	if col.count() != 1 {
		t.Fatalf("two identical failures sent %d reports, want 1", col.count())
	}
	g := *f
	g.Port = 443
	r.Report(&g)
	flush(t, r)
	if col.count() != 2 {
		t.Fatalf("a failure on another port was deduplicated")
	}
	now = now.Add(23 * time.Hour)
	r.Report(f)
	flush(t, r)
	if col.count() != 2 {
		t.Fatalf("an identical failure 23 hours later was sent again")
	}
	now = now.Add(time.Hour)
	r.Report(f)
	flush(t, r)
	if col.count() != 3 {
		t.Fatalf("an identical failure 24 hours later was not sent")
	}
	if s := r.Stats(); s.Sent != 3 || s.Duplicates != 2 {
		t.Errorf("stats = %+v", s)
	}
}

// The Reporter deduplicates per pin.Failure.Key and report URI: the same
// failure reported to two collectors reaches both, once each.
func TestDeduplicationPerReportURI(t *testing.T) {
	col, col2 := newCollector(t), newCollector(t)
	f, _ := failure(t, col.URL, time.Time{})
	d := *f.Domain
	d.ReportURI = col2.URL + "/other"
	g := *f
	g.Domain = &d
	if f.Key() != g.Key() {
		t.Fatal("the report URI changed the failure's key")
	}
	r := &report.Reporter{}
	defer r.Close()
	for range 2 {
		r.Report(f)
		r.Report(&g)
	}
	flush(t, r)
	if col.count() != 1 || col2.count() != 1 {
		t.Errorf("%d and %d reports, want one at each collector", col.count(), col2.count())
	}
}

// A failed delivery is counted, logged, and does not suppress the next
// identical report.
func TestFailedDeliveryRetriedNextTime(t *testing.T) {
	col := newCollector(t)
	col.status.Store(http.StatusInternalServerError)
	f, _ := failure(t, col.URL, time.Time{})
	r := &report.Reporter{}
	defer r.Close()
	r.Report(f)
	flush(t, r)
	col.status.Store(http.StatusOK)
	r.Report(f)
	flush(t, r)
	if s := r.Stats(); s.Failed != 1 || s.Sent != 1 || col.count() != 2 {
		t.Errorf("stats = %+v, collector saw %d, want one failure then one success", s, col.count())
	}
}

// Report never blocks, even when the collector hangs and the queue is full.
func TestReportNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-release
	}))
	defer hang.Close()
	defer close(release)
	f, _ := failure(t, hang.URL, time.Time{})
	r := &report.Reporter{QueueSize: 2}
	defer r.Close()

	start := time.Now()
	for i := range 100 {
		g := *f
		g.Port = i // all distinct
		r.Report(&g)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 Report calls took %v with a hung collector", d)
	}
	// One in flight, two queued, the rest dropped.
	if s := r.Stats(); s.Dropped < 97 {
		t.Errorf("stats = %+v, want at least 97 dropped", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with a hung collector = %v, want the context's deadline error", err)
	}
}

func TestNoURIAndClose(t *testing.T) {
	f, _ := failure(t, "", time.Time{})
	r := &report.Reporter{}
	r.Report(f)
	if s := r.Stats(); s.NoURI != 1 {
		t.Errorf("stats = %+v, want NoURI 1", s)
	}
	col := newCollector(t)
	f2, _ := failure(t, col.URL, time.Time{})
	r.Close()
	r.Report(f2)
	if s := r.Stats(); s.Dropped != 1 {
		t.Errorf("report after Close: stats = %+v, want Dropped 1", s)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A collector's redirect is not followed: it could send the report over
// plain http or to the pinned host, past the policy's checks on its
// report URI.
func TestRedirectsNotFollowed(t *testing.T) {
	col := newCollector(t)
	redirect := httptest.NewServer(http.RedirectHandler(col.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	f, _ := failure(t, redirect.URL, time.Time{})
	for _, c := range []*http.Client{nil, {}} {
		r := &report.Reporter{Client: c}
		r.Report(f)
		flush(t, r)
		r.Close()
		if s := r.Stats(); s.Failed != 1 || col.count() != 0 {
			t.Errorf("client %v: stats %+v, collector saw %d; want the redirect refused", c, s, col.count())
		}
	}
}
