package mtls

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"
)

// closedNow reports whether the background loop of r has ended: Close
// waits for it, so right after Close it must have.
func closedNow(r *Reloader) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Close stops the watching of the files and waits for it, even when
// Start's context never ends; twice is fine, and Start after Close is
// refused. The certificate is still served.
func TestReloaderCloseFiles(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	good := issue(t, w.ca, ledger, time.Hour, time.Now())
	writePair(t, certFile, keyFile, good)
	r := &Reloader{CertFile: certFile, KeyFile: keyFile, PollInterval: time.Millisecond, Logger: discard}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := r.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
		if !closedNow(r) {
			t.Fatalf("Close #%d returned before the watcher ended", i+1)
		}
	}
	if c, err := r.GetCertificate(nil); err != nil || serial(c) != serial(&good) {
		t.Errorf("after Close: %v, %v; want the certificate still served", c, err)
	}
	if err := (&Reloader{}).Close(); err != nil {
		t.Errorf("Close of a Reloader never started: %v", err)
	}
	if err := NewStatic(good).Close(); err != nil {
		t.Errorf("Close of a static Reloader: %v", err)
	}
	closed := &Reloader{CertFile: certFile, KeyFile: keyFile, Logger: discard}
	closed.Close()
	if err := closed.Start(context.Background()); err == nil {
		t.Error("Start after Close: no error")
	}
}

// Close cancels the context a renewal in progress was given, and waits
// for the renewal loop to end.
func TestReloaderCloseRenewing(t *testing.T) {
	w := newWorld(t)
	first := issue(t, w.ca, ledger, time.Hour, time.Now())
	renewing := make(chan struct{})
	r := &Reloader{Logger: discard, Renew: func(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
		if cur == nil {
			return &first, nil
		}
		close(renewing)
		<-ctx.Done() // a renewal that hangs until its context ends
		return nil, ctx.Err()
	}}
	r.sleep = func(context.Context, time.Duration) error { return nil } // renew at once
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-renewing:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal")
	}
	r.Close()
	if !closedNow(r) {
		t.Fatal("Close returned before the renewal loop ended")
	}
}
