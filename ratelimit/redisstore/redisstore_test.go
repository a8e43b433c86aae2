package redisstore

import (
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update

	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/ratelimit"
)

// testOptions returns the options of the Redis named by RAMPART_TEST_REDIS
// (redis://127.0.0.1:6379/0), or skips the test.
func testOptions(tb testing.TB) *redis.Options {
	tb.Helper()
	url := os.Getenv("RAMPART_TEST_REDIS")
	if url == "" {
		tb.Skip("RAMPART_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0)")
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("RAMPART_TEST_REDIS: %v", err)
	}
	o.MaxRetries = -1
	return o
}

// testClient returns a client of the test Redis, closed at the end of the
// test.
func testClient(tb testing.TB) *redis.Client {
	tb.Helper()
	return newClient(tb, testOptions(tb))
}

func newClient(tb testing.TB, o *redis.Options) *redis.Client {
	tb.Helper()
	c := redis.NewClient(o)
	if err := c.Ping(context.Background()).Err(); err != nil {
		c.Close()
		tb.Fatalf("redis at %s: %v", o.Addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix of its own for the test and deletes its
// keys at the end.
func testPrefix(tb testing.TB, c *redis.Client) string {
	tb.Helper()
	prefix := "rampart:test:" + randomHex(tb)
	tb.Cleanup(func() { deleteKeys(tb, c, prefix+":*") })
	return prefix
}

func randomHex(tb testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func deleteKeys(tb testing.TB, c *redis.Client, pattern string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Errorf("scan %s: %v", pattern, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := c.Del(ctx, keys[:n]...).Err(); err != nil {
			tb.Errorf("del: %v", err)
		}
		keys = keys[n:]
	}
}

// redisTime is Redis's clock, the one decisions use.
func redisTime(tb testing.TB, c *redis.Client) time.Time {
	tb.Helper()
	t, err := c.Time(context.Background()).Result()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// counter is a go-redis hook that counts the scripts run.
type counter struct{ scripts atomic.Int64 }

// countScripts loads the script into c's Redis, so that a test's first
// decision is not also the first this Redis sees (NOSCRIPT, then the
// script again), and counts the scripts c runs from then on.
func countScripts(tb testing.TB, c *redis.Client) *counter {
	tb.Helper()
	if err := gcra.Load(context.Background(), c).Err(); err != nil {
		tb.Fatal(err)
	}
	h := new(counter)
	c.AddHook(h)
	return h
}

func (h *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if name := cmd.Name(); name == "evalsha" || name == "eval" {
				h.scripts.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}
func (h *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			h.scripts.Add(1)
		}
		return next(ctx, cmd)
	}
}

// fakeClock is an injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func within(a, b, tol time.Duration) bool { return a-b <= tol && b-a <= tol }

// TestMatchesMemory runs one schedule of (time, n) on Redis and on
// ratelimit.Memory with an injected clock set to the times the Redis
// decisions were made, as seen from here. Redis's clock cannot be
// injected, so the times are real and the durations compared within 1 ms
// or the round trip, whichever is longer;
// the schedule keeps every decision at least 50 ms from a boundary where
// Allowed or Remaining would change.
func TestMatchesMemory(t *testing.T) {
	c := testClient(t)
	const (
		ms  = time.Millisecond
		day = 24 * time.Hour
	)
	type step = memoryStep
	for _, tc := range []struct {
		name  string
		l     ratelimit.Limit
		steps []step
	}{
		{"seconds", ratelimit.PerSecond(10, 5), []step{ // 100 ms per event, 500 ms of tolerance
			{0, 1, true, 4},
			{0, 1, true, 3},
			{0, 1, true, 2},
			{0, 1, true, 1},
			{0, 1, true, 0},         // the burst, at once
			{0, 1, false, 0},        // retry after 100 ms
			{0, 0, true, 0},         // n=0 asks without counting
			{0, 6, false, 0},        // more than the burst is never admitted
			{150 * ms, 1, true, 0},  // one event per 100 ms after the burst
			{150 * ms, 1, false, 0}, // retry after 50 ms
			{450 * ms, 2, true, 1},
			{450 * ms, 2, false, 1}, // denied with one left: n counts
			{1400 * ms, 3, true, 2}, // the budget is whole again
		}},
		// Durations past 2^53 ns (104 days), where a Lua double would
		// round nanoseconds.
		{"long periods", ratelimit.Limit{Rate: 1, Period: 200*day + 1, Burst: 3}, []step{
			{0, 1, true, 2},
			{0, 1, true, 1},
			{0, 1, true, 0},
			{0, 1, false, 0},
			{0, 2, false, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The schedule is real time (Redis decides on its own clock):
			// a loaded machine may wake a step late, and the memory
			// store is then asked at that later time too, so Redis and
			// memory are compared in every attempt. Only the schedule's
			// own expectations need the steps on time: an attempt with a
			// late step is run again, at most a few times.
			for attempt := 1; ; attempt++ {
				why := matchMemory(t, c, tc.l, tc.steps, attempt == 8)
				if why == "" {
					return
				}
				t.Logf("attempt %d: %s; again", attempt, why)
			}
		})
	}
}

type memoryStep struct {
	at time.Duration
	n  int
	// allowed and remaining as ratelimit's GCRA has them, for the
	// reader; the test compares with Memory.
	allowed   bool
	remaining int
}

// matchMemory runs steps against Redis and Memory and reports why the
// attempt must be run again: a step ran late, or a round trip took so long
// that when Redis decided is known only to more than the schedule's 50 ms
// margin from a boundary. Then nothing is reported, unless last says this
// is the last attempt; otherwise every difference is an error.
func matchMemory(t *testing.T, c *redis.Client, l ratelimit.Limit, steps []memoryStep, last bool) (retry string) {
	t.Helper()
	s := New(c, Options{Prefix: testPrefix(t, c), DenyCacheSize: -1})
	clock := newFakeClock()
	m := &ratelimit.Memory{Now: clock.Now}
	base := clock.Now()
	ctx := context.Background()
	// A connection and the script ready, so that the first
	// decision's round trip is not also a dial and a NOSCRIPT.
	if err := gcra.Load(ctx, c).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var origin, originRTT time.Duration // the first decision's time, from start, and its round trip
	type expectation struct {
		i    int
		st   memoryStep
		want ratelimit.Decision
	}
	var expected []expectation
	var errs []string
	late, slow := false, false
	for i, st := range steps {
		time.Sleep(time.Until(start.Add(st.at)))
		before := time.Since(start)
		got, err := s.AllowN(ctx, "k", l, st.n)
		after := time.Since(start)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		late = late || before > st.at+40*time.Millisecond
		mid := (before + after) / 2
		if i == 0 {
			origin, originRTT = mid, after-before
		}
		// The decision's time and the origin's are each known to half
		// their round trip.
		slow = slow || (after-before)/2+originRTT/2 > 25*time.Millisecond
		clock.Set(base.Add(mid - origin))
		want, _ := m.AllowN(ctx, "k", l, st.n)
		// When Redis decided within a round trip is unknown: on a
		// loaded machine, the midpoint can be half of it off, for
		// this decision and for the first, which the memory
		// clock counts from.
		tol := max(time.Millisecond, after-before) + originRTT
		if got.Allowed != want.Allowed || got.Remaining != want.Remaining ||
			!within(got.RetryAfter, want.RetryAfter, tol) ||
			!within(got.ResetAfter, want.ResetAfter, tol) ||
			got.Limit != want.Limit {
			errs = append(errs, fmt.Sprintf("step %d (%v, n=%d, round trip %v):\nredis  %+v\nmemory %+v", i, st.at, st.n, after-before, got, want))
		}
		if i == 0 && got != want {
			// A new key's decision does not depend on the time:
			// it must be exact, to the nanosecond.
			t.Errorf("first decision: redis %+v, memory %+v", got, want)
		}
		expected = append(expected, expectation{i, st, want})
	}
	switch {
	case last:
	case late:
		return "a step woke more than 40 ms late"
	case slow && len(errs) > 0:
		return fmt.Sprintf("this round trip and the first one took over 50 ms together (%d differences not counted)", len(errs))
	}
	for _, e := range errs {
		t.Error(e)
	}
	for _, e := range expected {
		if e.want.Allowed != e.st.allowed || e.want.Remaining != e.st.remaining {
			t.Errorf("step %d: memory %+v, the schedule expects allowed=%v remaining=%d", e.i, e.want, e.st.allowed, e.st.remaining)
		}
	}
	return ""
}

// hammer runs goroutines deciding for one key as fast as they can for
// about d, spread over stores, and returns how many events were admitted
// and the elapsed time on Redis's clock, from before the first decision
// to after the last. slack bounds what elapsed holds beyond the first and
// the last decision; see checkAccuracy.
func hammer(t *testing.T, c *redis.Client, stores []*Store, key string, l ratelimit.Limit, goroutines int, d time.Duration) (admitted int64, elapsed, slack time.Duration) {
	t.Helper()
	ctx := context.Background()
	// Connections are dialled before the clock starts.
	var warm sync.WaitGroup
	for g := range goroutines {
		warm.Go(func() { stores[g%len(stores)].c.Ping(ctx) })
	}
	warm.Wait()

	var (
		wg        sync.WaitGroup
		count     atomic.Int64
		errs      atomic.Int64
		firstDone atomic.Int64 // when the first decision returned, ns since begin
	)
	firstDone.Store(math.MaxInt64)
	var start time.Time // written before go0 is closed, read after
	go0 := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			s := stores[g%len(stores)]
			<-go0
			for first := true; ; first = false {
				if time.Since(start) >= d {
					return
				}
				dec, err := s.AllowN(ctx, key, l, 1)
				if first {
					for v, old := int64(time.Since(start)), firstDone.Load(); v < old && !firstDone.CompareAndSwap(old, v); old = firstDone.Load() {
					}
				}
				if err != nil {
					errs.Add(1)
					return
				}
				if dec.Allowed {
					count.Add(1)
				}
			}
		})
	}
	start = time.Now()
	t0 := redisTime(t, c)
	close(go0)
	wg.Wait()
	if n := errs.Load(); n > 0 {
		t.Fatalf("%d errors", n)
	}
	// With the deny cache, the goroutines may all have stopped while
	// waiting for a cached retry-after, leaving an event unclaimed: a
	// last look at Redis, without the cache, claims what is admissible.
	direct := New(stores[0].c, Options{Prefix: strings.TrimSuffix(stores[0].prefix, ":"), DenyCacheSize: -1})
	lastSent := time.Now()
	for {
		dec, err := direct.AllowN(ctx, key, l, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !dec.Allowed {
			break
		}
		count.Add(1)
		lastSent = time.Now()
	}
	t1 := redisTime(t, c)
	received := time.Now()
	// Redis's clock read t0 after start and the first decision before
	// firstDone; it made the last decision after lastSent and read t1
	// before received (the clocks of one machine run at one rate).
	slack = time.Duration(firstDone.Load()) + received.Sub(lastSent)
	return count.Load(), t1.Sub(t0), slack
}

// checkAccuracy checks admitted against burst + elapsed×rate. GCRA
// admits, for a key hammered without pause from its first decision at T1
// to its last at T2, exactly burst + floor((T2-T1)×rate): never more than
// burst + elapsed×rate, since [T1, T2] lies inside elapsed, and fewer by
// less than 1 (the floor) plus slack×rate, slack bounding the parts of
// elapsed before T1 and after T2.
func checkAccuracy(t *testing.T, l ratelimit.Limit, admitted int64, elapsed, slack time.Duration) {
	t.Helper()
	rate := float64(l.Rate) / l.Period.Seconds()
	want := float64(l.Burst) + elapsed.Seconds()*rate
	slackEvents := slack.Seconds() * rate
	t.Logf("admitted %d, burst + elapsed×rate = %d + %v×%g = %.3f, diff %.3f, slack %v (%.3f events)",
		admitted, l.Burst, elapsed, rate, want, float64(admitted)-want, slack, slackEvents)
	if float64(admitted) > math.Floor(want) {
		t.Errorf("admitted %d, more than burst + elapsed×rate = %.3f", admitted, want)
	}
	if float64(admitted) <= want-1-slackEvents {
		t.Errorf("admitted %d, not more than burst + elapsed×rate - 1 - slack = %.3f", admitted, want-1-slackEvents)
	}
}

// runFor returns d plus half an interval of l. The count of admitted
// events steps once per interval; a window of a whole number of intervals
// ends right at a step, where the floor in checkAccuracy makes the count
// fall short by 1 or 0 depending on microseconds of scheduling. Half an
// interval more puts the end between two steps: the count is then
// expected half an event below burst + elapsed×rate, and within 1 of it
// by a margin that the scheduling does not decide.
func runFor(d time.Duration, l ratelimit.Limit) time.Duration {
	return d + l.Period/time.Duration(l.Rate)/2
}

func TestAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 4 s")
	}
	c := testClient(t)
	l := ratelimit.PerSecond(50, 20)
	for _, tc := range []struct {
		name string
		size int
	}{{"deny-cache", 0}, {"no-deny-cache", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(c, Options{Prefix: testPrefix(t, c), DenyCacheSize: tc.size})
			admitted, elapsed, slack := hammer(t, c, []*Store{s}, "one", l, 64, runFor(2*time.Second, l))
			checkAccuracy(t, l, admitted, elapsed, slack)
		})
	}
}

