package authz_test

// The differential test against envoyproxy/ratelimit, the service
// Rampart's rate limit service replaces: both read the same files and
// share one Redis, and answer the same gRPC requests.
//
// The peer is built outside Rampart's module (.ci/run does it, into a
// cache directory):
//
//	GOFLAGS= GOBIN=DIR go install github.com/envoyproxy/ratelimit/src/service_cmd@v1.4.1-0.20260122083618-3fb702589d36
//
// and named by RAMPART_TEST_ENVOY_RATELIMIT=DIR/service_cmd; the test
// skips without it, or without RAMPART_TEST_REDIS.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/authz/envoy"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
)

// peer is a running envoyproxy/ratelimit.
type peer struct {
	addr      string
	loadError string // "Error loading new configuration: ..." if any
}

func peerBinary(t *testing.T) (bin string, redisURL *redis.Options) {
	t.Helper()
	bin = os.Getenv("RAMPART_TEST_ENVOY_RATELIMIT")
	if bin == "" {
		t.Skip("RAMPART_TEST_ENVOY_RATELIMIT is not set (the path of envoyproxy/ratelimit's service_cmd; the file's comment says how to build it)")
	}
	u := os.Getenv("RAMPART_TEST_REDIS")
	if u == "" {
		t.Skip("RAMPART_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0)")
	}
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return bin, o
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// startPeer runs envoyproxy/ratelimit with files (name -> content) on
// loopback and waits until it listens.
func startPeer(t testing.TB, bin string, ro *redis.Options, files map[string]string) *peer {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	grpcPort := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"USE_STATSD=false", "LOG_LEVEL=info", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + ro.Addr,
		"HOST=127.0.0.1", "PORT=" + freePort(t), "GRPC_HOST=127.0.0.1", "GRPC_PORT=" + grpcPort,
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + freePort(t),
		"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false", "RUNTIME_IGNOREDOTFILES=true",
	}
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &peer{addr: "127.0.0.1:" + grpcPort}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "Error loading new configuration: "); i >= 0 {
				p.loadError = strings.TrimSuffix(line[i+len("Error loading new configuration: "):], `"`)
			}
			if strings.Contains(line, "Listening for gRPC") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("envoyproxy/ratelimit did not start in 20 s")
	}
	return p
}

func client(t testing.TB, addr string) rlsv3.RateLimitServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return rlsv3.NewRateLimitServiceClient(cc)
}

// startRampart serves the files with Rampart's service, on the same
// Redis under a prefix of the test's, deleted at the end.
func startRampart(t testing.TB, ro *redis.Options, files map[string]string) rlsv3.RateLimitServiceClient {
	t.Helper()
	var cs []*authz.LimitConfig
	for name, content := range files {
		c, err := authz.ParseLimitConfig(name, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	rc := redis.NewClient(ro)
	prefix := "rampart:test:difftest:" + rand.Text()
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rc.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(ctx, keys...)
		}
		rc.Close()
	})
	l, err := authz.NewLimits(authz.LimitsOptions{Store: redisstore.New(rc, redisstore.Options{Prefix: prefix}), Logger: slog.New(slog.DiscardHandler)}, cs...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(envoy.ServerOptions()...)
	envoy.Register(s, nil, envoy.NewRateLimit(l, nil))
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return client(t, ln.Addr().String())
}

// TestLoadLikeEnvoyRatelimit: the files envoyproxy/ratelimit loads,
// Rampart loads, and those it refuses Rampart refuses, with its message.
func TestLoadLikeEnvoyRatelimit(t *testing.T) {
	bin, ro := peerBinary(t)
	for _, c := range authz.LoadCases {
		p := startPeer(t, bin, ro, map[string]string{"f.yaml": c.File})
		_, err := authz.ParseLimitConfig("f.yaml", []byte(c.File))
		switch {
		case p.loadError == "" && err != nil:
			t.Errorf("%s: envoyproxy/ratelimit loads it, Rampart: %v", c.Name, err)
		case p.loadError != "" && err == nil:
			t.Errorf("%s: envoyproxy/ratelimit refuses it (%s), Rampart loads it", c.Name, p.loadError)
		case p.loadError != "" && !strings.Contains(p.loadError, c.Err):
			t.Errorf("%s: envoyproxy/ratelimit says %q, the table %q", c.Name, p.loadError, c.Err)
		}
	}
}

