// Package report turns pin validation failures into RFC 7469 §3 reports
// and sends them to the policy's report URI without ever slowing down or
// failing the connection that failed; and it reads reports, Rampart's and
// TrustKit's, for a collector ([Parse]). It owns the report format in both
// directions, so that what clients send and what the control plane reads
// cannot drift apart.
//
// # Report format
//
// A report is the JSON object of RFC 7469 §3:
//
//	{
//	  "date-time": "2026-11-25T12:00:00Z",
//	  "hostname": "api.example.com",
//	  "port": 443,
//	  "effective-expiration-date": "2027-07-01T00:00:00Z",   // null: no expiry
//	  "include-subdomains": false,
//	  "noted-hostname": "api.example.com",                   // the rule's domain
//	  "served-certificate-chain": ["-----BEGIN CERTIFICATE-----\n...", ...],
//	  "validated-certificate-chain": ["-----BEGIN CERTIFICATE-----\n...", ...],
//	  "known-pins": ["pin-sha256=\"d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM=\"", ...],
//
//	  "rampart-mode": "enforce",                 // or "report-only"
//	  "rampart-reason": "pin-mismatch",          // or "pin-set-expired", "no-verified-chain"
//	  "rampart-library-version": "v0.1.0",
//	  "rampart-known-cert-pins": ["cert-sha256:ab12..."]   // only when the rule has some
//	}
//
// Members prefixed "rampart-" are extensions; RFC 7469 collectors ignore
// them. The validated chain is the first verified chain; it is empty when
// there was none. The port is 0 when the pinning hook could not know it
// (see [pin.Verifier.TLSConfig]).
//
// TrustKit's reports (iOS and Android) have the same members, some of them
// optional, and their own: app-bundle-id, app-version, app-platform,
// app-platform-version, app-vendor-id, trustkit-version, enforce-pinning,
// validation-result and known-pins-expiration-date. [Report] has them all.
//
// # Reading reports
//
// [Parse] reads a report in either format and refuses, with an [*Error]
// naming the member at fault, anything a collector should not store or
// show: see its documentation for the list. [Report.Key] identifies the
// failure a report describes, to count identical reports once.
//
// # Delivery
//
// [Reporter] queues reports in a bounded queue and posts them one at a
// time, from a goroutine that runs while the queue holds reports and ends
// when it is empty: a Reporter needs no Start, and an idle one holds no
// goroutine. A failure is reported at most once per 24 hours to each
// report URI: failures with the same [pin.Failure.Key] make the same
// report, but for its date-time. When the queue is full a report is
// dropped and counted, never waited for. Short-lived processes call
// [Reporter.Flush] before exiting.
package report

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampartsec/rampart/internal/util/dedup"
	"github.com/rampartsec/rampart/internal/util/version"
	"github.com/rampartsec/rampart/pin"
)

