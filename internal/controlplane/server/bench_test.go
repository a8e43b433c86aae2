package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// BenchmarkReportIngest measures reports accepted per second through HTTP
// into SQLite (synchronous=FULL), with group commit: 128 concurrent
// clients on keep-alive connections, each report acknowledged only once
// committed. In a failure flood most reports repeat a failure already
// seen (aggregated); "new" is the share that opens a new group, storing
// a new 3 KB body. At the end, every acknowledged report must be stored.
//
//	go test -run '^$' -bench ReportIngest -count 10 ./internal/controlplane/server
func BenchmarkReportIngest(b *testing.B) {
	for _, every := range []int64{20, 2} {
		b.Run(fmt.Sprintf("new=%d%%", 100/every), func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.ReportLimit.Rate = -1 })
			rogue, _ := rogueLeaves(b)
			tmpl := rfc7469(b, "HOST", pin.Enforce, rogue, e.clock.Now())
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			var seq, acked atomic.Int64
			b.SetParallelism(64) // 128 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					host := fmt.Sprintf("h%d.payments.test", n%64)
					if n%every == 0 {
						host = fmt.Sprintf("n%d.payments.test", n)
					}
					resp, err := client.Post(e.http.URL+"/v1/reports", "application/json", bytes.NewReader(bytes.ReplaceAll(tmpl, []byte("HOST"), []byte(host))))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					acked.Add(1)
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(acked.Load())/b.Elapsed().Seconds(), "reports/s")
			total, err := e.store.Reports().Total(context.Background(), store.ReportFilter{})
			if err != nil || total != acked.Load() {
				b.Fatalf("%d acknowledged, %d stored (%v)", acked.Load(), total, err)
			}
		})
	}
}

// BenchmarkBundleGet measures bundle requests per second with a warm
// cache: 64 concurrent clients, half of them revalidating with
// If-None-Match (304), as clients polling every few minutes do.
//
//	go test -run '^$' -bench BundleGet -count 10 ./internal/controlplane/server
func BenchmarkBundleGet(b *testing.B) {
	key, keys := bundleKey(b)
	e := newEnv(b, func(c *Config) { c.BundleKeys = keys })
	jws := signBundle(b, key, "mobile", 1, e.clock.Now())
	if code, body := e.admin(b, "POST", "/v1/admin/bundles", []byte(jws)); code != http.StatusCreated {
		b.Fatalf("publish: %d %s", code, body)
	}
	_, h, _ := e.do(b, "GET", "/v1/bundles/mobile", nil)
	etag := h.Get("ETag")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var seq atomic.Int64
	b.SetParallelism(32) // 64 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", e.http.URL+"/v1/bundles/mobile", nil)
			want := http.StatusOK
			if seq.Add(1)%2 == 0 {
				req.Header.Set("If-None-Match", etag)
				want = http.StatusNotModified
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Errorf("status %d, want %d", resp.StatusCode, want)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