const diffConfig = `
domain: DOMAIN
descriptors:
  - key: client
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: path
    value: /v1/swaps
    rate_limit: {unit: hour, requests_per_unit: 3, name: swaps}
    descriptors:
      - key: client
        rate_limit: {unit: hour, requests_per_unit: 2, name: swaps-per-client, replaces: [{name: swaps}]}
  - key: path
    value: /files*
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: path
    value: /healthz
    rate_limit: {unlimited: true}
  - key: path
    value: /new
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: remote_address
    descriptors:
      - key: path
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: bulk
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: burst
    rate_limit: {unit: second, requests_per_unit: 5}
`

type step struct {
	ds   [][]string // descriptors: key, value, key, value...
	hits uint32     // the request's hits_addend
	dh   []uint64   // per-descriptor hits_addend (0: none)
	n    int        // times
}

func request(domain string, s step) *rlsv3.RateLimitRequest {
	r := &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: s.hits}
	for i, d := range s.ds {
		var es []*commonrl.RateLimitDescriptor_Entry
		for j := 0; j+1 < len(d); j += 2 {
			es = append(es, &commonrl.RateLimitDescriptor_Entry{Key: d[j], Value: d[j+1]})
		}
		rd := &commonrl.RateLimitDescriptor{Entries: es}
		if i < len(s.dh) && s.dh[i] > 0 {
			rd.HitsAddend = wrapperspb.UInt64(s.dh[i])
		}
		r.Descriptors = append(r.Descriptors, rd)
	}
	return r
}

// untilSecondStarts waits until the next second is at most 50 ms old, so
// that a quick sequence stays in one fixed window of a second.
func untilSecondStarts() time.Time {
	now := time.Now()
	next := now.Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(next) + 5*time.Millisecond)
	return next
}

// TestDecideLikeEnvoyRatelimit: every request that is not at a window
// boundary gets the same decision from both, for every descriptor: the
// code, the limit and, on the hourly limits (no refill to speak of), the
// remaining budget.
func TestDecideLikeEnvoyRatelimit(t *testing.T) {
	bin, ro := peerBinary(t)
	domain := "difftest_" + hex.EncodeToString([]byte(rand.Text()[:6]))
	files := map[string]string{"diff.yaml": strings.ReplaceAll(diffConfig, "DOMAIN", domain)}
	theirs := client(t, startPeer(t, bin, ro, files).addr)
	ours := startRampart(t, ro, files)
	ctx := context.Background()
	steps := []step{
		{ds: [][]string{{"client", "a"}}, n: 7},
		{ds: [][]string{{"path", "/v1/swaps"}, {"path", "/v1/swaps", "client", "a"}}, n: 3},
		{ds: [][]string{{"path", "/v1/swaps"}}, n: 4},
		{ds: [][]string{{"path", "/files/a"}}, n: 3},
		{ds: [][]string{{"path", "/files/b"}}, n: 1},
		{ds: [][]string{{"path", "/healthz"}}, n: 3},
		{ds: [][]string{{"path", "/new"}}, n: 3},
		{ds: [][]string{{"nothing", "x"}}, n: 2},
		{ds: [][]string{{"remote_address", "192.0.2.1", "path", "/x"}}, n: 3},
		{ds: [][]string{{"remote_address", "192.0.2.1"}}, n: 2},
		{ds: [][]string{{"client", "a", "x", "y"}}, n: 2},
		{ds: [][]string{{"bulk", "k"}}, hits: 4, n: 4},
		{ds: [][]string{{"bulk", "j"}, {"bulk", "i"}}, dh: []uint64{6, 0}, hits: 2, n: 3},
	}
	compared := 0
	for attempt := 0; attempt < 3; attempt++ {
		start := untilSecondStarts()
		var mismatches []string
		for si, s := range steps {
			for k := range s.n {
				req := request(domain, s)
				a, err := theirs.ShouldRateLimit(ctx, req)
				if err != nil {
					t.Fatalf("step %d: envoyproxy/ratelimit: %v", si, err)
				}
				b, err := ours.ShouldRateLimit(ctx, req)
				if err != nil {
					t.Fatalf("step %d: Rampart: %v", si, err)
				}
				compared++
				if diff := compare(a, b); diff != "" {
					mismatches = append(mismatches, fmt.Sprintf("step %d (%v) request %d: %s", si, s.ds, k+1, diff))
				}
			}
		}
		if time.Since(start) > 900*time.Millisecond {
			// The sequence crossed a second's boundary: the per-second
			// windows differ by design. Start over on new keys.
			domain = "difftest_" + hex.EncodeToString([]byte(rand.Text()[:6]))
			files = map[string]string{"diff.yaml": strings.ReplaceAll(diffConfig, "DOMAIN", domain)}
			theirs = client(t, startPeer(t, bin, ro, files).addr)
			ours = startRampart(t, ro, files)
			compared = 0
			continue
		}
		for _, m := range mismatches {
			t.Error(m)
		}
		if compared < 30 {
			t.Fatalf("only %d requests compared", compared)
		}
		return
	}
	t.Fatal("three attempts crossed a second's boundary: the machine is too slow for this test")
}

