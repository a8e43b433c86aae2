package ct

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rampartsec/rampart/internal/util/version"
)

// An HTTPError is a log's answer other than 200 OK.
type HTTPError struct {
	URL    string
	Status int
	// RetryAfter is the delay the log asked for (Retry-After), zero when
	// it named none.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("ct: %s: %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// Temporary reports whether retrying later may succeed: rate limiting and
// server errors.
func (e *HTTPError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// ErrTooLarge is wrapped by the errors of answers larger than their kind
// may be.
var ErrTooLarge = errors.New("ct: answer too large")

// fetcher GETs a log's resources with size limits.
type fetcher struct {
	client *http.Client
}

var userAgent = "rampart-ct/" + version.Get()

// defaultClient fetches when a monitor is given no client: a log that
// hangs fails the request rather than the monitor.
var defaultClient = &http.Client{Timeout: 60 * time.Second}

func (f *fetcher) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("ct: %w", err)
	}
	req.Header.Set("User-Agent", userAgent)
	c := f.client
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ct: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, &HTTPError{URL: url, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("ct: %s: %w", url, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, url, limit)
	}
	return data, nil
}

// retryAfter reads a Retry-After header's delay in seconds (the HTTP-date
// form is not used by logs; it reads as none). Capped at an hour.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, time.Hour)
}

// isNotFound reports whether err is a 404 answer.
func isNotFound(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}
