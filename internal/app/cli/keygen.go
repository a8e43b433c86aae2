package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/util/keygen"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/pin"
)

type keygenJSON struct {
	KeyFile    string `json:"key_file"`
	Type       string `json:"type"`
	SPKISHA256 string `json:"spki_sha256"`
	CSRFile    string `json:"csr_file,omitempty"`
}

var keygenLong = `Make the backup key that a backup pin refers to, ready to be kept offline, and
print its pin for the policy. The key is PKCS #8 PEM, written with mode 0600,
and never overwrites an existing file. With --csr, also write a certificate
request for it (subject CN=--cn, DNS names --dns, or the CN alone), to get
the certificate issued on the day the backup key goes into service.

Types: ` + keyTypeList() + ` (default ` + string(keygen.Types[0]) + `).

--json prints {"key_file", "type", "spki_sha256", "csr_file"}.

Exit status: 0 written; 2 usage, or a file already exists.`

// keyTypeList is keygen.Types, comma-separated.
func keyTypeList() string {
	names := make([]string, len(keygen.Types))
	for i, t := range keygen.Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// keygenOptions are rampart pin keygen's flags.
type keygenOptions struct {
	out, csr, cn, typ string
	dns               []string
	asJSON            bool
}

func newKeygenCmd(stdio Stdio) *cobra.Command {
	var o keygenOptions
	c := &cobra.Command{
		Use:   "keygen --out KEY [--csr FILE --cn NAME [--dns NAME]...] [--type TYPE] [--json]",
		Short: "Make a backup key (and CSR) and print its pin",
		Long:  keygenLong,
		Example: `  rampart pin keygen --out backup-2027.key
  rampart pin keygen --out backup.key --type rsa-3072 --csr backup.csr --cn api.example.com --dns api.example.com`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error { return runKeygen(stdio, o) },
	}
	c.Flags().StringVar(&o.out, "out", "", "write the private key to `KEY` (must not exist)")
	c.Flags().StringVar(&o.csr, "csr", "", "also write a certificate request to `FILE` (must not exist)")
	c.Flags().StringVar(&o.cn, "cn", "", "the request's common `NAME`")
	c.Flags().StringArrayVar(&o.dns, "dns", nil, "a DNS `NAME` for the request (repeatable)")
	c.Flags().StringVar(&o.typ, "type", string(keygen.Types[0]), "key `TYPE`")
	c.Flags().BoolVar(&o.asJSON, "json", false, "print JSON")
	return c
}

// check checks the flags and returns the key type.
func (o keygenOptions) check() (keygen.Type, error) {
	switch {
	case o.out == "":
		return "", usagef("--out is required")
	case o.csr != "" && o.cn == "":
		return "", usagef("--csr needs --cn (the certificate's common name)")
	case o.csr == "" && (o.cn != "" || len(o.dns) > 0):
		return "", usagef("--cn and --dns go with --csr")
	case o.csr == o.out:
		return "", usagef("--csr and --out name the same file")
	}
	typ, err := keygen.ParseType(o.typ)
	if err != nil {
		return "", usagef("--type: unknown key type %q (want one of %v)", o.typ, keygen.Types)
	}
	return typ, nil
}

func runKeygen(stdio Stdio, o keygenOptions) error {
	typ, err := o.check()
	if err != nil {
		return err
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
	if o.csr != "" {
		if csrPEM, err = keygen.CSRPEM(key, o.cn, o.dns); err != nil {
			return fail(ExitUsage, err)
		}
	}
	if err := secrets.WriteNew(o.out, keyPEM); err != nil {
		return fail(ExitUsage, err)
	}
	if o.csr != "" {
		if err := secrets.WriteNew(o.csr, csrPEM); err != nil {
			return fail(ExitUsage, fmt.Errorf("%w (the key was written to %s)", err, o.out))
		}
	}
	p, err := pin.FromPrivateKey(key)
	if err != nil {
		return fail(ExitFailure, err)
	}
	if o.asJSON {
		return writeJSON(stdio.Out, keygenJSON{KeyFile: o.out, Type: string(typ), SPKISHA256: p.String(), CSRFile: o.csr})
	}
	fmt.Fprintf(stdio.Out, "%s: %s private key, mode 0600; keep it offline\n", o.out, typ)
	if o.csr != "" {
		fmt.Fprintf(stdio.Out, "%s: certificate request for CN=%s\n", o.csr, o.cn)
	}
	fmt.Fprintf(stdio.Out, "pin for the policy: %s\n", p)
	return nil
}