// Report is a pin validation failure report: the members of RFC 7469 §3,
// Rampart's rampart-* extensions, and the members TrustKit (iOS and
// Android) adds to the same object. [New] makes one; [Parse] reads one in
// either format. The JSON tags are the wire names; encoding/json writes a
// Report as New's report (the TrustKit members are omitted when empty).
//
// A pointer member is nil when the report does not have it (or has null):
// the control plane tells a missing expiry from an empty one.
type Report struct {
	// DateTime is when the failure was seen, RFC 3339. TrustKit may send
	// none (null), which reads as "".
	DateTime                string  `json:"date-time"`
	Hostname                string  `json:"hostname"`
	Port                    int     `json:"port"`
	EffectiveExpirationDate *string `json:"effective-expiration-date"`
	IncludeSubdomains       bool    `json:"include-subdomains"`
	// NotedHostname is the name of the rule that applied: Hostname or a
	// domain above it.
	NotedHostname string `json:"noted-hostname"`
	// The chains are PEM certificates, leaf first. TrustKit sends only the
	// validated chain.
	ServedCertificateChain    []string `json:"served-certificate-chain"`
	ValidatedCertificateChain []string `json:"validated-certificate-chain"`
	// KnownPins are the rule's SPKI pins as RFC 7469 pin directives:
	// pin-sha256="<base64>".
	KnownPins []string `json:"known-pins"`

	// Mode is [pin.Enforce] or [pin.ReportOnly] as a string.
	Mode string `json:"rampart-mode"`
	// Reason is a [pin.Reason] as a string.
	Reason         string `json:"rampart-reason"`
	LibraryVersion string `json:"rampart-library-version"`
	// KnownCertPins are the rule's certificate pins ("cert-sha256:<hex>",
	// as [pin.Pin.String] writes them), which RFC 7469 has no directive
	// for; nil when the rule has none.
	KnownCertPins []string `json:"rampart-known-cert-pins,omitempty"`

	// TrustKit's members; empty in the reports New makes. A report with
	// AppBundleID or ValidationResult is TrustKit's.
	AppBundleID        string `json:"app-bundle-id,omitempty"`
	AppVersion         string `json:"app-version,omitempty"`
	AppPlatform        string `json:"app-platform,omitempty"`
	AppPlatformVersion string `json:"app-platform-version,omitempty"`
	// AppVendorID identifies the installation that sent the report.
	AppVendorID     string `json:"app-vendor-id,omitempty"`
	TrustKitVersion string `json:"trustkit-version,omitempty"`
	// EnforcePinning is TrustKit's mode: true for enforce.
	EnforcePinning *bool `json:"enforce-pinning,omitempty"`
	// ValidationResult is TrustKit's TSKTrustEvaluationResult, 1 to 5
	// (see [Report.Outcome]).
	ValidationResult int `json:"validation-result,omitempty"`
	// KnownPinsExpirationDate is TrustKit's expiry of the pins: a date or
	// an RFC 3339 time.
	KnownPinsExpirationDate *string `json:"known-pins-expiration-date,omitempty"`
}

// New builds the report of a failure.
func New(f *pin.Failure) *Report {
	d := f.Domain
	r := &Report{
		DateTime:                  f.Time.UTC().Format(time.RFC3339),
		Hostname:                  f.Host,
		Port:                      f.Port,
		IncludeSubdomains:         d.IncludeSubdomains,
		NotedHostname:             d.Name,
		ServedCertificateChain:    pemChain(f.Served),
		ValidatedCertificateChain: []string{},
		KnownPins:                 []string{},
		Mode:                      string(d.Mode),
		Reason:                    string(f.Reason),
		LibraryVersion:            version.Get(),
	}
	if len(f.Chains) > 0 {
		r.ValidatedCertificateChain = pemChain(f.Chains[0])
	}
	if exp := d.ExpiresAt(); !exp.IsZero() {
		s := exp.Format(time.RFC3339)
		r.EffectiveExpirationDate = &s
	}
	for _, p := range d.Pins {
		switch p.Kind() {
		case pin.SPKI:
			r.KnownPins = append(r.KnownPins, `pin-sha256="`+p.Base64()+`"`)
		case pin.Cert:
			r.KnownCertPins = append(r.KnownCertPins, p.String())
		}
	}
	return r
}

func pemChain(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return out
}

// Stats counts what a Reporter did with the failures it was given.
type Stats struct {
	Sent       uint64 // accepted by the collector (2xx)
	Failed     uint64 // could not be delivered
	Dropped    uint64 // queue full, or the Reporter was closed
	Duplicates uint64 // identical to one sent in the last 24 hours
	NoURI      uint64 // the rule has no report URI
}

// Reporter sends reports asynchronously. It implements [pin.Reporter]. The
// zero Reporter is ready to use; set the fields before first use and do
// not change them afterwards.
//
// Reports are sent by a goroutine that the first report of an empty
// queue starts and that ends once the queue is empty again (the model of
// net/http's Transport, whose connection goroutines come and go with the
// requests): there is nothing to start, and once [Reporter.Flush] has
// returned nothing runs. [Reporter.Close] stops accepting reports.
type Reporter struct {
	// Client posts the reports. If nil, a client with a 10-second timeout.
	// It should not be pinned by the policy being reported on. Redirects
	// are never followed, whatever the client's CheckRedirect.
	Client *http.Client
	// QueueSize bounds the reports waiting to be sent; 0 means 256.
	QueueSize int
	// Logger receives delivery failures. If nil, slog.Default().
	Logger *slog.Logger
	// Now is the clock of the 24-hour deduplication. If nil, time.Now.
	Now func() time.Time

	window dedup.Window

	mu      sync.Mutex
	queue   []queued        // waiting to be sent, oldest first
	sending bool            // the sender goroutine runs
	pending int             // queued or being sent
	waiters []chan struct{} // Flush calls waiting for pending == 0
	closed  bool

	sent, failed, dropped, duplicates, noURI atomic.Uint64
}