func compare(a, b *rlsv3.RateLimitResponse) string {
	if a.GetOverallCode() != b.GetOverallCode() {
		return fmt.Sprintf("overall %v, Rampart %v", a.GetOverallCode(), b.GetOverallCode())
	}
	if len(a.GetStatuses()) != len(b.GetStatuses()) {
		return fmt.Sprintf("%d statuses, Rampart %d", len(a.GetStatuses()), len(b.GetStatuses()))
	}
	for i := range a.GetStatuses() {
		x, y := a.GetStatuses()[i], b.GetStatuses()[i]
		if x.GetCode() != y.GetCode() {
			return fmt.Sprintf("descriptor %d: %v, Rampart %v", i, x.GetCode(), y.GetCode())
		}
		xl, yl := x.GetCurrentLimit(), y.GetCurrentLimit()
		if (xl == nil) != (yl == nil) || xl.GetRequestsPerUnit() != yl.GetRequestsPerUnit() || xl.GetUnit() != yl.GetUnit() || xl.GetName() != yl.GetName() {
			return fmt.Sprintf("descriptor %d: limit %v, Rampart %v", i, xl, yl)
		}
		if xl.GetUnit() == rlsv3.RateLimitResponse_RateLimit_HOUR && x.GetCode() == rlsv3.RateLimitResponse_OK && x.GetLimitRemaining() != y.GetLimitRemaining() {
			return fmt.Sprintf("descriptor %d: %d remaining, Rampart %d", i, x.GetLimitRemaining(), y.GetLimitRemaining())
		}
	}
	return ""
}

