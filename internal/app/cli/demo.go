package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/demo"
)

func newDemoCmd(stdio Stdio) *cobra.Command {
	var o demo.Options
	c := &cobra.Command{
		Use:   "demo [--check] [--dir DIR]",
		Short: "Run the pinning demo on this machine (no external service)",
		Long: `Start a payment API, an attacker holding a valid certificate from a compromised
CA that clients trust, a renewal on the offline backup key, and a report
collector, all on 127.0.0.1. Then check that pinned clients refuse the
attacker and keep working through the renewal, print the results and
commands to try by hand, and serve until Ctrl-C.

--check prints the checklist and exits: 0 when every row passes, 1 otherwise.
--dir keeps the demo's files (trust store, policy, backup key) in DIR.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			o.Out = stdio.Out
			err := demo.Run(c.Context(), o)
			if errors.Is(err, demo.ErrCheckFailed) {
				return fail(ExitFailure, err)
			}
			if err != nil {
				return fail(ExitFailure, err)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&o.Check, "check", false, "run the checklist and exit")
	c.Flags().StringVar(&o.Dir, "dir", "", "write the demo's files to `DIR` and keep them")
	return c
}
