package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// reportFlushWait bounds how long `pin get` waits for failure reports to be
// delivered before it exits.
const reportFlushWait = 5 * time.Second

const getLong = `Make one HTTPS GET through the pin library's http.Client, exactly the code path
library users get, and write the response body to stdout (or -o FILE). Pin
failures are reported to the policy's report URIs, and the reports are
delivered (waiting at most 5 seconds) before the command exits.

--ca FILE replaces the system roots for the URL's server. Report URIs are
not pinned; their server is checked against --report-ca FILE, or when it is
not given against --ca FILE, or the system roots. A control plane with a
certificate of its own CA (rampart ca) needs --report-ca.

Exit status: 0 a response arrived (whatever its HTTP status); 1 TLS or
pinning refused the server, or it could not be reached; 2 usage or policy
error.`

// getOptions are pin get's flags.
type getOptions struct {
	policyFile, output, reportCA string
	cf                           connectFlags
}

func newGetCmd(stdio Stdio) *cobra.Command {
	var o getOptions
	c := &cobra.Command{
		Use:   "get --policy FILE [--ca FILE] [--report-ca FILE] [--connect ADDR:PORT] [--timeout DURATION] [-o FILE] URL",
		Short: "Fetch an https URL through a pinned HTTP client",
		Long:  getLong,
		Example: `  rampart pin get --policy pins.yaml https://api.example.com/health
  rampart pin get --policy pins.yaml --ca dev-root.pem --connect 127.0.0.1:8443 https://api.example.test/
  rampart pin get --policy pins.yaml --ca dev-root.pem --report-ca cp-root.pem https://api.example.test/`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error { return runGet(c.Context(), stdio, &o, a[0]) },
	}
	c.Flags().StringVar(&o.policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	c.Flags().StringVarP(&o.output, "output", "o", "", "write the body to `FILE` instead of stdout")
	c.Flags().StringVar(&o.reportCA, "report-ca", "", "trust only the CA certificates in this PEM `FILE` for delivering failure reports (default: --ca)")
	o.cf.register(c)
	return c
}

// runGet is pin get of rawURL: one GET through the library's pinned
// client, then the failure reports delivered.
func runGet(ctx context.Context, stdio Stdio, o *getOptions, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return usagef("%q: want an https:// URL", rawURL)
	}
	policy, roots, err := o.cf.loadPolicy(o.policyFile)
	if err != nil {
		return err
	}
	connect := o.cf.connect
	if connect != "" {
		if _, _, err := net.SplitHostPort(connect); err != nil {
			return usagef("--connect %q: want ADDR:PORT", connect)
		}
	}
	reportRoots := roots
	if o.reportCA != "" {
		if reportRoots, err = loadPool("--report-ca", o.reportCA); err != nil {
			return err
		}
	}
	rep := newGetReporter(stdio, reportRoots)
	client, err := o.client(stdio, policy, roots, rep.sent)
	if err != nil {
		return err
	}
	var out *os.File
	if o.output != "" {
		// Before the request: a bad -o is a usage error, not a failed fetch.
		if out, err = os.Create(o.output); err != nil {
			return fail(ExitUsage, err)
		}
		defer out.Close()
	}
	addr := connect
	if addr == "" {
		addr = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "443"))
	}
	err = doGet(ctx, client, u.String(), addr, o.cf.timeout, out, stdio)
	rep.finish(ctx, stdio, o, roots != nil)
	return err
}

// getReporter delivers pin get's failure reports. Report URIs are not
// pinned (a report must get out when pins fail); delivery failures that a
// trust store explains get a hint.
type getReporter struct {
	reporter *report.Reporter
	sent     *reportedURIs
	delivery *deliveryErrors
}

func newGetReporter(stdio Stdio, roots *x509.CertPool) *getReporter {
	rt := http.DefaultTransport.(*http.Transport).Clone()
	rt.TLSClientConfig = &tls.Config{RootCAs: roots}
	g := &getReporter{delivery: &deliveryErrors{next: rt}}
	g.reporter = &report.Reporter{
		Logger: stderrLogger(stdio.Err),
		Client: &http.Client{Timeout: 10 * time.Second, Transport: g.delivery},
	}
	g.sent = &reportedURIs{next: g.reporter}
	return g
}

// client is the library's pinned client for policy, dialling --connect
// when given.
func (o *getOptions) client(stdio Stdio, policy *pin.Policy, roots *x509.CertPool, reporter pin.Reporter) (*http.Client, error) {
	v := pin.NewVerifier(policy)
	v.Reporter = reporter
	// A refusal is this command's error, printed with the chains when it
	// exits; the log line would only repeat it.
	v.Logger = slog.New(warningsOnly{stderrLogger(stdio.Err).Handler()})
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: roots}
	d := &net.Dialer{Timeout: o.cf.timeout}
	if connect := o.cf.connect; connect != "" {
		base.Proxy = nil
		base.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, connect)
		}
	} else {
		base.DialContext = d.DialContext
	}
	base.TLSHandshakeTimeout = o.cf.timeout
	base.ResponseHeaderTimeout = o.cf.timeout
	client, err := v.Client(base)
	if err != nil {
		return nil, fail(ExitUsage, err)
	}
	return client, nil
}

