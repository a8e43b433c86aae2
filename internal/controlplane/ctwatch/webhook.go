package ctwatch

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/store"
)

// SignatureHeader carries a delivery's signature.
const SignatureHeader = "Rampart-Signature"

// Sign is the signature of body sent at t: "t=<unix>,v1=<hex HMAC>",
// the HMAC-SHA256 under secret of the decimal time, a dot and the body.
// A receiver recomputes it, compares in constant time (hmac.Equal) and
// refuses a t far from its clock, so that a delivery cannot be replayed.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrBadSignature is returned by Verify for a delivery it refuses.
var ErrBadSignature = errors.New("ctwatch: the delivery's signature does not verify")

// Verify checks a delivery as a receiver must: the signature header's
// HMAC over the exact body, compared in constant time, and its time
// within tolerance of now (so that a recorded delivery cannot be
// replayed later).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, _, ok := strings.Cut(strings.TrimPrefix(header, "t="), ",")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if !ok || !strings.HasPrefix(header, "t=") || err != nil {
		return fmt.Errorf("%w: malformed %s header", ErrBadSignature, SignatureHeader)
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, %s from now", ErrBadSignature, at.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	if !hmac.Equal([]byte(header), []byte(Sign(secret, at, body))) {
		return ErrBadSignature
	}
	return nil
}

// delivery is the JSON a webhook receives.
type delivery struct {
	Type    string          `json:"type"`
	AlertID int64           `json:"alert_id"`
	Class   string          `json:"class"`
	Created time.Time       `json:"created"`
	Attempt int             `json:"attempt"`
	Finding json.RawMessage `json:"finding"`
}

// backoff is the wait before attempt n+1 after n failures: base (10 s)
// doubling, at most an hour.
func backoff(base time.Duration, failures int) time.Duration {
	d := base
	for range min(failures, 12) {
		d *= 2
	}
	return min(d, time.Hour)
}

// deliverLoop sends due alerts, at once when one is raised and every 10
// seconds for retries, leasing them so that instances sharing the store
// never send one twice at a time.
func (w *Watcher) deliverLoop(ctx context.Context) {
	var retry time.Time // the soonest retry scheduled, until it is made
	for {
		if r := w.deliverDue(ctx); !r.IsZero() && (retry.IsZero() || r.Before(retry)) {
			retry = r
		}
		wait := 10 * time.Second
		if !retry.IsZero() {
			wait = min(wait, max(retry.Sub(w.now()), 10*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			if !retry.IsZero() && !w.now().Before(retry) {
				retry = time.Time{}
			}
		case <-w.kick:
			t.Stop()
		}
	}
}

// deliverDue sends the alerts due and returns the soonest retry it
// scheduled (zero: none).
func (w *Watcher) deliverDue(ctx context.Context) (soonest time.Time) {
	for ctx.Err() == nil {
		// One at a time: the lease (a minute) outlasts one delivery (the
		// client's timeout), never a queue of them.
		due, err := w.cfg.Store.DueAlerts(ctx, w.cfg.Owner, w.now(), time.Minute, 1)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("ct: reading due alerts", "err", err)
			}
			return
		}
		if len(due) == 0 {
			return soonest
		}
		for _, a := range due {
			if next := w.deliver(ctx, a); !next.IsZero() && (soonest.IsZero() || next.Before(soonest)) {
				soonest = next
			}
		}
	}
	return soonest
}

// deliver sends one alert and returns when to try again (zero: delivered,
// or given up).
func (w *Watcher) deliver(ctx context.Context, a store.CTAlert) time.Time {
	wh := w.cfg.Webhook
	body, _ := json.Marshal(delivery{Type: "ct.alert", AlertID: a.ID, Class: string(a.Class), Created: a.Created, Attempt: a.Attempts + 1, Finding: a.Payload})
	err := w.post(ctx, wh, body)
	now := w.now()
	if err == nil {
		w.metrics.deliveries.WithLabelValues("delivered").Inc()
		if err := w.cfg.Store.AlertDelivered(ctx, a.ID, now); err != nil {
			w.log.Error("ct: marking an alert delivered", "alert", a.ID, "err", err)
		}
		return time.Time{}
	}
	next := now.Add(backoff(wh.RetryBase, a.Attempts))
	result := "failed"
	if a.Attempts+1 >= wh.MaxAttempts {
		next, result = time.Time{}, "gave_up"
	}
	w.metrics.deliveries.WithLabelValues(result).Inc()
	w.log.Warn("ct: webhook delivery failed", "alert", a.ID, "attempt", a.Attempts+1, "err", err, "next", next)
	if err := w.cfg.Store.AlertFailed(ctx, a.ID, next, err.Error()); err != nil {
		w.log.Error("ct: recording a failed delivery", "alert", a.ID, "err", err)
	}
	return next
}

func (w *Watcher) post(ctx context.Context, wh *Webhook, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(wh.Secret, w.now(), body))
	resp, err := wh.Client.Do(req)
	if err != nil {
		// A transport error names the URL, which may hold the
		// receiver's secret (a token in the path or query): keep the
		// cause only, for the log and the store.
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("webhook: %v", ue.Err)
		}
		return errors.New("webhook: request failed")
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
