package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/util/pinlint"
)

type lintOutput struct {
	Findings []pinlint.Finding `json:"findings"`
	Summary  struct {
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
		Exit     int `json:"exit_code"`
	} `json:"summary"`
}

// lintLong is the help of rampart pin lint.
const lintLong = `Review a pin policy offline, reporting every problem at once (a malformed pin
hides nothing else), grouped by domain in the policy's order, each under the
name of its check:

  errors (the policy would not load, or pins far more than intended)
    invalid                 syntax, unknown fields, malformed pins or URIs
    single-pin              an enforced rule with one pin and no opt-out
    backup-equals-primary   a pin listed twice
    duplicate-domain        two rules for one name
    report-loop             a report URI on the pinned domain itself
    public-suffix           include_subdomains on a public suffix (co.uk, github.io)
  warnings
    single-pin              one pin, with allow_single_pin or in report-only mode
    no-backup               every pin a leaf key, no backup and no CA pin
    certificate-pins-only   every pin a certificate fingerprint
    expired                 the pin set has expired
    expiring-soon           the pin set expires within --warn-days (30)
    ip-address              a rule for an IP address
    report-uri-pinned       a report URI on a host another rule pins

--json prints {"findings": [{domain, rule, severity, message}], "summary":
{errors, warnings, exit_code}}.

Exit status: 0 clean; 2 errors; 3 warnings only.`

func newLintCmd(stdio Stdio) *cobra.Command {
	var (
		policyFile string
		asJSON     bool
		warnDays   int
	)
	c := &cobra.Command{
		Use:     "lint --policy FILE [--json]",
		Short:   "Review a policy offline for what breaks apps",
		Long:    lintLong,
		Example: `  rampart pin lint --policy pins.yaml`,
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if policyFile == "" {
				return usagef("--policy is required")
			}
			var out lintOutput
			out.Findings = pinlint.File(policyFile, pinlint.Options{WarnDays: warnDays})
			if out.Findings == nil {
				out.Findings = []pinlint.Finding{}
			}
			out.Summary.Errors, out.Summary.Warnings = pinlint.Counts(out.Findings)
			switch {
			case out.Summary.Errors > 0:
				out.Summary.Exit = ExitUsage
			case out.Summary.Warnings > 0:
				out.Summary.Exit = ExitWarning
			}
			if asJSON {
				if err := writeJSON(stdio.Out, out); err != nil {
					return err
				}
			} else {
				// Grouped by rule, in the policy's order (pinlint sorts them).
				for i, f := range out.Findings {
					if i == 0 || f.Domain != out.Findings[i-1].Domain {
						domain := f.Domain
						if domain == "" {
							domain = "(policy)"
						}
						fmt.Fprintln(stdio.Out, domain)
					}
					fmt.Fprintf(stdio.Out, "  %-7s  %s: %s\n", f.Severity, f.Rule, f.Message)
				}
				if len(out.Findings) == 0 {
					fmt.Fprintf(stdio.Out, "%s: no problems found\n", policyFile)
				} else {
					fmt.Fprintf(stdio.Out, "%s: %d error(s), %d warning(s)\n", policyFile, out.Summary.Errors, out.Summary.Warnings)
				}
			}
			if out.Summary.Exit != ExitOK {
				return fail(out.Summary.Exit, nil)
			}
			return nil
		},
	}
	c.Flags().StringVar(&policyFile, "policy", "", "pin policy `FILE`")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema above)")
	c.Flags().IntVar(&warnDays, "warn-days", 30, "warn about pin sets expiring within `N` days")
	return c
}
