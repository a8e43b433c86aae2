package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rampartsec/rampart/internal/store"
)

// errIngestClosed is returned for reports submitted after Close.
var errIngestClosed = errors.New("server: shutting down")

// errIngestBusy is returned when the queue is full: the client retries
// later rather than the server buffering without bound.
var errIngestBusy = errors.New("server: report queue full")

// ingester commits reports in batches (group commit): a report is
// acknowledged only after the transaction holding it committed, and all
// reports that arrive while one transaction commits go into the next.
// Under load, batches grow and commits per report fall; when idle, a
// report is committed at once.
type ingester struct {
	st       store.ReportStore
	maxBatch int
	queue    chan *ingestJob
	done     chan struct{}
	once     sync.Once
	mu       sync.RWMutex // held for reading by submitters, for writing by close
	isClosed bool
	observe  func(size int, d time.Duration, err error)
}

type ingestJob struct {
	r    store.Report
	done chan error
}

func newIngester(st store.ReportStore, queueSize, maxBatch int, observe func(int, time.Duration, error)) *ingester {
	in := &ingester{
		st:       st,
		maxBatch: maxBatch,
		queue:    make(chan *ingestJob, queueSize),
		done:     make(chan struct{}),
		observe:  observe,
	}
	go in.run()
	return in
}

// submit queues r and waits until it is durable, the context ends, or the
// ingester closes. It never blocks on a full queue.
func (in *ingester) submit(ctx context.Context, r store.Report) error {
	job := &ingestJob{r: r, done: make(chan error, 1)}
	in.mu.RLock()
	if in.isClosed {
		in.mu.RUnlock()
		return errIngestClosed
	}
	select {
	case in.queue <- job:
	default:
		in.mu.RUnlock()
		return errIngestBusy
	}
	in.mu.RUnlock()
	select {
	case err := <-job.done:
		return err
	case <-ctx.Done():
		// The report may still be committed; it was not acknowledged, so
		// a retry at worst counts it twice.
		return ctx.Err()
	}
}

func (in *ingester) run() {
	defer close(in.done)
	batch := make([]*ingestJob, 0, in.maxBatch)
	reports := make([]store.Report, 0, in.maxBatch)
	for {
		batch = batch[:0]
		select {
		case job, ok := <-in.queue:
			if !ok {
				return
			}
			batch = append(batch, job)
		}
	fill:
		for len(batch) < in.maxBatch {
			select {
			case job, ok := <-in.queue:
				if !ok {
					break fill
				}
				batch = append(batch, job)
			default:
				break fill
			}
		}
		reports = reports[:0]
		for _, j := range batch {
			reports = append(reports, j.r)
		}
		start := time.Now()
		// Not the request's context: a client that hangs up must not
		// abort the others' transaction.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := in.st.AddReports(ctx, reports)
		cancel()
		if in.observe != nil {
			in.observe(len(batch), time.Since(start), err)
		}
		for _, j := range batch {
			j.done <- err
		}
	}
}

// close stops accepting reports, commits those queued, and waits for the
// last commit, or for ctx.
func (in *ingester) close(ctx context.Context) error {
	in.once.Do(func() {
		in.mu.Lock()
		in.isClosed = true
		close(in.queue)
		in.mu.Unlock()
	})
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