// TestTwoStores: two instances, each with its own client, share one limit
// rather than keeping one each.
func TestTwoStores(t *testing.T) {
	o := testOptions(t)
	c1, c2 := newClient(t, o), newClient(t, o)
	prefix := testPrefix(t, c1)
	stores := []*Store{New(c1, Options{Prefix: prefix}), New(c2, Options{Prefix: prefix})}
	l := ratelimit.PerSecond(50, 20)
	admitted, elapsed, slack := hammer(t, c1, stores, "shared", l, 64, runFor(time.Second, l))
	checkAccuracy(t, l, admitted, elapsed, slack)
}

// freePort returns a TCP port nobody listens on, for a redis-server of the
// test's own.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRedis starts a redis-server on port and waits until it answers.
func startRedis(t *testing.T, bin string, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c.Ping(context.Background()).Err() == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisRestart stops the Redis under a Store (a redis-server of the
// test's own) and starts it again: decisions fail fast while it is down
// and work again, through the same Store, once it is back.
func TestRedisRestart(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	port := freePort(t)
	srv := startRedis(t, bin, port)
	c := redis.NewClient(&redis.Options{
		Addr:          fmt.Sprintf("127.0.0.1:%d", port),
		DialTimeout:   200 * time.Millisecond,
		ReadTimeout:   200 * time.Millisecond,
		WriteTimeout:  200 * time.Millisecond,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	defer c.Close()
	s := New(c, Options{})
	l := ratelimit.PerSecond(100, 100)
	ctx := context.Background()
	for i := range 10 {
		if d, err := s.AllowN(ctx, "k", l, 1); err != nil || !d.Allowed {
			t.Fatalf("before the stop, decision %d: %+v, %v", i, d, err)
		}
	}

	// A Redis that hangs: every decision fails after the read timeout.
	srv.Process.Signal(syscall.SIGSTOP)
	for i := range 2 {
		begin := time.Now()
		d, err := s.AllowN(ctx, "k", l, 1)
		took := time.Since(begin)
		if err == nil {
			t.Fatalf("Redis stopped, decision %d: %+v, want an error", i, d)
		}
		if took > time.Second {
			t.Errorf("Redis stopped, decision %d took %v", i, took)
		}
		t.Logf("Redis stopped, decision %d: %v after %v", i, err, took)
	}
	srv.Process.Signal(syscall.SIGCONT)

	// A Redis that is gone: every decision fails at once.
	srv.Process.Kill()
	srv.Wait()
	for i := range 3 {
		begin := time.Now()
		d, err := s.AllowN(ctx, "k", l, 1)
		took := time.Since(begin)
		if err == nil {
			t.Fatalf("Redis down, decision %d: %+v, want an error", i, d)
		}
		if !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
		if took > time.Second {
			t.Errorf("Redis down, decision %d took %v", i, took)
		}
		t.Logf("Redis down, decision %d: %v after %v", i, err, took)
	}

	startRedis(t, bin, port)
	var last error
	for i := range 20 {
		d, err := s.AllowN(ctx, "k", l, 1)
		if err == nil {
			if !d.Allowed {
				t.Errorf("Redis back: %+v", d)
			}
			t.Logf("Redis back: the decision %d after the restart worked", i+1)
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Redis back, decisions still fail: %v", last)
}

// ownRedis starts a redis-server of the test's own, or skips the test.
func ownRedis(t *testing.T, o *redis.Options) (*exec.Cmd, *redis.Client) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	port := freePort(t)
	srv := startRedis(t, bin, port)
	o.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	o.MaxRetries, o.DialerRetries = -1, 1
	return srv, newClient(t, o)
}

// TestBatchFirstContact: a batch sent to a Redis that has never seen the
// script (NOSCRIPT for every command of the pipeline) gets its answers,
// with the script loaded once, and so do concurrent decisions.
func TestBatchFirstContact(t *testing.T) {
	_, c := ownRedis(t, &redis.Options{})
	ctx := context.Background()
	s := New(c, Options{})
	var batch []*call
	for i := range 10 {
		batch = append(batch, &call{ctx: ctx, key: fmt.Sprint("k", i), args: [4]any{0, 1000, 0, 1000}, done: make(chan struct{})})
	}
	s.batch.exec(batch)
	for i, cl := range batch {
		if cl.err != nil || len(cl.res) != 3 || cl.res[0] != 1 {
			t.Errorf("call %d: %v, %v", i, cl.res, cl.err)
		}
	}
	stats, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_script|load:calls=1,") || !strings.Contains(stats, "cmdstat_evalsha:calls=20,") {
		t.Errorf("want one SCRIPT LOAD and 10+10 EVALSHA:\n%s", stats)
	}

	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 10 {
				d, err := s.AllowN(ctx, fmt.Sprint(g, ":", i), ratelimit.PerSecond(1, 1), 1)
				if err != nil || !d.Allowed {
					t.Errorf("%d:%d: %+v, %v", g, i, d, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestDeadlineWhileRedisHangs: with every batch stuck on a Redis that does
// not answer, a decision still returns at its context's deadline, not at
// the client's read timeout.
func TestDeadlineWhileRedisHangs(t *testing.T) {
	srv, c := ownRedis(t, &redis.Options{ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second})
	s := New(c, Options{})
	l := ratelimit.PerSecond(1000, 1000)
	if _, err := s.AllowN(context.Background(), "warm", l, 1); err != nil {
		t.Fatal(err)
	}
	srv.Process.Signal(syscall.SIGSTOP)
	var slow sync.WaitGroup
	for g := range 2 * maxFlushers {
		slow.Go(func() {
			if _, err := s.AllowN(context.Background(), fmt.Sprint("slow", g), l, 1); err != nil {
				t.Errorf("slow %d: %v", g, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	var fast sync.WaitGroup
	for g := range 20 {
		fast.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			begin := time.Now()
			_, err := s.AllowN(ctx, fmt.Sprint("fast", g), l, 1)
			if took := time.Since(begin); !errors.Is(err, context.DeadlineExceeded) || took > 500*time.Millisecond {
				t.Errorf("fast %d: %v after %v, want the deadline after 100ms", g, err, took)
			}
		})
	}
	fast.Wait()
	srv.Process.Signal(syscall.SIGCONT)
	slow.Wait()
}

// TestDenyCache: once Redis has denied a key, the same question is
// answered without Redis until the retry-after, with what Redis would
// answer, and the key is admitted again after it.
func TestDenyCache(t *testing.T) {
	c := testClient(t)
	h := countScripts(t, c)
	prefix := testPrefix(t, c)
	s := New(c, Options{Prefix: prefix})
	direct := New(c, Options{Prefix: prefix, DenyCacheSize: -1})
	l := ratelimit.Limit{Rate: 1, Period: 300 * time.Millisecond, Burst: 1}
	ctx := context.Background()

	if d, err := s.AllowN(ctx, "k", l, 1); err != nil || !d.Allowed {
		t.Fatalf("first: %+v, %v", d, err)
	}
	start := time.Now()
	denied, err := s.AllowN(ctx, "k", l, 1)
	deniedRTT := time.Since(start)
	if err != nil || denied.Allowed {
		t.Fatalf("second: %+v, %v", denied, err)
	}
	if n := h.scripts.Load(); n != 2 {
		t.Fatalf("%d scripts run, want 2", n)
	}
	for i := range 1000 {
		d, err := s.AllowN(ctx, "k", l, 1)
		if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > denied.RetryAfter || d.Remaining != 0 {
			t.Fatalf("cached %d: %+v, %v", i, d, err)
		}
	}
	if n := h.scripts.Load(); n != 2 {
		t.Fatalf("%d scripts run after 1000 denied decisions, want still 2", n)
	}

	// The cached answer is what Redis says. The two can differ by the
	// time that passes between them and by the round trip of the answer
	// the cache holds (its deadline counts from when it arrived), never
	// by more, and the cache never answers sooner than Redis would.
	start = time.Now()
	cached, _ := s.AllowN(ctx, "k", l, 1)
	fromRedis, err := direct.AllowN(ctx, "k", l, 1)
	slack := time.Since(start) + deniedRTT + time.Millisecond
	if err != nil {
		t.Fatal(err)
	}
	if cached.Allowed || fromRedis.Allowed || cached.Remaining != fromRedis.Remaining ||
		fromRedis.RetryAfter > cached.RetryAfter+time.Millisecond ||
		cached.RetryAfter-fromRedis.RetryAfter > slack ||
		!within(cached.ResetAfter-cached.RetryAfter, fromRedis.ResetAfter-fromRedis.RetryAfter, time.Millisecond) {
		t.Errorf("cached %+v, Redis %+v (slack %v)", cached, fromRedis, slack)
	}

	// Another question about the key goes to Redis.
	before := h.scripts.Load()
	s.AllowN(ctx, "k", l, 0)
	s.AllowN(ctx, "k", ratelimit.PerSecond(1000, 1000), 1)
	s.AllowN(ctx, "other", l, 1)
	if n := h.scripts.Load() - before; n != 3 {
		t.Errorf("%d scripts run for 3 other questions", n)
	}

	cached, _ = s.AllowN(ctx, "k", l, 1)
	time.Sleep(cached.RetryAfter + 5*time.Millisecond)
	before = h.scripts.Load()
	if d, err := s.AllowN(ctx, "k", l, 1); err != nil || !d.Allowed {
		t.Errorf("after the retry-after: %+v, %v", d, err)
	}
	if n := h.scripts.Load() - before; n != 1 {
		t.Errorf("%d scripts run after the retry-after, want 1", n)
	}
}

// TestDenyCacheLocalClock: the cache expires on the local clock, the
// decisions are Redis's.
func TestDenyCacheLocalClock(t *testing.T) {
	c := testClient(t)
	h := countScripts(t, c)
	clock := newFakeClock()
	s := New(c, Options{Prefix: testPrefix(t, c), Now: clock.Now})
	l := ratelimit.PerMinute(1, 1)
	ctx := context.Background()
	s.AllowN(ctx, "k", l, 1)
	d, _ := s.AllowN(ctx, "k", l, 1)
	s.AllowN(ctx, "k", l, 1)
	if d.Allowed || h.scripts.Load() != 2 {
		t.Fatalf("%+v after %d scripts", d, h.scripts.Load())
	}
	clock.Add(d.RetryAfter)
	d, _ = s.AllowN(ctx, "k", l, 1)
	if h.scripts.Load() != 3 {
		t.Errorf("the local clock passed the retry-after, yet the cache answered")
	}
	if d.Allowed || d.RetryAfter < 59*time.Second {
		t.Errorf("Redis's clock did not move, yet %+v", d)
	}
}

func TestDenyCacheDisabled(t *testing.T) {
	c := testClient(t)
	h := countScripts(t, c)
	s := New(c, Options{Prefix: testPrefix(t, c), DenyCacheSize: -1})
	l := ratelimit.PerMinute(1, 1)
	for range 10 {
		s.AllowN(context.Background(), "k", l, 1)
	}
	if n := h.scripts.Load(); n != 10 {
		t.Errorf("%d scripts for 10 decisions", n)
	}
}

// TestDenyCacheBounded: the cache holds at most its size, and drops
// expired entries before live ones.
func TestDenyCacheBounded(t *testing.T) {
	clock := newFakeClock()
	l := ratelimit.PerMinute(1, 1)
	key := func(i int) cacheKey { return cacheKey{key: fmt.Sprint("k", i)} }

	small := newDenyCache(10, clock.Now)
	for i := range 10 {
		small.put(key(i), l, 1, time.Second, time.Second)
	}
	clock.Add(2 * time.Second)
	for i := 10; i < 20; i++ {
		small.put(key(i), l, 1, time.Minute, time.Minute)
	}
	for i := 10; i < 20; i++ {
		if _, ok := small.get(key(i), l, 1); !ok {
			t.Errorf("live entry %d dropped while expired ones were there", i)
		}
	}
	small.put(key(20), l, 1, time.Minute, time.Minute)
	if _, ok := small.get(key(20), l, 1); !ok || small.len() > 10 {
		t.Errorf("full cache: newest entry kept %v, %d entries for a size of 10", ok, small.len())
	}

	big := newDenyCache(1000, clock.Now)
	for i := range 100_000 {
		big.put(key(i), l, 1, time.Minute, time.Minute)
	}
	if n := big.len(); n > 1000 {
		t.Errorf("%d entries for a size of 1000", n)
	}
}

// TestKeys: the key layout, long keys hashed, and prefixes isolated.
func TestKeys(t *testing.T) {
	c := testClient(t)
	prefix := testPrefix(t, c)
	s := New(c, Options{Prefix: prefix, DenyCacheSize: -1})
	l := ratelimit.PerMinute(1, 1)
	ctx := context.Background()
	exists := func(name string) bool {
		n, err := c.Exists(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	allowed := func(s *Store, key string) bool {
		d, err := s.AllowN(ctx, key, l, 1)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}

	allowed(s, "swap:key_abc")
	if name := prefix + ":{swap:key_abc}"; !exists(name) {
		t.Errorf("%s missing", name)
	}

	exact := strings.Repeat("a", MaxKeyLen)
	allowed(s, exact)
	if !exists(prefix + ":{" + exact + "}") {
		t.Errorf("a key of %d bytes was not stored as it is", MaxKeyLen)
	}

	long1 := strings.Repeat("b", 300) + "1"
	long2 := strings.Repeat("b", 300) + "2"
	sum := sha256.Sum256([]byte(long1))
	sum1 := hex.EncodeToString(sum[:])
	if !allowed(s, long1) || allowed(s, long1) {
		t.Error("a long key is not limited")
	}
	if !exists(prefix + ":h{" + sum1 + "}") {
		t.Errorf("the long key is not stored as its SHA-256")
	}
	if !allowed(s, long2) {
		t.Error("two long keys share a limit")
	}
	if !allowed(s, sum1) {
		t.Error("a short key spelled as a long key's hash shares its limit")
	}
	keys, err := c.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(k) > len(prefix)+MaxKeyLen+4 {
			t.Errorf("key of %d bytes in Redis", len(k))
		}
	}

	// Prefix isolation.
	other := New(c, Options{Prefix: prefix + ":other", DenyCacheSize: -1})
	if !allowed(s, "iso") || allowed(s, "iso") {
		t.Fatal("burst of 1 not enforced")
	}
	if !allowed(other, "iso") {
		t.Error("another prefix shares the limit")
	}
}

// TestExpiry: a key expires when its budget is whole again.
func TestExpiry(t *testing.T) {
	c := testClient(t)
	prefix := testPrefix(t, c)
	s := New(c, Options{Prefix: prefix})
	ctx := context.Background()
	d, err := s.AllowN(ctx, "k", ratelimit.PerSecond(10, 5), 2)
	if err != nil || !d.Allowed || d.ResetAfter != 200*time.Millisecond {
		t.Fatalf("%+v, %v", d, err)
	}
	ttl, err := c.PTTL(ctx, prefix+":{k}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 150*time.Millisecond || ttl > 200*time.Millisecond {
		t.Errorf("PTTL %v, want the reset-after, 200ms", ttl)
	}
	d, err = s.AllowN(ctx, "n0", ratelimit.PerSecond(10, 5), 0)
	if err != nil || !d.Allowed || d.Remaining != 5 {
		t.Fatalf("n=0 on a new key: %+v, %v", d, err)
	}
	if n, _ := c.Exists(ctx, prefix+":{n0}").Result(); n != 0 {
		t.Errorf("n=0 wrote the key")
	}
}

// TestNoRedisForBadInput: an invalid limit or count fails before any
// call to Redis (here, a port nobody listens on).
func TestNoRedisForBadInput(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	h := new(counter)
	c.AddHook(h)
	s := New(c, Options{})
	ctx := context.Background()
	for _, l := range []ratelimit.Limit{{}, {Rate: 1, Period: time.Second}, {Rate: 2, Period: 1, Burst: 1}} {
		if _, err := s.AllowN(ctx, "k", l, 1); !errors.Is(err, ratelimit.ErrInvalidLimit) {
			t.Errorf("limit %v: %v, want ErrInvalidLimit", l, err)
		}
	}
	if _, err := s.AllowN(ctx, "k", ratelimit.PerSecond(1, 1), -1); err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
		t.Errorf("n=-1: %v", err)
	}
	if n := h.scripts.Load(); n != 0 {
		t.Errorf("%d scripts run", n)
	}
	_, err := s.AllowN(ctx, "k", ratelimit.PerSecond(1, 1), 1)
	if err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
		t.Errorf("no Redis: %v", err)
	}
}

func TestContext(t *testing.T) {
	c := testClient(t)
	s := New(c, Options{Prefix: testPrefix(t, c)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.AllowN(ctx, "k", ratelimit.PerSecond(1, 1), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.AllowN(ctx, "k", ratelimit.PerSecond(1, 1), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past deadline: %v", err)
	}
}

func TestNewRejectsBraces(t *testing.T) {
	for _, p := range []string{"a{b", "a}b", "{tag}"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("prefix %q accepted", p)
				}
			}()
			New(nil, Options{Prefix: p})
		}()
	}
}

// Check refuses the prefixes New panics on, so that a prefix from a file
// can be refused before New; it needs no Redis.
func TestOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"rampart:rl:gateway", true},
		{"rl:{gw}", false},
		{"rl}", false},
	} {
		err := Options{Prefix: tc.prefix}.Check()
		if (err == nil) != tc.ok || (err != nil && !strings.HasPrefix(err.Error(), "redisstore: ")) {
			t.Errorf("Check(%q) = %v, want ok %v", tc.prefix, err, tc.ok)
		}
		if tc.ok {
			continue
		}
		func() {
			c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
			defer c.Close()
			defer func() {
				if v := recover(); v == nil || fmt.Sprint(v) != err.Error() {
					t.Errorf("New(%q) panicked with %v, want Check's error %v", tc.prefix, v, err)
				}
			}()
			New(c, Options{Prefix: tc.prefix})
		}()
	}
}