// finish delivers the reports (waiting at most reportFlushWait) and says
// what became of them.
func (g *getReporter) finish(ctx context.Context, stdio Stdio, o *getOptions, withCA bool) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportFlushWait)
	defer cancel()
	if ferr := g.reporter.Flush(fctx); ferr != nil {
		fmt.Fprintf(stdio.Err, "rampart: warning: failure reports to %s not delivered within %s\n",
			strings.Join(g.sent.uris(), ", "), reportFlushWait)
	}
	g.reporter.Close()
	if s := g.reporter.Stats(); s.Sent > 0 {
		fmt.Fprintf(stdio.Err, "rampart: sent %d pin failure report(s)\n", s.Sent)
	}
	if g.delivery.untrusted.Load() {
		which := "the system roots"
		switch {
		case o.reportCA != "":
			which = "--report-ca " + o.reportCA
		case withCA:
			which = "--ca " + o.cf.ca
		}
		fmt.Fprintf(stdio.Err, "rampart: hint: the report collector's certificate is not trusted by %s; pass its CA with --report-ca FILE\n", which)
	}
}

// doGet fetches u and copies the body to out, or stdout when out is nil.
// addr is where the connection goes, for messages.
func doGet(ctx context.Context, client *http.Client, u, addr string, timeout time.Duration, out *os.File, stdio Stdio) error {
	var steps getSteps
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, steps.trace()), http.MethodGet, u, nil)
	if err != nil {
		return fail(ExitUsage, err)
	}
	req.Header.Set("User-Agent", "rampart-pin-get")
	resp, err := client.Do(req)
	if err != nil {
		var me *pin.MismatchError
		switch {
		case errors.As(err, &me):
			fmt.Fprintf(stdio.Err, "rampart: %v\n", err)
			fmt.Fprintf(stdio.Err, "rampart: hint: if the server's key changed on purpose, check the new chain with 'rampart pin rollover --chain' and add its pin to the policy; if not, this connection is being intercepted\n")
			return fail(ExitFailure, nil)
		case isTimeout(err):
			return fail(ExitFailure, fmt.Errorf("GET %s: %s", u, steps.timedOut(addr, timeout)))
		}
		return fail(ExitFailure, err)
	}
	defer resp.Body.Close()
	w := stdio.Out
	if out != nil {
		w = out
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fail(ExitFailure, fmt.Errorf("reading response: %w", err))
	}
	if out != nil {
		if err := out.Close(); err != nil {
			return fail(ExitFailure, err)
		}
	}
	if resp.StatusCode >= 400 {
		fmt.Fprintf(stdio.Err, "rampart: server answered %s\n", resp.Status)
	}
	return nil
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

// getSteps follows a request through its connection, so that a timeout
// can say which step did not finish.
type getSteps struct {
	connected, gotConn, wrote atomic.Bool
}

func (s *getSteps) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				s.connected.Store(true)
			}
		},
		GotConn:      func(httptrace.GotConnInfo) { s.gotConn.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) { s.wrote.Store(i.Err == nil) },
	}
}

func (s *getSteps) timedOut(addr string, timeout time.Duration) string {
	switch {
	case s.wrote.Load():
		return fmt.Sprintf("connected to %s and sent the request, but no response within %s (--timeout)", addr, timeout)
	case s.gotConn.Load():
		return fmt.Sprintf("connected to %s, but the request could not be sent within %s (--timeout)", addr, timeout)
	case s.connected.Load():
		return fmt.Sprintf("TCP connected to %s, but the TLS handshake did not finish within %s (--timeout)", addr, timeout)
	}
	return fmt.Sprintf("no TCP connection to %s within %s (--timeout)", addr, timeout)
}

// warningsOnly passes on warnings, not errors: for a library whose errors
// the command reports itself.
type warningsOnly struct{ slog.Handler }

func (h warningsOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l < slog.LevelError && h.Handler.Enabled(ctx, l)
}

func (h warningsOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return warningsOnly{h.Handler.WithAttrs(as)}
}

func (h warningsOnly) WithGroup(name string) slog.Handler {
	return warningsOnly{h.Handler.WithGroup(name)}
}

// reportedURIs is a pin.Reporter that remembers where reports went.
type reportedURIs struct {
	next pin.Reporter
	mu   sync.Mutex
	seen []string
}

func (r *reportedURIs) Report(f *pin.Failure) {
	r.mu.Lock()
	if u := f.Domain.ReportURI; u != "" && !slices.Contains(r.seen, u) {
		r.seen = append(r.seen, u)
	}
	r.mu.Unlock()
	r.next.Report(f)
}

func (r *reportedURIs) uris() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// deliveryErrors is the report client's transport; it notes a collector
// whose certificate the trust store does not verify.
type deliveryErrors struct {
	next      http.RoundTripper
	untrusted atomic.Bool
}

func (d *deliveryErrors) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(req)
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		d.untrusted.Store(true)
	}
	return resp, err
}
