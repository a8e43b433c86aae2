package ctwatch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/controlplane/ctwatch"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// BenchmarkDetectionLatency measures, on loopback, the time from a real
// log's checkpoint covering a rogue certificate (add-chain answers once
// it does) to the webhook's delivery of its alert, with the poll interval
// given: at most one interval plus the work. ms/alert is the figure.
func BenchmarkDetectionLatency(b *testing.B) {
	for _, poll := range []time.Duration{time.Second, 5 * time.Second} {
		b.Run(fmt.Sprintf("poll=%v", poll), func(b *testing.B) {
			good := testpki.NewRoot(b, "Good Root")
			rogue := testpki.NewRoot(b, "Rogue Root")
			k1, k2 := testpki.NewKey(b, testpki.ECDSAP256), testpki.NewKey(b, testpki.ECDSAP256)
			p1, _ := pin.FromPrivateKey(k1)
			p2, _ := pin.FromPrivateKey(k2)
			policy, err := pin.NewPolicy("", pin.Domain{Name: "api.pay.example", Pins: []pin.Pin{p1, p2}})
			if err != nil {
				b.Fatal(err)
			}
			log := ctlog.Start(b, good.Cert, rogue.Cert)
			logs, _ := ct.ParseLogList(log.LogList(b))
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rampart.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			got := make(chan time.Time, 64)
			hook := httptest.NewServer(httpFunc(func() { got <- time.Now() }))
			defer hook.Close()
			w, err := ctwatch.New(context.Background(), ctwatch.Config{Store: db.CT(), Logs: logs, Poll: poll,
				Judge:   func(context.Context) (*ct.Judge, error) { return ct.NewJudge(policy, nil, nil) },
				Webhook: &ctwatch.Webhook{URL: hook.URL, Secret: []byte("0123456789abcdef")}})
			if err != nil {
				b.Fatal(err)
			}
			w.Start(context.Background())
			defer w.Close()
			time.Sleep(poll + 500*time.Millisecond) // the monitor has met the log
			var total time.Duration
			b.ResetTimer()
			for b.Loop() {
				log.Submit(b, rogue, nil, false, "api.pay.example")
				covered := time.Now()
				select {
				case at := <-got:
					total += at.Sub(covered)
				case <-time.After(poll + 30*time.Second):
					b.Fatal("no alert")
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/alert")
		})
	}
}

// httpFunc answers 204 and calls fn for each request.
func httpFunc(fn func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn()
		w.WriteHeader(http.StatusNoContent)
	})
}
