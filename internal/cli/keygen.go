package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/keygen"
	"github.com/rampartsec/rampart/pin"
)

type keygenJSON struct {
	KeyFile    string `json:"key_file"`
	Type       string `json:"type"`
	SPKISHA256 string `json:"spki_sha256"`
	CSRFile    string `json:"csr_file,omitempty"`
}

func newKeygenCmd(stdio Stdio) *cobra.Command {
	var (
		out, csr, cn, typ string
		dns               []string
		asJSON            bool
	)
	c := &cobra.Command{
		Use:   "keygen --out KEY [--csr FILE --cn NAME [--dns NAME]...] [--type TYPE] [--json]",
		Short: "Make a backup key (and CSR) and print its pin",
		Long: `Make the backup key that a backup pin refers to, ready to be kept offline, and
print its pin for the policy. The key is PKCS #8 PEM, written with mode 0600,
and never overwrites an existing file. With --csr, also write a certificate
request for it (subject CN=--cn, DNS names --dns, or the CN alone), to get
the certificate issued on the day the backup key goes into service.

Types: ` + strings.Join(keygen.Types, ", ") + ` (default ` + keygen.Types[0] + `).

--json prints {"key_file", "type", "spki_sha256", "csr_file"}.

Exit status: 0 written; 2 usage, or a file already exists.`,
		Example: `  rampart pin keygen --out backup-2027.key
  rampart pin keygen --out backup.key --type rsa-3072 --csr backup.csr --cn api.example.com --dns api.example.com`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			if csr != "" && cn == "" {
				return usagef("--csr needs --cn (the certificate's common name)")
			}
			if csr == "" && (cn != "" || len(dns) > 0) {
				return usagef("--cn and --dns go with --csr")
			}
			if csr == out {
				return usagef("--csr and --out name the same file")
			}
			if !slices.Contains(keygen.Types, typ) {
				return usagef("--type: unknown key type %q (want one of %v)", typ, keygen.Types)
			}
			key, err := keygen.Generate(typ)
			if err != nil {
				return fail(ExitFailure, err)
			}
			keyPEM, err := keygen.KeyPEM(key)
			if err != nil {
				return fail(ExitFailure, err)
			}
			var csrPEM []byte
			if csr != "" {
				if csrPEM, err = keygen.CSRPEM(key, cn, dns); err != nil {
					return fail(ExitUsage, err)
				}
			}
			if err := keygen.WriteNew(out, keyPEM); err != nil {
				return fail(ExitUsage, err)
			}
			if csr != "" {
				if err := keygen.WriteNew(csr, csrPEM); err != nil {
					return fail(ExitUsage, fmt.Errorf("%w (the key was written to %s)", err, out))
				}
			}
			p, err := pin.FromPrivateKey(key)
			if err != nil {
				return fail(ExitFailure, err)
			}
			if asJSON {
				return writeJSON(stdio.Out, keygenJSON{KeyFile: out, Type: typ, SPKISHA256: p.String(), CSRFile: csr})
			}
			fmt.Fprintf(stdio.Out, "%s: %s private key, mode 0600; keep it offline\n", out, typ)
			if csr != "" {
				fmt.Fprintf(stdio.Out, "%s: certificate request for CN=%s\n", csr, cn)
			}
			fmt.Fprintf(stdio.Out, "pin for the policy: %s\n", p)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the private key to `KEY` (must not exist)")
	c.Flags().StringVar(&csr, "csr", "", "also write a certificate request to `FILE` (must not exist)")
	c.Flags().StringVar(&cn, "cn", "", "the request's common `NAME`")
	c.Flags().StringArrayVar(&dns, "dns", nil, "a DNS `NAME` for the request (repeatable)")
	c.Flags().StringVar(&typ, "type", keygen.Types[0], "key `TYPE`")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
