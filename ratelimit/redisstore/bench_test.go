package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/rampartsec/rampart/ratelimit"
)

// BenchmarkAllowN compares Store with github.com/go-redis/redis_rate v10,
// the GCRA limiter of the go-redis authors, on the same Redis and the same
// client, at 64-way concurrency:
//
//   - keys=fresh: 10,000 keys under a generous limit, every decision an
//     EVALSHA for both (Store's concurrent decisions share round trips);
//   - keys=over: 1,000 keys already over their limit, where the deny cache
//     answers without Redis.
//
// Compare with benchstat -col /impl.
func BenchmarkAllowN(b *testing.B) {
	o := testOptions(b)
	o.PoolSize = 64 // a connection per goroutine: redis_rate never waits for one
	c := newClient(b, o)
	parallelism := max(1, 64/runtime.GOMAXPROCS(0))

	for _, keys := range []struct {
		name  string
		n     int
		limit ratelimit.Limit
	}{
		{"fresh", 10_000, ratelimit.PerSecond(1000, 1000)},
		{"over", 1_000, ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 1}},
	} {
		rl := redis_rate.Limit{Rate: keys.limit.Rate, Burst: keys.limit.Burst, Period: keys.limit.Period}
		for _, impl := range []string{"rampart", "redis_rate"} {
			b.Run("impl="+impl+"/keys="+keys.name, func(b *testing.B) {
				tag := "rampart:bench:" + randomHex(b)
				names := make([]string, keys.n)
				for i := range names {
					names[i] = fmt.Sprintf("%s:%d", tag, i)
				}
				var allow func(ctx context.Context, key string) (bool, error)
				switch impl {
				case "rampart":
					s := New(c, Options{Prefix: tag})
					b.Cleanup(func() { deleteKeys(b, c, tag+":*") })
					allow = func(ctx context.Context, key string) (bool, error) {
						d, err := s.AllowN(ctx, key, keys.limit, 1)
						return d.Allowed, err
					}
				case "redis_rate":
					l := redis_rate.NewLimiter(c)
					b.Cleanup(func() { deleteKeys(b, c, "rate:"+tag+":*") })
					allow = func(ctx context.Context, key string) (bool, error) {
						r, err := l.Allow(ctx, key, rl)
						if err != nil {
							return false, err
						}
						return r.Allowed > 0, nil
					}
				}
				ctx := context.Background()
				if keys.name == "over" {
					for _, k := range names {
						allow(ctx, k)
						if ok, err := allow(ctx, k); ok || err != nil {
							b.Fatalf("%s not over its limit: %v", k, err)
						}
					}
				}
				var errs, allowed atomic.Int64
				b.SetParallelism(parallelism)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := rand.IntN(len(names))
					for pb.Next() {
						ok, err := allow(ctx, names[i])
						if err != nil {
							errs.Add(1)
						} else if ok {
							allowed.Add(1)
						}
						if i++; i == len(names) {
							i = 0
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
				if n := errs.Load(); n > 0 {
					b.Fatalf("%d errors", n)
				}
				if keys.name == "fresh" && allowed.Load() != int64(b.N) {
					b.Fatalf("%d of %d fresh decisions allowed", allowed.Load(), b.N)
				}
				if keys.name == "over" && allowed.Load() != 0 {
					b.Fatalf("%d decisions over the limit allowed", allowed.Load())
				}
			})
		}
	}
}
