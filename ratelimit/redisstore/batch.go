package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batching: concurrent decisions share round trips. Each decision is
// still one EVALSHA, atomic in Redis and independent of the others; what
// is shared is the write and the read of a connection, which on a loaded
// host cost more than the script does (1.6 to 2 times the decisions per second
// at 64-way concurrency on two cores). A lone decision is sent at once,
// from its own goroutine, as a single command;
// when maxFlushers batches are in flight, a decision waits for one of
// them to return and goes with the next.
const (
	maxFlushers = 4   // batches in flight at once
	maxBatch    = 256 // decisions per batch
)

// call is one decision waiting for its batch.
type call struct {
	ctx  context.Context
	key  string
	args [4]any
	res  []int64
	err  error
	done chan struct{} // closed when res and err are set

	abandoned bool // under batcher.mu: the caller left before it was sent
}

// batcher queues calls and sends them in pipelines from at most
// maxFlushers goroutines, started when there is work and gone when there
// is none: a Store holds no goroutine while idle, and needs no Close.
type batcher struct {
	c        redis.UniversalClient
	mu       sync.Mutex
	queue    []*call
	flushers int
}

// do runs cl and waits for its result or for its context.
func (b *batcher) do(cl *call) ([]int64, error) {
	if err := cl.ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.flushers < maxFlushers {
		// Alone: send it from this goroutine, as the single command it
		// is, under its own context.
		b.flushers++
		b.mu.Unlock()
		res, err := b.single(cl)
		b.mu.Lock()
		b.flushers--
		b.spawn()
		b.mu.Unlock()
		return res, err
	}
	cl.done = make(chan struct{})
	b.queue = append(b.queue, cl)
	b.spawn()
	b.mu.Unlock()
	select {
	case <-cl.done:
		return cl.res, cl.err
	case <-cl.ctx.Done():
		// If the call is still queued it will never be sent, so it
		// consumes nothing; if it was sent, Redis decides it anyway, as
		// it would a single command whose reply came too late.
		b.mu.Lock()
		cl.abandoned = true
		b.mu.Unlock()
		return nil, cl.ctx.Err()
	}
}

// spawn starts a flusher if calls are queued and fewer than maxFlushers
// are at work. b.mu is held.
func (b *batcher) spawn() {
	if len(b.queue) > 0 && b.flushers < maxFlushers {
		b.flushers++
		go b.flush()
	}
}

func (b *batcher) single(cl *call) ([]int64, error) {
	return gcra.Run(cl.ctx, b.c, []string{cl.key}, cl.args[:]...).Int64Slice()
}

// flush sends the queue, batch by batch, until it is empty.
func (b *batcher) flush() {
	var batch []*call
	for {
		batch = batch[:0]
		b.mu.Lock()
		n := 0
		for _, cl := range b.queue {
			if n == maxBatch {
				break
			}
			n++
			if !cl.abandoned {
				batch = append(batch, cl)
			}
		}
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		if n == 0 {
			b.flushers--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		if len(batch) > 0 {
			b.exec(batch)
		}
	}
}

// exec runs a batch: alone, as the single command it is, or as a
// pipeline. The pipeline's context keeps the values of the first call
// (for tracing hooks) and the latest deadline of the batch: a caller with
// an earlier one has its own select.
func (b *batcher) exec(batch []*call) {
	defer func() {
		for _, cl := range batch {
			close(cl.done)
		}
	}()
	if len(batch) == 1 {
		batch[0].res, batch[0].err = b.single(batch[0])
		return
	}
	ctx, cancel := batchContext(batch)
	defer cancel()
	cmds := make([]*redis.Cmd, len(batch))
	b.pipeline(ctx, batch, cmds)
	var again []*call
	for i, cl := range batch {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again = append(again, cl)
			continue
		}
		cl.res, cl.err = cmds[i].Int64Slice()
	}
	if len(again) > 0 {
		// The first time this Redis (or one node of a cluster) sees the
		// script, or after a restart or a SCRIPT FLUSH: load it once and
		// send again the calls that did not run, only those.
		cmds = cmds[:len(again)]
		if err := gcra.Load(ctx, b.c).Err(); err == nil {
			b.pipeline(ctx, again, cmds)
		}
		for i, cl := range again {
			cl.res, cl.err = cmds[i].Int64Slice()
		}
	}
}

// pipeline sends the calls of batch in one pipeline and puts their
// commands, each with its own result or error, in cmds.
func (b *batcher) pipeline(ctx context.Context, batch []*call, cmds []*redis.Cmd) {
	pipe := b.c.Pipeline()
	for i, cl := range batch {
		cmds[i] = gcra.EvalSha(ctx, pipe, []string{cl.key}, cl.args[:]...)
	}
	pipe.Exec(ctx)
}

// batchContext returns the context of a pipeline: no earlier deadline
// than any of its calls, and none if one of them has none.
func batchContext(batch []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, cl := range batch {
		d, ok := cl.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.WithoutCancel(batch[0].ctx))
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(batch[0].ctx), latest)
}