type queued struct {
	f   *pin.Failure
	key string
}

func (r *Reporter) queueSize() int {
	if r.QueueSize <= 0 {
		return 256
	}
	return r.QueueSize
}

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Report queues the report of f, unless an identical one was queued in the
// last 24 hours. It never blocks.
func (r *Reporter) Report(f *pin.Failure) {
	if f.Domain.ReportURI == "" {
		r.noURI.Add(1)
		return
	}
	key := dedupKey(f)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.dropped.Add(1)
		return
	}
	if !r.window.First(key, r.now()) {
		r.duplicates.Add(1)
		return
	}
	if len(r.queue) >= r.queueSize() {
		r.window.Forget(key)
		r.dropped.Add(1)
		return
	}
	r.queue = append(r.queue, queued{f, key})
	r.pending++
	if !r.sending {
		r.sending = true
		go r.run()
	}
}

// dedupKey is what makes two reports the same for the Reporter: the
// failure's key ([pin.Failure.Key]: everything but the time) and where the
// report goes.
func dedupKey(f *pin.Failure) string {
	return f.Key() + " " + f.Domain.ReportURI
}

// run sends the queued reports, oldest first, and returns when the
// queue is empty. Report starts it with one report queued.
func (r *Reporter) run() {
	for {
		r.mu.Lock()
		q := r.queue[0]
		r.queue[0] = queued{}
		r.queue = r.queue[1:]
		r.mu.Unlock()
		if err := r.send(q.f); err != nil {
			r.failed.Add(1)
			r.window.Forget(q.key) // let a later identical failure try again
			r.logger().Warn("pin/report: report not delivered", "uri", q.f.Domain.ReportURI, "host", q.f.Host, "err", err)
		} else {
			r.sent.Add(1)
		}
		r.mu.Lock()
		r.pending--
		done := len(r.queue) == 0
		if done {
			r.queue, r.sending = nil, false
			for _, w := range r.waiters {
				close(w)
			}
			r.waiters = nil
		}
		r.mu.Unlock()
		if done {
			return
		}
	}
}

func (r *Reporter) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

var defaultClient = &http.Client{Timeout: 10 * time.Second}

// noRedirects makes the collector's answer final: a redirect could send a
// report over plain http, or to the pinned host, past the checks the policy
// made on its report URI.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

const sendTimeout = 30 * time.Second

func (r *Reporter) send(f *pin.Failure) error {
	body, err := json.Marshal(New(f))
	if err != nil {
		return err
	}
	// Bound every delivery, whatever the client's own timeout, so that one
	// stuck collector cannot hold up the queue forever.
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.Domain.ReportURI, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rampart/"+version.Get())
	c := *defaultClient
	if r.Client != nil {
		c = *r.Client
	}
	c.CheckRedirect = noRedirects
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

// Flush waits until every queued report has been sent or has failed, or
// until ctx is done. When it returns nil the goroutine that sent them has
// ended, or is returning.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	if r.pending == 0 {
		r.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pin/report: flush: %w", ctx.Err())
	}
}

// Close stops accepting reports: those reported after it are dropped.
// Reports already queued are still sent, each within 30 s, and the
// sender then ends; call Flush, before or after Close, to wait for them.
// Close may be called twice.
func (r *Reporter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// Stats returns counters of what the Reporter did.
func (r *Reporter) Stats() Stats {
	return Stats{
		Sent:       r.sent.Load(),
		Failed:     r.failed.Load(),
		Dropped:    r.dropped.Load(),
		Duplicates: r.duplicates.Load(),
		NoURI:      r.noURI.Load(),
	}
}
