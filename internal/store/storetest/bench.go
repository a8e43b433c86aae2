package storetest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
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

// LookupKeys is how many keys [BenchmarkKeyByHash] stores before it
// looks them up.
const LookupKeys = 10_000

// BenchmarkKeyByHash measures KeyByHash, what every request authenticated
// by an API key costs when the verifier's cache misses, in s, which
// should be empty, holding [LookupKeys] keys of 100 clients. It looks up
// every key in turn, and reports ns/op.
func BenchmarkKeyByHash(b *testing.B, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	pepper := []byte("benchmark pepper")
	hashes := make([][]byte, LookupKeys)
	for i := range 100 {
		c := &apikey.Client{ID: fmt.Sprint("client-", i), Scopes: []string{"payment.read", "payment.write"}, CreatedAt: t0}
		if err := s.APIKeys().CreateClient(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	for i := range hashes {
		m := hmac.New(sha256.New, pepper)
		fmt.Fprintf(m, "rk_live_%043d", i)
		hashes[i] = m.Sum(nil)
		if err := s.APIKeys().CreateKey(ctx, &apikey.Record{
			ID:        fmt.Sprint("key-", i),
			ClientID:  fmt.Sprint("client-", i%100),
			Hash:      hashes[i],
			Hint:      "rk_live_" + fmt.Sprintf("%04d", i%10000) + "…",
			Scopes:    []string{"payment.read"},
			CreatedAt: t0.Add(time.Duration(i) * time.Second),
			ExpiresAt: t0.Add(90 * 24 * time.Hour),
		}); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	for b.Loop() {
		r, err := s.APIKeys().KeyByHash(ctx, hashes[n%LookupKeys])
		if err != nil {
			b.Fatal(err)
		}
		if r.ID != fmt.Sprint("key-", n%LookupKeys) {
			b.Fatalf("KeyByHash found %s, want key-%d", r.ID, n%LookupKeys)
		}
		n++
	}
}
