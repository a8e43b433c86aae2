package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/pin"
)

// Statuses of `pin check`, stable in --json output.
const (
	statusOK                 = "ok"                   // pinned, a pin matches
	statusMismatch           = "mismatch"             // enforced and no pin matches: clients refuse
	statusUntrusted          = "untrusted"            // CA or host name verification failed: clients refuse
	statusUnreachable        = "unreachable"          // no TLS connection
	statusReportOnlyMismatch = "report-only-mismatch" // no pin matches; clients connect and report
	statusPinSetExpired      = "pin-set-expired"      // clients fall back to CA validation
	statusNotPinned          = "not-pinned"           // the policy has no rule for the host
	statusSCTMissing         = "sct-missing"          // a pin matches, the rule requires SCTs the certificate lacks
)

type checkResult struct {
	Domain        string         `json:"domain"`
	Port          int            `json:"port"`
	Address       string         `json:"address"`
	Status        string         `json:"status"`
	Rule          string         `json:"rule,omitempty"`
	Mode          string         `json:"mode,omitempty"`
	Match         *checkMatch    `json:"match,omitempty"`
	VerifiedChain []checkCert    `json:"verified_chain,omitempty"`
	ExpectedPins  []string       `json:"expected_pins,omitempty"`
	PinSetExpires string         `json:"pin_set_expires,omitempty"`
	Warnings      []checkWarning `json:"warnings"`
	Error         string         `json:"error,omitempty"`
	Hints         []string       `json:"hints,omitempty"`
	failure       bool
	label         string // the text output's name for it
}

type checkMatch struct {
	Pin      string `json:"pin"`
	Chain    int    `json:"chain"`
	Position int    `json:"position"`
	Subject  string `json:"subject"`
}

type checkCert struct {
	Position   int    `json:"position"`
	Subject    string `json:"subject"`
	NotAfter   string `json:"not_after,omitempty"`
	SPKISHA256 string `json:"spki_sha256"`
	CertSHA256 string `json:"cert_sha256"`
	CertPin    string `json:"cert_pin"`
}

type checkWarning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type checkSummary struct {
	Checked  int `json:"checked"`
	OK       int `json:"ok"`
	Failed   int `json:"failed"`
	Warnings int `json:"warnings"`
	Exit     int `json:"exit_code"`
}

type checkOutput struct {
	Results []checkResult `json:"results"`
	Summary checkSummary  `json:"summary"`
}

// checkLong is the help of rampart pin check.
const checkLong = `Connect to each DOMAIN (default: every domain named in the policy, port 443)
with the pin library's verifier, exactly as a pinned client does, and report:

  ok                    pinned, and a pin matches (which pin, at which position)
  mismatch              enforced, and no pin matches: pinned clients refuse
  untrusted             CA or host name verification failed: every client refuses
  unreachable           no TLS connection
  report-only-mismatch  no pin matches; clients connect and send reports
  pin-set-expired       the pin set has expired; clients do CA validation only
  not-pinned            the policy has no rule for the domain
  sct-missing           a pin matches, but the rule requires SCTs (require_scts)
                        the certificate lacks: enforcing clients refuse,
                        report-only ones connect and report

and warns about certificates or pin sets expiring within --warn-days. No
failure reports are sent. Chains and positions count from 0; position 0 is
the leaf. Domains are checked concurrently (--parallel, 8 by default);
results keep the order of the arguments. On a terminal a progress bar goes
to stderr; there is none when stderr is piped.

--json prints {"results": [...], "summary": {...}}. Each result has domain,
port, address (the address dialled), status (above), rule, mode, match {pin,
chain, position, subject}, verified_chain [{position, subject, not_after,
spki_sha256, cert_sha256, cert_pin}], expected_pins, pin_set_expires,
warnings [{code, message}], error and hints. Warning codes: not-pinned,
pin-set-expired, report-only-mismatch, sct-missing, cert-expiring,
pin-set-expiring. The
summary counts checked, ok, failed and warnings, and gives exit_code.

Exit status:
  0  every domain pinned and matching, no warnings
  1  a pinned client would refuse a server (mismatch, untrusted), or one is
     unreachable
  2  usage or policy error
  3  clients connect, but there are warnings (report-only mismatch, expired
     pin set, not pinned, expiring certificate or pin set)`

// checkOptions are rampart pin check's flags.
type checkOptions struct {
	policyFile string
	asJSON     bool
	warnDays   int
	parallel   int
	cf         connectFlags
}

