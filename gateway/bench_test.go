package gateway

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/rampartsec/rampart/ratelimit"
)

// BenchmarkProxy measures what the gateway's controls cost on top of
// net/http/httputil.ReverseProxy, in process (no TLS at the front, so
// that only the proxy path is measured): "bare" is a ReverseProxy with
// the same transport settings and nothing else; "gateway" authenticates
// an API key, applies two edge rate limits and CORS on every request.
// Both proxy to the same loopback upstream.
//
//	go test -run '^$' -bench Proxy -benchmem -count 6 ./gateway | tee /tmp/proxy.txt
//	benchstat -col /proxy /tmp/proxy.txt
func BenchmarkProxy(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"payments":[]}`+"\n")
	}))
	defer upstream.Close()
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0)

	ks := newKeyStore(b)
	key := ks.key(b, "shop")
	g, err := New(Options{
		Routes: []Route{{Prefix: "/", Upstream: mustURL(upstream.URL)}},
		CORS:   &CORS{AllowedOrigins: []string{"https://app.payments.example"}, AllowedHeaders: []string{"X-API-Key", "Content-Type"}},
		Limits: []ratelimit.Rule{
			rule("per-address", 1000000000, time.Second, byAddr),
			rule("per-client", 1000000000, time.Second, byClient),
		},
		APIKeys:   ks.v,
		Logger:    discardLog,
		AccessLog: discardLog,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()

	bare := httputil.NewSingleHostReverseProxy(mustURL(upstream.URL))
	bare.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}
	bare.ErrorLog = log.New(io.Discard, "", 0)

	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"proxy=bare", bare},
		{"proxy=gateway", g.Handler()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, "/v1/payments", nil)
					req.Header.Set("X-API-Key", key)
					req.Header.Set("Origin", "https://app.payments.example")
					w := httptest.NewRecorder()
					bc.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
