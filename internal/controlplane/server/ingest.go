package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampartsec/rampart/internal/store"
)

// errIngestClosed is returned for reports submitted after Close.
var errIngestClosed = errors.New("server: shutting down")

// errIngestNotStarted is returned for reports submitted before Start.
var errIngestNotStarted = errors.New("server: not started")

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
	mu       sync.RWMutex // held for reading by submitters, for writing by start and close
	started  bool
	isClosed bool
	observe  func(size int, d time.Duration, err error)
	// queuedBytes bounds the memory of the queue, whose reports may be up
	// to report.MaxSize each.
	queuedBytes atomic.Int64
	maxBytes    int64
}

type ingestJob struct {
	r    store.Report
	done chan error
}

func newIngester(st store.ReportStore, queueSize, maxBatch int, maxBytes int64, observe func(int, time.Duration, error)) *ingester {
	in := &ingester{
		st:       st,
		maxBatch: maxBatch,
		maxBytes: maxBytes,
		queue:    make(chan *ingestJob, queueSize),
		done:     make(chan struct{}),
		observe:  observe,
	}
	return in
}

// start starts the committer, unless it was started or closed.
func (in *ingester) start() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started || in.isClosed {
		return
	}
	in.started = true
	go in.run()
}

// submit queues r and waits until the transaction holding it has
// committed or failed. It waits whatever the request's context says: an
// HTTP/1.1 client that half-closes its connection cancels the context yet
// still reads the answer, which must then be the truth. The wait is
// bounded by the commit's own timeout. A full queue is refused at once.
func (in *ingester) submit(r store.Report) error {
	size := int64(len(r.Content.Body) + len(r.UserAgent) + 512)
	job := &ingestJob{r: r, done: make(chan error, 1)}
	in.mu.RLock()
	if in.isClosed {
		in.mu.RUnlock()
		return errIngestClosed
	}
	if !in.started {
		in.mu.RUnlock()
		return errIngestNotStarted
	}
	if in.queuedBytes.Add(size) > in.maxBytes {
		in.queuedBytes.Add(-size)
		in.mu.RUnlock()
		return errIngestBusy
	}
	select {
	case in.queue <- job:
	default:
		in.queuedBytes.Add(-size)
		in.mu.RUnlock()
		return errIngestBusy
	}
	in.mu.RUnlock()
	err := <-job.done
	in.queuedBytes.Add(-size)
	return err
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
		err := in.commit(reports)
		if in.observe != nil {
			in.observe(len(batch), time.Since(start), err)
		}
		if err == nil || len(batch) == 1 {
			for _, j := range batch {
				j.done <- err
			}
			continue
		}
		// One report the database refuses must not fail the others with
		// it: commit them one by one, so each gets its own answer.
		for _, j := range batch {
			err := in.commit([]store.Report{j.r})
			if in.observe != nil {
				in.observe(1, 0, err)
			}
			j.done <- err
		}
	}
}

func (in *ingester) commit(rs []store.Report) error {
	// Not a request's context: a client that hangs up must not abort the
	// others' transaction.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return in.st.AddReports(ctx, rs)
}

// close stops accepting reports, commits those queued, and waits for the
// last commit, or for ctx. It may be called twice, and without start.
func (in *ingester) close(ctx context.Context) error {
	in.once.Do(func() {
		in.mu.Lock()
		in.isClosed = true
		close(in.queue)
		if !in.started {
			close(in.done)
		}
		in.mu.Unlock()
	})
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
