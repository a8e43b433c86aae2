package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
)

// Every instance of the gateway shares the limit of 100 swaps a minute per
// API key through one Redis.
func Example() {
	rdb := redis.NewClient(&redis.Options{
		Addr:          "127.0.0.1:6379",
		MaxRetries:    -1, // one try: the rule decides what a failure means
		DialerRetries: 1,
		DialTimeout:   100 * time.Millisecond,
		ReadTimeout:   100 * time.Millisecond,
	})
	defer rdb.Close()
	store := redisstore.New(rdb, redisstore.Options{Prefix: "rampart:rl:gateway"})

	d, err := store.AllowN(context.Background(), "swap:key_abc", ratelimit.PerMinute(100, 100), 1)
	if err != nil {
		log.Printf("rate limit store unavailable: %v", err) // fail open or closed, per rule
		return
	}
	if !d.Allowed {
		fmt.Printf("429, retry after %v\n", d.RetryAfter)
	}
}
