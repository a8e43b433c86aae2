package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/util/safetext"
	"github.com/rampartsec/rampart/pin"
)

func newCTCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "ct",
		Short: "Certificate Transparency: find certificates logged for pinned domains",
		Args:  args(cobra.NoArgs),
		RunE:  func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newCTCheckCmd(stdio))
	return c
}

const ctCheckLong = `Read Certificate Transparency logs and judge every certificate logged for
the policy's domains by its key, against the pins:

  rogue          no pin of the rule matches any key of the chain the log
                 recorded: pinned clients refuse it, every other client
                 accepts it
  rollover       the rule's backup key is in use and nobody announced it
  unparsed       a certificate that cannot be read mentions a watched name
  unpinned-name  a name of the organisation (--watch) without pins
  expected       a pin matches (the key in use, a CA pin), or the
                 certificate or its key was announced (--expect)

--logs is a log list in the v3 JSON schema (operators[].logs[] for RFC 6962
logs, operators[].tiled_logs[] for static-ct-api logs), a file or an http(s)
URL. Every tree head's signature, the consistency of successive heads and
every entry are verified against the log's key before a certificate is
judged; a log that fails or misbehaves is reported and fails the check.

Without --since the logs are read from their first entry; with it, from
the entries logged at that date (YYYY-MM-DD or RFC 3339), found by binary
search. --expect FILE lists announced keys and certificates:

  expected:
    - spki: sha256/...          # a planned renewal's key
      domain: api.example.com   # optional
      until: 2027-01-31         # optional, inclusive
    - tbs: <hex SHA-256>        # one certificate, by its TBS hash

--json prints {"findings": [...], "logs": [...], "summary": {...}}
(docs/ct.md), rogue certificates first.

Exit status: 0 nothing to report; 1 a rogue certificate, or a log that could
not be read or misbehaved; 2 usage or unreadable input; 3 rollovers or
unparsed certificates only.`

type ctLogJSON struct {
	Log          string `json:"log"`
	LogID        string `json:"log_id"`
	URL          string `json:"url"`
	Tiled        bool   `json:"tiled"`
	TreeSize     int64  `json:"tree_size"`
	Judged       int64  `json:"judged"`
	Unparsed     int64  `json:"unparsed"`
	Error        string `json:"error,omitempty"`
	Misbehaviour string `json:"misbehaviour,omitempty"`
	Stale        string `json:"stale,omitempty"`
}

type ctCheckJSON struct {
	Findings []*ct.Finding `json:"findings"`
	Logs     []ctLogJSON   `json:"logs"`
	Summary  struct {
		Rogue        int `json:"rogue"`
		Rollover     int `json:"rollover"`
		Unparsed     int `json:"unparsed"`
		UnpinnedName int `json:"unpinned_name"`
		Expected     int `json:"expected"`
		FailedLogs   int `json:"failed_logs"`
		Exit         int `json:"exit_code"`
	} `json:"summary"`
}

func newCTCheckCmd(stdio Stdio) *cobra.Command {
	var (
		policyFile, logsSpec, since, expectFile string
		watch                                   []string
		asJSON                                  bool
		timeout                                 time.Duration
	)
	c := &cobra.Command{
		Use:   "check --policy FILE --logs FILE|URL [--since DATE] [--watch DOMAIN]... [--expect FILE] [--json]",
		Short: "Audit CT logs for certificates of the pinned domains",
		Long:  ctCheckLong,
		Example: `  rampart ct check --policy pins.yaml --logs log_list.json --since 2026-11-01
  rampart ct check --policy pins.yaml --logs https://www.gstatic.com/ct/log_list/v3/log_list.json --since 2026-12-01 --json`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if policyFile == "" || logsSpec == "" {
				return usagef("--policy and --logs are required")
			}
			policy, err := pin.LoadPolicy(policyFile)
			if err != nil {
				return err
			}
			var start ct.Start
			if since != "" {
				t, err := parseSince(since)
				if err != nil {
					return usagef("--since: %v", err)
				}
				start.Since = t
			} else {
				start.Beginning = true
			}
			var announced []ct.Announcement
			if expectFile != "" {
				if announced, err = ct.LoadAnnouncements(expectFile); err != nil {
					return err
				}
			}
			judge, err := ct.NewJudge(policy, watch, announced)
			if err != nil {
				return usagef("--watch: %v", err)
			}
			client := &http.Client{Timeout: timeout}
			logs, err := ct.ReadLogList(c.Context(), client, logsSpec)
			if err != nil {
				return err
			}
			out := runCTCheck(c.Context(), &ct.Monitor{Logs: logs, Judge: judge, Start: start, Client: client})
			if asJSON {
				if err := writeJSON(stdio.Out, out); err != nil {
					return err
				}
			} else {
				printCTCheck(stdio.Out, &out)
			}
			for _, l := range out.Logs {
				if l.Misbehaviour != "" {
					fmt.Fprintf(stdio.Err, "rampart: log %q misbehaved: %s\n", l.Log, l.Misbehaviour)
				} else if l.Error != "" {
					fmt.Fprintf(stdio.Err, "rampart: log %q: %s\n", l.Log, l.Error)
				}
			}
			if out.Summary.Exit != ExitOK {
				return fail(out.Summary.Exit, nil)
			}
			return nil
		},
	}
	c.Flags().StringVar(&policyFile, "policy", "", "pin policy `FILE`")
	c.Flags().StringVar(&logsSpec, "logs", "", "log list (v3 JSON) `FILE or URL`")
	c.Flags().StringVar(&since, "since", "", "start at the entries logged on `DATE` (YYYY-MM-DD or RFC 3339); default: the logs' first entry")
	c.Flags().StringArrayVar(&watch, "watch", nil, "also report certificates for `DOMAIN` and its subdomains (unpinned names); repeatable")
	c.Flags().StringVar(&expectFile, "expect", "", "announced keys and certificates (`FILE`, YAML)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (docs/ct.md)")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "timeout of each request to a log")
	return c
}

