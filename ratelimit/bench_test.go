package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-limiter/memorystore"
)

// The memory store against sethvargo/go-limiter's, in the same run: one
// decision on one of 100,000 keys, serial and with RunParallel.
//
//	go test -run '^$' -bench Memory -count 10 ./ratelimit | tee m.txt
//	benchstat -col /impl m.txt
func BenchmarkMemory(b *testing.B) {
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	// Every decision admits, and every key stays active (its budget never
	// refills in the run), so the 100,000 keys stay in memory: the load of
	// a busy edge.
	l := PerSecond(1, 1<<20)
	b.Run("impl=rampart/mode=serial", func(b *testing.B) {
		m := &Memory{}
		i := 0
		for b.Loop() {
			m.AllowN(ctx, keys[i%n], l, 1)
			i++
		}
	})
	b.Run("impl=rampart/mode=parallel", func(b *testing.B) {
		m := &Memory{}
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				m.AllowN(ctx, keys[i%n], l, 1)
				i++
			}
		})
	})
	peer := func(b *testing.B) interface {
		Take(context.Context, string) (uint64, uint64, uint64, bool, error)
	} {
		s, err := memorystore.New(&memorystore.Config{Tokens: 1 << 20, Interval: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close(ctx) })
		return s
	}
	b.Run("impl=go-limiter/mode=serial", func(b *testing.B) {
		s := peer(b)
		i := 0
		for b.Loop() {
			s.Take(ctx, keys[i%n])
			i++
		}
	})
	b.Run("impl=go-limiter/mode=parallel", func(b *testing.B) {
		s := peer(b)
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				s.Take(ctx, keys[i%n])
				i++
			}
		})
	})
}
