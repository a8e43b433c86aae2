package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// reportFlushWait bounds how long `pin get` waits for failure reports to be
// delivered before it exits.
const reportFlushWait = 5 * time.Second

func newGetCmd(stdio Stdio) *cobra.Command {
	var (
		policyFile, output string
		cf                 connectFlags
	)
	c := &cobra.Command{
		Use:   "get --policy FILE [--ca FILE] [--connect ADDR:PORT] [-o FILE] URL",
		Short: "Fetch an https URL through a pinned HTTP client",
		Long: `Make one HTTPS GET through the pin library's http.Client, exactly the code path
library users get, and write the response body to stdout (or -o FILE). Pin
failures are reported to the policy's report URIs, and the reports are
delivered (waiting at most 5 seconds) before the command exits.

Exit status: 0 a response arrived (whatever its HTTP status); 1 TLS or
pinning refused the server, or it could not be reached; 2 usage or policy
error.`,
		Example: `  rampart pin get --policy pins.yaml https://api.example.com/health
  rampart pin get --policy pins.yaml --ca dev-root.pem --connect 127.0.0.1:8443 https://api.example.test/`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			u, err := url.Parse(a[0])
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return usagef("%q: want an https:// URL", a[0])
			}
			policy, roots, err := cf.loadPolicy(policyFile)
			if err != nil {
				return err
			}
			connect := cf.connect
			if connect != "" {
				if _, _, err := net.SplitHostPort(connect); err != nil {
					return usagef("--connect %q: want ADDR:PORT", connect)
				}
			}

			reporter := &report.Reporter{Logger: stderrLogger(stdio.Err)}
			if roots != nil {
				// --ca is this command's trust store, for the reports too
				// (their connection is not pinned).
				rt := http.DefaultTransport.(*http.Transport).Clone()
				rt.TLSClientConfig = &tls.Config{RootCAs: roots}
				reporter.Client = &http.Client{Timeout: 10 * time.Second, Transport: rt}
			}
			v := pin.NewVerifier(policy)
			v.Reporter = reporter
			v.Logger = stderrLogger(stdio.Err)
			base := http.DefaultTransport.(*http.Transport).Clone()
			base.TLSClientConfig = &tls.Config{RootCAs: roots}
			if connect != "" {
				d := &net.Dialer{Timeout: cf.timeout}
				base.Proxy = nil
				base.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, connect)
				}
			}
			base.TLSHandshakeTimeout = cf.timeout
			base.ResponseHeaderTimeout = cf.timeout
			client, err := v.Client(base)
			if err != nil {
				return fail(ExitUsage, err)
			}
			var out *os.File
			if output != "" {
				// Before the request: a bad -o is a usage error, not a failed fetch.
				if out, err = os.Create(output); err != nil {
					return fail(ExitUsage, err)
				}
				defer out.Close()
			}
			err = doGet(c.Context(), client, u.String(), out, stdio)

			ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context()), reportFlushWait)
			defer cancel()
			if ferr := reporter.Flush(ctx); ferr != nil {
				fmt.Fprintf(stdio.Err, "rampart: warning: failure reports not delivered within %s\n", reportFlushWait)
			}
			reporter.Close()
			if s := reporter.Stats(); s.Sent > 0 {
				fmt.Fprintf(stdio.Err, "rampart: sent %d pin failure report(s)\n", s.Sent)
			}
			return err
		},
	}
	c.Flags().StringVar(&policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	c.Flags().StringVarP(&output, "output", "o", "", "write the body to `FILE` instead of stdout")
	cf.register(c)
	return c
}

// doGet fetches u and copies the body to out, or stdout when out is nil.
func doGet(ctx context.Context, client *http.Client, u string, out *os.File, stdio Stdio) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(ExitUsage, err)
	}
	req.Header.Set("User-Agent", "rampart-pin-get")
	resp, err := client.Do(req)
	if err != nil {
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
