package authz_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/ratelimit"
)

// benchService is the service of bench/edge.sh: an API key on every
// request (on a real SQLite file, cached by the verifier), two edge
// limits that never refuse, CORS.
func benchService(b *testing.B) (*authz.Service, string) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rampart.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	m := &apikey.Manager{Store: st.APIKeys(), Pepper: pepper}
	v := &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper, Logger: slog.New(slog.DiscardHandler)}
	b.Cleanup(func() { v.Close() })
	if _, err := m.CreateClient(context.Background(), apikey.Client{ID: "bench", Scopes: []string{"payment.read"}}); err != nil {
		b.Fatal(err)
	}
	k, _, err := m.Create(context.Background(), "bench", nil, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), Gateway: gateway.Options{
		Routes: []gateway.Route{{Prefix: "/"}},
		CORS:   &gateway.CORS{AllowedOrigins: []string{"https://app.payments.example"}, AllowedHeaders: []string{"X-API-Key"}},
		Limits: []ratelimit.Rule{
			{Name: "per-address", Limit: ratelimit.PerSecond(1_000_000, 1_000_000), By: []ratelimit.By{ratelimit.ByAddr}},
			{Name: "per-client", Limit: ratelimit.PerSecond(1_000_000, 1_000_000), By: []ratelimit.By{ratelimit.ByClient}},
		},
		APIKeys: v,
	}})
	if err != nil {
		b.Fatal(err)
	}
	return svc, k.String()
}

// BenchmarkCheck is one decision in process: an API key (cached), the
// limits, CORS, as Envoy's ext_authz asks it.
func BenchmarkCheck(b *testing.B) {
	svc, key := benchService(b)
	req := &authz.Request{Method: "GET", Target: "/v1/payments", Host: "api.payments.example", Proto: "HTTP/2",
		Client: netip.MustParseAddr("192.0.2.7"),
		Header: http.Header{"X-Api-Key": {key}, "Origin": {"https://app.payments.example"}, "User-Agent": {"bench"}, "Accept": {"*/*"}}}
	ctx := context.Background()
	if res, err := svc.Check(ctx, req); err != nil || !res.Allowed {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := svc.Check(ctx, req)
		if err != nil || !res.Allowed {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardAuth is one nginx auth_request subrequest, through the
// handler (no network).
func BenchmarkForwardAuth(b *testing.B) {
	svc, key := benchService(b)
	h := svc.ForwardAuth(authz.ForwardOptions{})
	r := httptest.NewRequest("GET", "/nginx", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header = http.Header{"X-Api-Key": {key}, "Origin": {"https://app.payments.example"}, "User-Agent": {"bench"}, "Accept": {"*/*"},
		"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/payments"}, "X-Original-Host": {"api.payments.example"}, "X-Real-Ip": {"192.0.2.7"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
