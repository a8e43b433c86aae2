package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/pin"
)

// rolloverLong is the help of rampart pin rollover.
const rolloverLong = `Answer "will this renewal break my clients?" before the renewal.

--chain NEW.pem: the new certificate chain (leaf first). It is verified as a
client for DOMAIN would verify it, trusting the system roots or only those in
--ca FILE (at the leaf's start of validity, if that is in the future), then
checked against the policy: which pin matches, at which chain position
(counted from 0, the leaf).

--key NEW.key or --csr NEW.csr: the certificate does not exist yet. Says
whether a pin of the rule is the new key's own (a leaf or backup pin covers
it), and, given the issuing chain in --issuing-chain FILE (intermediate
first; --ca FILE is accepted for it too), whether a CA pin will cover any
certificate that CA issues for it.

--announce FILE: when clients keep working, add the new key to FILE, the
announcements that rampart ct check --expect and rampart serve's ct.expect
read, so that the Certificate Transparency monitor counts the renewal's
certificates as expected rather than as a rollover or a rogue key.

Exit status: 0 pinned clients keep working; 1 they would break (the output
says which rule and why); 2 usage or policy error.`

func newRolloverCmd(stdio Stdio) *cobra.Command {
	var policyFile, domain, chainFile, keyFile, csrFile, caFile, issuingFile, announceFile string
	c := &cobra.Command{
		Use:   "rollover --policy FILE --domain DOMAIN (--chain NEW.pem [--ca FILE] | (--key NEW.key | --csr NEW.csr) [--issuing-chain FILE])",
		Short: "Test a certificate renewal against the policy before it ships",
		Long:  rolloverLong,
		Example: `  rampart pin rollover --policy pins.yaml --domain api.example.com --chain new-fullchain.pem
  rampart pin rollover --policy pins.yaml --domain api.example.com --csr next.csr --issuing-chain issuing-ca.pem`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			modes := 0
			for _, f := range []string{chainFile, keyFile, csrFile} {
				if f != "" {
					modes++
				}
			}
			if policyFile == "" || domain == "" || modes != 1 {
				return usagef("--policy, --domain and one of --chain, --key or --csr are required")
			}
			if issuingFile != "" {
				if chainFile != "" {
					return usagef("--issuing-chain goes with --key or --csr; with --chain, --ca names the trusted roots")
				}
				if caFile != "" {
					return usagef("--issuing-chain and --ca name the same thing with --key or --csr: give one")
				}
				caFile = issuingFile
			}
			t, err := parseTarget(domain, 443)
			if err != nil {
				return err
			}
			policy, err := pin.LoadPolicy(policyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			now := time.Now()
			rule := policy.Match(t.host)
			if rule == nil {
				fmt.Fprintf(stdio.Out, "%s is not pinned by this policy: clients do CA validation only, and any valid certificate works\n", t.host)
				return nil
			}
			if rule.Expired(now) {
				fmt.Fprintf(stdio.Out, "the pin set of rule %s expired after %s: clients do CA validation only\n", rule.Name, rule.Expires.Format(time.DateOnly))
				return nil
			}
			var check error
			if chainFile != "" {
				check = rolloverChain(stdio.Out, policy, rule, t.host, chainFile, caFile, now)
			} else {
				flag := "--ca"
				if issuingFile != "" {
					flag = "--issuing-chain"
				}
				check = rolloverKey(stdio.Out, rule, keyFile+csrFile, caFile, flag)
			}
			if check != nil || announceFile == "" {
				return check
			}
			newPin, err := newKeyPin(chainFile + keyFile + csrFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			return announce(stdio.Out, announceFile, t.host, newPin, now)
		},
	}
	c.Flags().StringVar(&policyFile, "policy", "", "pin policy `FILE`")
	c.Flags().StringVar(&domain, "domain", "", "the host `DOMAIN` the new certificate is for")
	c.Flags().StringVar(&chainFile, "chain", "", "the new certificate chain, leaf first, in a PEM `FILE`")
	c.Flags().StringVar(&keyFile, "key", "", "the new key (private or public) in a PEM `FILE`")
	c.Flags().StringVar(&csrFile, "csr", "", "a certificate request for the new key in a PEM `FILE`")
	c.Flags().StringVar(&caFile, "ca", "", "with --chain: trust only the roots in this PEM `FILE` (with --key or --csr: the same as --issuing-chain)")
	c.Flags().StringVar(&issuingFile, "issuing-chain", "", "with --key or --csr: the issuing CA, then each CA's issuer, in a PEM `FILE`")
	c.Flags().StringVar(&announceFile, "announce", "", "when clients keep working, announce the new key to the CT monitor in this `FILE` (ct.expect)")
	return c
}

// newKeyPin is the SPKI pin of the new key: the leaf of a chain, or the
// one key or request of a file.
func newKeyPin(file string) (pin.Pin, error) {
	items, err := certfile.ReadFile(file, nil)
	if err != nil || len(items) == 0 {
		return pin.Pin{}, fmt.Errorf("%s: %v", file, err)
	}
	return pin.FromSPKI(items[0].SPKI), nil
}

// announce adds the new key of domain to the announcements file (creating
// it): appended as text, so that the file's comments stay, and refused if
// the result would not read back with every announcement it had and the
// new one.
func announce(w io.Writer, file, domain string, p pin.Pin, now time.Time) error {
	data, err := ct.ReadAnnouncementsFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(ExitUsage, err)
	}
	old, err := ct.ParseAnnouncements(data)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("--announce %s: %w", file, err))
	}
	for _, a := range old {
		if a.SPKI == p && (a.Domain == domain || a.Domain == "") {
			fmt.Fprintf(w, "%s already announces %s for %s\n", file, p, domain)
			return nil
		}
	}
	entry := fmt.Sprintf("  - spki: %s\n    domain: %s\n    note: announced by rampart pin rollover on %s\n", p, domain, now.UTC().Format(time.DateOnly))
	next := string(data)
	if len(old) == 0 && strings.TrimSpace(next) == "" {
		next = "# Keys and certificates the CT monitor counts as expected (rampart ct check --expect, rampart serve ct.expect).\nexpected:\n"
	} else if next != "" && !strings.HasSuffix(next, "\n") {
		next += "\n"
	}
	next += entry
	got, err := ct.ParseAnnouncements([]byte(next))
	if err != nil || len(got) != len(old)+1 || got[len(got)-1].SPKI != p {
		return fail(ExitUsage, fmt.Errorf("--announce %s: appending to it would not keep its announcements (is expected: the file's last section, in block style?); add this entry to its expected list by hand:\n%s", file, entry))
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(file); err == nil {
		mode = st.Mode().Perm()
	}
	if err := writeFileAtomic(file, []byte(next), mode); err != nil {
		return fail(ExitUsage, err)
	}
	fmt.Fprintf(w, "announced %s for %s in %s: the CT monitor counts certificates on this key as expected\n", p, domain, file)
	return nil
}