// runCTCheck brings m's logs up to their heads and summarizes what it
// found, worst first.
func runCTCheck(ctx context.Context, m *ct.Monitor) ctCheckJSON {
	var mu sync.Mutex
	var out ctCheckJSON
	out.Findings = []*ct.Finding{}
	m.Sink = ct.SinkFunc(func(_ context.Context, f *ct.Finding) error {
		mu.Lock()
		defer mu.Unlock()
		out.Findings = append(out.Findings, f)
		return nil
	})
	m.Once(ctx) // each log's error is in its status
	slices.SortStableFunc(out.Findings, func(a, b *ct.Finding) int {
		if d := b.Verdict.Class.Severity() - a.Verdict.Class.Severity(); d != 0 {
			return d
		}
		return cmp.Or(strings.Compare(a.Log.Name(), b.Log.Name()), cmp.Compare(a.Index, b.Index))
	})
	counts := map[ct.Class]*int{ct.Rogue: &out.Summary.Rogue, ct.Rollover: &out.Summary.Rollover, ct.Unparsed: &out.Summary.Unparsed,
		ct.UnpinnedName: &out.Summary.UnpinnedName, ct.Expected: &out.Summary.Expected}
	for _, f := range out.Findings {
		if n := counts[f.Verdict.Class]; n != nil {
			*n++
		}
	}
	for _, s := range m.Status() {
		lj := ctLogJSON{Log: s.Log.Name(), LogID: s.Log.IDString(), URL: s.Log.URL, Tiled: s.Log.Tiled,
			TreeSize: s.Head.Size, Judged: s.Judged, Unparsed: s.Unparsed, Error: s.LastError, Misbehaviour: s.Misbehaviour, Stale: s.Stale}
		if lj.Error != "" || lj.Misbehaviour != "" || lj.Stale != "" {
			out.Summary.FailedLogs++
		}
		out.Logs = append(out.Logs, lj)
	}
	switch {
	case out.Summary.Rogue > 0 || out.Summary.FailedLogs > 0:
		out.Summary.Exit = ExitFailure
	case out.Summary.Rollover > 0 || out.Summary.Unparsed > 0:
		out.Summary.Exit = ExitWarning
	}
	return out
}

func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date (YYYY-MM-DD) or an RFC 3339 time", s)
	}
	return t, nil
}

// printCTCheck writes the findings for a terminal. Names, issuers and
// parse errors come from certificates anyone can log: control characters
// are escaped, never written to the terminal.
func printCTCheck(w io.Writer, out *ctCheckJSON) {
	clean := func(s string) string { return safetext.Clean(s, 512) }
	for _, f := range out.Findings {
		what := "certificate"
		if f.Precert {
			what = "precertificate"
		}
		fmt.Fprintf(w, "%-13s %s  %s  log %q #%d  %s\n", strings.ToUpper(string(f.Verdict.Class)), clean(strings.Join(f.Verdict.Names, ",")),
			what, f.Log.Name(), f.Index, f.Timestamp.UTC().Format(time.RFC3339))
		if c := f.Certificate; c != nil {
			fmt.Fprintf(w, "              issuer %q  key %s  serial %s\n", clean(c.Issuer), f.Verdict.SPKI, c.Serial)
		} else {
			fmt.Fprintf(w, "              unreadable: %s\n", clean(f.ParseError))
		}
		for _, r := range f.Verdict.Rules {
			detail := "no pin matches any key of the chain"
			if !r.Pin.IsZero() {
				detail = fmt.Sprintf("pin %s (%s) at chain position %d", r.Pin, cmp.Or(string(r.Role), "no role"), r.Position)
			}
			if r.Announced {
				detail += ", announced"
			}
			if r.Expired {
				detail += ", pins expired"
			}
			fmt.Fprintf(w, "              rule %s (%s): %s: %s\n", r.Rule, r.Mode, r.Class, detail)
		}
	}
	for _, l := range out.Logs {
		state := "ok"
		switch {
		case l.Misbehaviour != "":
			state = "MISBEHAVED"
		case l.Error != "":
			state = "FAILED"
		case l.Stale != "":
			state = "STALE"
		}
		unreadable := ""
		if l.Unparsed > 0 {
			unreadable = fmt.Sprintf(" (%d unreadable)", l.Unparsed)
		}
		fmt.Fprintf(w, "log %q: %s, tree size %d, %d entries judged%s\n", l.Log, state, l.TreeSize, l.Judged, unreadable)
	}
	s := out.Summary
	fmt.Fprintf(w, "%d rogue, %d rollover, %d unparsed, %d unpinned-name, %d expected; %d of %d logs failed\n",
		s.Rogue, s.Rollover, s.Unparsed, s.UnpinnedName, s.Expected, s.FailedLogs, len(out.Logs))
}
