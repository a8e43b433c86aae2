// Package cli implements the rampart command line. [Run] is the whole
// program; cmd/rampart only calls it, so tests run the CLI in-process or as a
// subprocess with the same code.
//
// Conventions: data goes to stdout, diagnostics to stderr prefixed
// "rampart: ". Exit codes are the Exit constants. --json output is a
// documented, stable schema (docs/cli.md).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rampartsec/rampart/internal/util/version"
)

// Exit codes of every command.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the check failed: a pinned client would refuse, or a host is unreachable
	ExitUsage   = 2 // bad usage, unreadable input or an invalid policy
	ExitWarning = 3 // clients connect, but there are warnings
)

const exitCodesHelp = `Exit status:
  0  success
  1  failure: a pinned client would refuse the server, or it is unreachable
  2  usage error, unreadable input, or invalid policy
  3  warnings: clients connect but something needs attention (check),
     or the policy has warnings (lint)`

// Stdio is where a command reads and writes.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// exitError carries an exit code up to Run. Commands return it for
// outcomes other than usage errors; any other error exits ExitUsage.
type exitError struct {
	code int
	err  error // nil: the command already printed what it had to say
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// fail returns an error that exits with code after printing err (if any).
func fail(code int, err error) error { return &exitError{code: code, err: err} }

// usageError marks errors about how the command was called, which get a
// pointer to --help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// Run runs the rampart command line with args (without the program name)
// and returns the exit code.
func Run(ctx context.Context, args []string, stdio Stdio) int {
	root := newRoot(stdio)
	if c, name := unknownSubcommand(root, args); c != nil {
		// cobra runs a parent command, or prints its help with --help and
		// exits 0, when the word after it names no subcommand.
		fmt.Fprintf(stdio.Err, "rampart: unknown command %q for %q\n", name, c.CommandPath())
		fmt.Fprintf(stdio.Err, "rampart: see '%s --help'\n", c.CommandPath())
		return ExitUsage
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitUsage
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
		err = ee.err
	}
	fmt.Fprintf(stdio.Err, "rampart: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || ee == nil {
		fmt.Fprintf(stdio.Err, "rampart: see '%s --help'\n", cmd.CommandPath())
	}
	return code
}

// unknownSubcommand returns the command args lead to and the word that
// follows it when that command only groups subcommands and the word is
// none of them (nil otherwise; the root's own check covers the root).
func unknownSubcommand(root *cobra.Command, args []string) (*cobra.Command, string) {
	c, rest, err := root.Find(args)
	if err != nil || c == root || !c.HasSubCommands() {
		return nil, ""
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			return nil, ""
		case !strings.HasPrefix(a, "-") || a == "-":
			return c, a
		case strings.Contains(a, "="):
			continue
		}
		var f *pflag.Flag
		if strings.HasPrefix(a, "--") {
			f = c.Flags().Lookup(a[2:])
		} else if len(a) == 2 {
			f = c.Flags().ShorthandLookup(a[1:])
		}
		if f == nil {
			return nil, "" // cobra says which flag it does not know
		}
		if f.NoOptDefVal == "" {
			i++ // the flag's value
		}
	}
	return nil, ""
}

func newVersionCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Long: `Print the version of this binary: a release, or "(devel)" and the commit for a
build from a checkout (go build records it; go run and -buildvcs=false do
not), then the Go version and platform.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(stdio.Out, "rampart %s %s %s/%s\n", version.Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func newRoot(stdio Stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "rampart",
		Short: "Make attacks on payment APIs fail at the boundary",
		Long: `Rampart makes attacks on payment APIs fail at the boundary:

  pin, bundle     pin the keys of your servers in clients, so that a certificate
                  from a compromised CA is refused; signed pin updates
  serve           the control plane: failure reports and a dashboard, signed
                  bundles, the OAuth2 token server, certificate renewal
  client, apikey, token
                  clients, API keys rotated with a grace period, signing keys
  ca              the internal CA for mutual TLS between services
  gateway         the edge: TLS, CORS, rate limits, API keys and tokens,
                  mutual TLS to the services

Start with 'rampart demo', then 'rampart COMMAND --help'.

` + exitCodesHelp,
		Version:       version.Get(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newPinCmd(stdio), newBundleCmd(stdio), newServeCmd(stdio), newClientCmd(stdio), newAPIKeyCmd(stdio), newTokenCmd(stdio), newCACmd(stdio), newGatewayCmd(stdio), newAuthzCmd(stdio), newCTCmd(stdio), newDemoCmd(stdio), newVersionCmd(stdio))
	return root
}

func newPinCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "pin",
		Short: "Compute, fetch and check certificate and public-key pins",
		Long: `Compute, fetch and check certificate and public-key pins.

A pin is "sha256/" and the base64 SHA-256 of a certificate's public key
(SubjectPublicKeyInfo), the format of HPKP, OkHttp, Android and TrustKit. A
certificate fingerprint pin, "cert-sha256:" and the hex SHA-256 of the whole
certificate, breaks on every renewal and is for the rare case that needs it.

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newHashCmd(stdio), newFetchCmd(stdio), newCheckCmd(stdio), newGetCmd(stdio),
		newExportCmd(stdio), newRolloverCmd(stdio), newKeygenCmd(stdio), newLintCmd(stdio))
	return c
}

// args wraps cobra's argument validators so that their errors count as
// usage errors.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := v(c, a); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// stderrLogger logs library warnings to w as one line each:
// "rampart: warning: MESSAGE (key=value, ...)".
func stderrLogger(w io.Writer) *slog.Logger {
	return slog.New(&lineHandler{w: w})
}

type lineHandler struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	level := "warning"
	if r.Level >= slog.LevelError {
		level = "error"
	}
	fmt.Fprintf(&b, "rampart: %s: %s", level, strings.TrimPrefix(r.Message, "pin: "))
	var kv []string
	for _, a := range h.attrs {
		kv = append(kv, a.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		kv = append(kv, a.String())
		return true
	})
	if len(kv) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(kv, ", "))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