// TestWindowBoundary shows what fixed windows do at their boundary: 5
// requests at the end of one second and 5 at the start of the next are
// all admitted by envoyproxy/ratelimit (10 within a fifth of a second,
// for a limit of 5 per second); Rampart admits at most 5 plus what the
// elapsed time refilled (q × (1 + w/unit)).
func TestWindowBoundary(t *testing.T) {
	bin, ro := peerBinary(t)
	domain := "difftest_" + hex.EncodeToString([]byte(rand.Text()[:6]))
	files := map[string]string{"diff.yaml": strings.ReplaceAll(diffConfig, "DOMAIN", domain)}
	theirs := client(t, startPeer(t, bin, ro, files).addr)
	ours := startRampart(t, ro, files)
	ctx := context.Background()
	req := request(domain, step{ds: [][]string{{"burst", "b"}}})
	next := untilSecondStarts().Add(time.Second)
	time.Sleep(time.Until(next.Add(-120 * time.Millisecond)))
	first := time.Now()
	count := func(c rlsv3.RateLimitServiceClient) int {
		n := 0
		for range 5 {
			r, err := c.ShouldRateLimit(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if r.GetOverallCode() == rlsv3.RateLimitResponse_OK {
				n++
			}
		}
		return n
	}
	theirsN, oursN := count(theirs), count(ours)
	time.Sleep(time.Until(next.Add(20 * time.Millisecond)))
	theirsN += count(theirs)
	oursN += count(ours)
	elapsed := time.Since(first)
	if next.Sub(first) < 50*time.Millisecond || elapsed > 400*time.Millisecond {
		t.Skipf("the machine was too slow to place the requests around the boundary (%v)", elapsed)
	}
	bound := 5 + int((5*elapsed+time.Second-1)/time.Second)
	t.Logf("within %v around a window boundary, limit 5/s: envoyproxy/ratelimit admitted %d, Rampart %d (bound %d)", elapsed.Round(time.Millisecond), theirsN, oursN, bound)
	if theirsN != 10 {
		t.Errorf("envoyproxy/ratelimit admitted %d, want 10 (two fixed windows)", theirsN)
	}
	if oursN > bound {
		t.Errorf("Rampart admitted %d within %v, over the bound %d", oursN, elapsed, bound)
	}
}

const benchConfig = `
domain: DOMAIN
descriptors:
  - key: fresh
    rate_limit: {unit: second, requests_per_unit: 1000}
  - key: hot
    rate_limit: {unit: hour, requests_per_unit: 1}
`

// BenchmarkShouldRateLimit compares Rampart's rate limit service with
// envoyproxy/ratelimit on one Redis, over gRPC on loopback, with 64
// concurrent streams on one connection (as Envoy multiplexes them):
// fresh keys (every request a new key) and one hot key over its limit.
//
//	go test -run XXX -bench ShouldRateLimit -count 6 ./authz | benchstat -col /server -
func BenchmarkShouldRateLimit(b *testing.B) {
	bin := os.Getenv("RAMPART_TEST_ENVOY_RATELIMIT")
	u := os.Getenv("RAMPART_TEST_REDIS")
	if bin == "" || u == "" {
		b.Skip("RAMPART_TEST_ENVOY_RATELIMIT and RAMPART_TEST_REDIS are needed")
	}
	ro, err := redis.ParseURL(u)
	if err != nil {
		b.Fatal(err)
	}
	domain := "difftest_" + hex.EncodeToString([]byte(rand.Text()[:6]))
	files := map[string]string{"bench.yaml": strings.ReplaceAll(benchConfig, "DOMAIN", domain)}
	servers := map[string]rlsv3.RateLimitServiceClient{
		"envoy-ratelimit": client(b, startPeer(b, bin, ro, files).addr),
		"rampart":         startRampart(b, ro, files),
	}
	for _, kind := range []string{"fresh", "overlimit"} {
		for _, name := range []string{"envoy-ratelimit", "rampart"} {
			c := servers[name]
			b.Run("server="+name+"/keys="+kind, func(b *testing.B) {
				ctx := context.Background()
				var n atomic.Int64
				run := rand.Text()[:8]
				if kind == "overlimit" {
					c.ShouldRateLimit(ctx, request(domain, step{ds: [][]string{{"hot", run}}}))
				}
				b.SetParallelism(32) // 64 streams on this machine's 2 CPUs
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						value := run
						if kind == "fresh" {
							value = run + strconv.FormatInt(n.Add(1), 10)
						}
						key := map[string]string{"fresh": "fresh", "overlimit": "hot"}[kind]
						resp, err := c.ShouldRateLimit(ctx, request(domain, step{ds: [][]string{{key, value}}}))
						if err != nil {
							b.Error(err)
							return
						}
						if want := map[string]rlsv3.RateLimitResponse_Code{"fresh": rlsv3.RateLimitResponse_OK, "overlimit": rlsv3.RateLimitResponse_OVER_LIMIT}[kind]; resp.GetOverallCode() != want {
							b.Errorf("%s %s: %v, want %v", name, kind, resp.GetOverallCode(), want)
							return
						}
					}
				})
			})
		}
	}
}