func newCheckCmd(stdio Stdio) *cobra.Command {
	var o checkOptions
	c := &cobra.Command{
		Use:   "check --policy FILE [--ca FILE] [--connect ADDR:PORT] [--timeout DURATION] [--warn-days N] [--json] [DOMAIN[:PORT]...]",
		Short: "Check live servers against a pin policy, as a pinned client would",
		Long:  checkLong,
		Example: `  rampart pin check --policy pins.yaml
  rampart pin check --policy pins.yaml --ca staging-root.pem --connect 10.0.0.5:443 api.example.com`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(c *cobra.Command, domains []string) error {
			return o.run(c.Context(), stdio, domains)
		},
	}
	c.Flags().StringVar(&o.policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	c.Flags().BoolVar(&o.asJSON, "json", false, "print JSON (schema above)")
	c.Flags().IntVar(&o.warnDays, "warn-days", 30, "warn about certificates and pin sets expiring within `N` days")
	c.Flags().IntVar(&o.parallel, "parallel", 8, "check at most `N` domains at once")
	o.cf.register(c)
	return c
}

func (o *checkOptions) run(ctx context.Context, stdio Stdio, domains []string) error {
	if o.warnDays < 0 {
		return usagef("--warn-days must not be negative")
	}
	if o.parallel < 1 {
		return usagef("--parallel must be at least 1")
	}
	policy, roots, err := o.cf.loadPolicy(o.policyFile)
	if err != nil {
		return err
	}
	if len(domains) == 0 {
		for _, d := range policy.Domains() {
			domains = append(domains, d.Name)
		}
	}
	targets, err := parseTargets(domains)
	if err != nil {
		return err
	}
	addrs := make([]string, len(targets))
	for i, t := range targets {
		if addrs[i], err = o.cf.dialAddr(t); err != nil {
			return err
		}
	}
	now := time.Now()
	v := pin.NewVerifier(policy)
	v.Now = func() time.Time { return now }
	v.Logger = slog.New(slog.DiscardHandler) // the results say it all
	out := checkOutput{Results: make([]checkResult, len(targets))}
	bar := newProgress(stdio.Err, len(targets), "checking")
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.parallel)
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out.Results[i] = checkOne(ctx, v, t, addrs[i], roots, o.cf.timeout, now, o.warnDays)
			out.Results[i].label = o.cf.label(t)
			bar.Add(1)
		}()
	}
	wg.Wait()
	bar.Finish()
	out.Summary = summarize(out.Results)
	if o.asJSON {
		if err := writeJSON(stdio.Out, out); err != nil {
			return err
		}
	} else {
		printCheck(stdio.Out, out)
	}
	if out.Summary.Exit != ExitOK {
		return fail(out.Summary.Exit, nil)
	}
	return nil
}

func checkOne(ctx context.Context, v *pin.Verifier, t target, addr string, roots *x509.CertPool,
	timeout time.Duration, now time.Time, warnDays int) checkResult {
	r := checkResult{Domain: t.host, Port: t.port, Address: addr, Warnings: []checkWarning{}}
	warn := func(code, format string, args ...any) {
		r.Warnings = append(r.Warnings, checkWarning{code, fmt.Sprintf(format, args...)})
	}
	horizon := now.AddDate(0, 0, warnDays)
	rule := v.Policy().Match(t.host)
	if rule != nil {
		r.Rule, r.Mode = rule.Name, string(rule.Mode)
		for _, p := range rule.Pins {
			r.ExpectedPins = append(r.ExpectedPins, p.String())
		}
		if !rule.Expires.IsZero() {
			r.PinSetExpires = rule.Expires.Format(time.DateOnly)
			if !rule.Expired(now) && rule.ExpiresAt().Before(horizon) {
				warn("pin-set-expiring", "the pin set expires after %s (%s); clients then fall back to CA validation",
					r.PinSetExpires, inDays(daysUntil(now, rule.ExpiresAt())))
			}
		}
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := v.DialContext(ctx, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: t.host})
	if err != nil {
		var me *pin.MismatchError
		var ve *tls.CertificateVerificationError
		var se *pin.SCTError
		switch {
		case errors.As(err, &se):
			r.Status = statusSCTMissing
			r.Error = se.Error()
			r.Hints = []string{"the rule requires SCTs (require_scts): have the certificate logged in the policy's ct_logs (its CA embeds SCTs), or turn the rule's require_scts off"}
		case errors.As(err, &me):
			r.Status = statusMismatch
			for i, c := range me.Chains[0] {
				r.VerifiedChain = append(r.VerifiedChain, checkCert{Position: i, Subject: c.Subject,
					SPKISHA256: c.SPKI.String(), CertSHA256: strings.TrimPrefix(c.Cert.String(), "cert-sha256:"), CertPin: c.Cert.String()})
			}
			r.Error = "no pin matches the verified chain"
			r.Hints = []string{"if the server's key changed on purpose, check the new chain with 'rampart pin rollover --chain' and add its pin to the policy; if not, this connection is being intercepted"}
		case errors.As(err, &ve):
			r.Status = statusUntrusted
			r.Error = err.Error()
			r.Hints = verifyHints(err, ve.UnverifiedCertificates, roots != nil)
		default:
			r.Status = statusUnreachable
			r.Error = describeConnError(err, addr, timeout)
		}
		r.failure = true
		return r
	}
	cs := conn.ConnectionState()
	conn.Close()
	chain := cs.VerifiedChains[0]
	for i, c := range chain {
		d := describeCert(c)
		r.VerifiedChain = append(r.VerifiedChain, checkCert{Position: i, Subject: d.Subject, NotAfter: d.NotAfter,
			SPKISHA256: d.SPKISHA256, CertSHA256: d.CertSHA256, CertPin: d.CertPin})
		if c.NotAfter.Before(horizon) {
			warn("cert-expiring", "the certificate at position %d (%s) expires on %s (%s)",
				i, d.Subject, c.NotAfter.UTC().Format(time.DateOnly), inDays(daysUntil(now, c.NotAfter)))
		}
	}
	res := v.Policy().Check(t.host, cs.VerifiedChains, now)
	switch {
	case res.Domain == nil:
		r.Status = statusNotPinned
		warn(statusNotPinned, "not pinned by this policy: clients do CA validation only")
	case res.Expired:
		r.Status = statusPinSetExpired
		warn(statusPinSetExpired, "the pin set expired after %s: clients do CA validation only", r.PinSetExpires)
	case !res.Matched:
		r.Status = statusReportOnlyMismatch
		warn(statusReportOnlyMismatch, "no pin matches; report-only clients connect and report, enforcing clients would refuse")
	default:
		r.Status = statusOK
		r.Match = &checkMatch{Pin: res.Pin.String(), Chain: res.Chain, Position: res.Position,
			Subject: cs.VerifiedChains[res.Chain][res.Position].Subject.String()}
		if se := v.Policy().CheckSCTs(t.host, &cs, now); se != nil {
			// Enforcing rules refused the handshake above; this one is
			// report-only.
			r.Status = statusSCTMissing
			warn(statusSCTMissing, "%s; report-only clients connect and report, enforcing clients would refuse", se.Error())
		}
	}
	return r
}