func describeRole(d *pin.Domain, p pin.Pin) string {
	if r := d.Role(p); r != pin.RoleUnknown {
		return " (" + string(r) + ")"
	}
	return ""
}

// breaks says that clients would break and why, headline first, then what
// detail prints (if not nil), then the pins, and exits 1 for an enforced
// rule; a report-only rule keeps clients working (they report).
func breaks(w io.Writer, rule *pin.Domain, why string, detail func()) error {
	if rule.Mode == pin.ReportOnly {
		fmt.Fprintf(w, "report-only rule %s: clients keep working but report every connection: %s\n", rule.Name, why)
		if detail != nil {
			detail()
		}
		return nil
	}
	fmt.Fprintf(w, "CLIENTS WOULD BREAK (rule %s, enforce): %s\n", rule.Name, why)
	if detail != nil {
		detail()
	}
	fmt.Fprintf(w, "  pinned:\n")
	for _, p := range rule.Pins {
		fmt.Fprintf(w, "    %s%s\n", p, describeRole(rule, p))
	}
	return fail(ExitFailure, nil)
}

func rolloverChain(w io.Writer, policy *pin.Policy, rule *pin.Domain, host, chainFile, caFile string, now time.Time) error {
	items, err := certfile.ReadFile(chainFile, nil)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("%s: %w", chainFile, err))
	}
	inter := x509.NewCertPool()
	var leaf *x509.Certificate
	for _, it := range items {
		if it.Cert == nil {
			return fail(ExitUsage, fmt.Errorf("%s holds a %s; --chain takes certificates only", chainFile, it.Type))
		}
		if leaf == nil {
			leaf = it.Cert
		} else {
			inter.AddCert(it.Cert)
		}
	}
	roots, err := loadRoots(caFile)
	if err != nil {
		return err
	}
	at := now
	if leaf.NotBefore.After(at) {
		at = leaf.NotBefore
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		fmt.Fprintf(w, "CLIENTS WOULD BREAK: the new chain fails certificate verification for %s, before any pin is checked: %v\n", host, err)
		chain := make([]*x509.Certificate, len(items))
		for i, it := range items {
			chain[i] = it.Cert
		}
		for _, h := range verifyHints(err, chain, caFile != "") {
			fmt.Fprintf(w, "  hint: %s\n", h)
		}
		return fail(ExitFailure, nil)
	}
	r := policy.Check(host, chains, now)
	if !r.Matched {
		return breaks(w, rule, "no pin matches the new chain", func() {
			fmt.Fprintf(w, "  verified chain 0:\n")
			for i, c := range chains[0] {
				fmt.Fprintf(w, "    %d %s %s\n", i, pin.FromCertificate(c), c.Subject)
			}
		})
	}
	if se := policy.CheckSCTs(host, &tls.ConnectionState{VerifiedChains: chains}, now); se != nil {
		// Only SCTs embedded in the certificate can be judged here: a
		// server may also send them in the handshake.
		return breaks(w, rule, "the rule requires SCTs (require_scts) and the new certificate embeds too few: "+se.Error(), nil)
	}
	c := chains[r.Chain][r.Position]
	fmt.Fprintf(w, "clients keep working: %s%s matches position %d of the new chain (%s)\n", r.Pin, describeRole(rule, r.Pin), r.Position, c.Subject)
	if r.Position == 0 && rule.Role(r.Pin) == pin.RoleBackup {
		fmt.Fprintf(w, "note: the backup key goes into service with this certificate; make a new backup key (rampart pin keygen) and add its pin before the next renewal\n")
	}
	return nil
}

