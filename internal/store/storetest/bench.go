package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
)

// BatchSize is the size of the batches [BenchmarkAddReports] stores: about
// what the control plane's collector hands to AddReports under load.
const BatchSize = 256

// BenchmarkAddReports measures ingestion into s, which should be empty,
// in batches of [BatchSize], and reports the rate as reports/s.
//
// The batches are a pessimistic mix for a store: nearly every report of
// a batch is a different failure (a real batch repeats a few), one in
// eight never seen before, with 1.5 KB bodies.
func BenchmarkAddReports(b *testing.B, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	body := make([]byte, 1500)
	rs := make([]store.Report, BatchSize)
	n := 0
	for b.Loop() {
		for i := range rs {
			seq := n*BatchSize + i
			id := seq % 500
			if i%8 == 0 {
				id = seq + 500
			}
			rs[i] = store.Report{
				Received:  t0.Add(time.Duration(seq) * time.Millisecond),
				Source:    fmt.Sprintf("198.51.100.%d", i%250),
				UserAgent: "okhttp/4.12.0",
				Device:    fmt.Sprintf("device-%d", i%97),
				Content: store.ReportContent{
					Digest:        fmt.Sprintf("%064x", id),
					Format:        "rfc7469",
					Hostname:      "api.example.com",
					Port:          443,
					NotedHostname: "example.com",
					Mode:          "enforce",
					Reason:        "pin-mismatch",
					ServedPin:     fmt.Sprintf("sha256/%043d=", id%20),
					AppVersion:    "1.2.3",
					AppPlatform:   "android",
					Body:          body,
				},
			}
		}
		if err := s.Reports().AddReports(ctx, rs); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*BatchSize)/b.Elapsed().Seconds(), "reports/s")
}