// daysUntil counts whole days from now to t, rounding up.
func daysUntil(now, t time.Time) int {
	d := t.Sub(now)
	return int((d + 24*time.Hour - 1) / (24 * time.Hour))
}

func inDays(n int) string {
	if n == 1 {
		return "in 1 day"
	}
	return fmt.Sprintf("in %d days", n)
}

func summarize(results []checkResult) checkSummary {
	s := checkSummary{Checked: len(results)}
	for _, r := range results {
		switch {
		case r.failure:
			s.Failed++
		case len(r.Warnings) > 0:
			s.Warnings++
		default:
			s.OK++
		}
	}
	switch {
	case s.Failed > 0:
		s.Exit = ExitFailure
	case s.Warnings > 0:
		s.Exit = ExitWarning
	}
	return s
}

func printCheck(w io.Writer, out checkOutput) {
	for _, r := range out.Results {
		label := "ok"
		switch {
		case r.failure:
			label = "FAIL"
		case len(r.Warnings) > 0:
			label = "warn"
		}
		fmt.Fprintf(w, "%-4s  %s", label, r.label)
		if r.Status != label {
			fmt.Fprintf(w, "  %s", r.Status)
		}
		if r.Rule != "" && r.Rule != r.Domain {
			fmt.Fprintf(w, " (rule %s)", r.Rule)
		}
		fmt.Fprintln(w)
		if r.Match != nil {
			fmt.Fprintf(w, "      %s matches chain %d position %d (%s)\n", r.Match.Pin, r.Match.Chain, r.Match.Position, r.Match.Subject)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(r.Error, "\n", "\n      "))
		}
		if r.Status == statusMismatch || r.Status == statusReportOnlyMismatch {
			fmt.Fprintf(w, "      verified chain 0:\n")
			for _, c := range r.VerifiedChain {
				fmt.Fprintf(w, "        %d %s %s\n", c.Position, c.SPKISHA256, c.Subject)
			}
			fmt.Fprintf(w, "      pinned:\n")
			for _, p := range r.ExpectedPins {
				fmt.Fprintf(w, "        %s\n", p)
			}
		}
		for _, wn := range r.Warnings {
			if wn.Code != r.Status {
				fmt.Fprintf(w, "      warning: %s\n", wn.Message)
			} else {
				fmt.Fprintf(w, "      %s\n", wn.Message)
			}
		}
		for _, h := range r.Hints {
			fmt.Fprintf(w, "      hint: %s\n", h)
		}
	}
	s := out.Summary
	fmt.Fprintf(w, "%d checked: %d ok, %d failed, %d with warnings\n", s.Checked, s.OK, s.Failed, s.Warnings)
}