// rolloverKey judges a new key; caFile is the issuing chain, given with
// flag.
func rolloverKey(w io.Writer, rule *pin.Domain, file, caFile, flag string) error {
	items, err := certfile.ReadFile(file, nil)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("%s: %w", file, err))
	}
	if len(items) != 1 || items[0].Type == certfile.Certificate {
		return fail(ExitUsage, fmt.Errorf("%s: want exactly one key or certificate request", file))
	}
	newPin := pin.FromSPKI(items[0].SPKI)
	for _, p := range rule.Pins {
		if p == newPin {
			fmt.Fprintf(w, "clients keep working: the new key's pin %s is pinned%s; any certificate a trusted CA issues for it is accepted\n", newPin, describeRole(rule, p))
			return nil
		}
	}
	if caFile == "" {
		return breaks(w, rule, fmt.Sprintf("the new key's pin %s is not pinned (pass the issuing chain with --issuing-chain to check CA pins)", newPin), nil)
	}
	issuers, err := certfile.ReadFile(caFile, nil)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("%s %s: %w", flag, caFile, err))
	}
	for i, it := range issuers {
		if it.Cert == nil {
			return fail(ExitUsage, fmt.Errorf("%s %s holds a %s; want the issuing CA certificates", flag, caFile, it.Type))
		}
		if !it.Cert.IsCA {
			return fail(ExitUsage, fmt.Errorf("%s %s: certificate %d (%s) is not a CA", flag, caFile, i, it.Cert.Subject))
		}
		// Only a real chain counts: a pinned root appended to an unrelated
		// intermediate covers nothing that intermediate issues.
		if i > 0 {
			child := issuers[i-1].Cert
			if err := child.CheckSignatureFrom(it.Cert); err != nil {
				return fail(ExitUsage, fmt.Errorf("%s %s is not an issuing chain: certificate %d (%s) did not issue certificate %d (%s); list the issuing CA first, then each CA's issuer",
					flag, caFile, i, it.Cert.Subject, i-1, child.Subject))
			}
		}
		p := pin.FromCertificate(it.Cert)
		for _, q := range rule.Pins {
			if p == q {
				fmt.Fprintf(w, "clients keep working: the new key's pin %s is not pinned, but CA pin %s%s (%s) covers any certificate this CA issues for it\n", newPin, p, describeRole(rule, q), it.Cert.Subject)
				return nil
			}
		}
	}
	return breaks(w, rule, fmt.Sprintf("the new key's pin %s is not pinned, and no pin covers the issuing chain in %s", newPin, caFile), nil)
}
