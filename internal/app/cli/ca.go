package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/app/controlplane"
	"github.com/rampartsec/rampart/internal/util/keygen"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/mtls"
)

// The CA's directory, its files and what keeps its issuing key sealed
// are controlplane's (controlplane.OpenCA, InitCA, RotateCA): rampart
// serve renews certificates from the same directory these commands
// manage.

func newCACmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Run the internal CA that gives services their mutual TLS certificates",
		Long: `Run the internal CA that gives services their identities for mutual TLS.

Services are named by SPIFFE IDs (spiffe://pay.internal/ns/prod/sa/ledger),
carried as the one URI SAN of short-lived certificates. The CA is a root,
to be kept offline, and an issuing CA that may sign only for its trust
domain. It lives in DATA/ca ($RAMPART_DATA, else ~/.local/share/rampart):

  root.pem     the root certificate: every service's trust anchor
  root.key     the root key: move it offline once the CA is made
  issuing.pem  the issuing CA certificate
  issuing.key  the issuing key, sealed with the master key
               ($RAMPART_MASTER_KEY or DATA/master.key)

  rampart ca init --trust-domain pay.internal
  rampart ca issue --id spiffe://pay.internal/ns/prod/sa/ledger --dns ledger.pay.internal --out ledger
  rampart ca renew --cert ledger.pem --key ledger.key --server https://cp.pay.internal:8443 --ca cp-root.pem
  rampart ca rotate --root-key /media/offline/root.key    # yearly: a new issuing CA

Services renew their certificates with the certificates themselves at
rampart serve's ` + controlplane.RenewPath + `: Go services with package mtls
(Reloader, Renewer), others with rampart ca renew (from cron). Renewals
keep the lifetime first issued, and stop 90 days after it (rampart serve
--ca-max-lineage): a stolen key does not keep its identity for ever.

Exit status: 0 success, 1 failure (rampart ca renew: the renewal failed),
2 usage or unreadable input; each command's help says more.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newCAInitCmd(stdio), newCAIssueCmd(stdio), newCARenewCmd(stdio), newCARotateCmd(stdio))
	return c
}

const caInitLong = `Make the CA for a trust domain: an ECDSA P-256 root valid 10 years and an
issuing CA valid 1 year, both name-constrained to the trust domain, in
DATA/ca. The keys are written with mode 0600; the issuing key is sealed
(AES-256-GCM) with a key derived from the master key, which is made if there
is none. Nothing is ever overwritten.

Move root.key offline: it is needed only to make a new issuing CA.

Exit status: 0 made; 2 usage, or a CA exists already.`

// caInitOptions are rampart ca init's flags.
type caInitOptions struct{ data, trustDomain string }

func newCAInitCmd(stdio Stdio) *cobra.Command {
	var o caInitOptions
	c := &cobra.Command{
		Use:     "init --trust-domain NAME [--data DIR]",
		Short:   "Make the CA: a root and an issuing CA for a trust domain",
		Long:    caInitLong,
		Example: `  rampart ca init --trust-domain pay.internal`,
		Args:    args(cobra.NoArgs),
		RunE:    func(c *cobra.Command, _ []string) error { return runCAInit(stdio, o) },
	}
	c.Flags().StringVar(&o.trustDomain, "trust-domain", "", "the trust domain `NAME`, e.g. pay.internal")
	c.Flags().StringVar(&o.data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	return c
}

func runCAInit(stdio Stdio, o caInitOptions) error {
	if o.trustDomain == "" {
		return usagef("--trust-domain is required (e.g. pay.internal)")
	}
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return usagef("--trust-domain %q: %v", o.trustDomain, err)
	}
	dir, err := dataDir(o.data)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	caDir := filepath.Join(dir, controlplane.CADirName)
	// Before the master key, which is made if there is none: a CA that
	// exists already is refused with nothing made.
	if err := controlplane.CheckNoCA(caDir); err != nil {
		return fail(ExitUsage, err)
	}
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return fail(ExitFailure, err)
	}
	master, err := secrets.Load(dir, true)
	if err != nil {
		return fail(ExitUsage, err)
	}
	ca, rootKey, err := mtls.NewCA(td, time.Now())
	if err != nil {
		return fail(ExitFailure, err)
	}
	if err := controlplane.InitCA(caDir, master, ca, rootKey); err != nil {
		if errors.Is(err, secrets.ErrExists) || errors.Is(err, controlplane.ErrCAExists) {
			return fail(ExitUsage, err)
		}
		return fail(ExitFailure, err)
	}
	p := func(name string) string { return filepath.Join(caDir, name) }
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	fmt.Fprintf(stdio.Out, "CA for trust domain %s in %s\n", td.Name(), caDir)
	fmt.Fprintf(stdio.Out, "%s: root certificate, valid until %s; give it to every service as its trust anchor\n", p(controlplane.CARootCert), day(ca.Root.NotAfter))
	fmt.Fprintf(stdio.Out, "%s: root private key, mode 0600; move it offline: it is needed only to make a new issuing CA\n", p(controlplane.CARootKey))
	fmt.Fprintf(stdio.Out, "%s: issuing CA certificate, valid until %s\n", p(controlplane.CAIssuingCert), day(ca.Issuing.NotAfter))
	fmt.Fprintf(stdio.Out, "%s: issuing private key, mode 0600, sealed with the master key from %s\n", p(controlplane.CAIssuingKey), master.Source)
	return nil
}

const caIssueLong = `Issue a short-lived certificate for a service: one URI SAN, its SPIFFE ID,
which must be in the CA's trust domain, and optional DNS names and IP
addresses, usable as a TLS server and client certificate. NAME.pem gets
the chain to serve (the certificate, then the issuing CA's); NAME.key a new
ECDSA P-256 key, mode 0600. Neither is ever overwritten. --ttl is at most
720h (30 days, 30d); the service renews at two thirds of it, and its
renewals keep it.

The certificate starts a lineage: rampart serve renews it, and its
renewals, for 90 days after this (--ca-max-lineage), then refuses; issue
a new one then.

Exit status: 0 issued; 2 usage, no CA, an ID outside the trust domain, or
an output file exists.`

// caIssueOptions are rampart ca issue's flags.
type caIssueOptions struct {
	data, id, out string
	dns, ips      []string
	ttl           time.Duration
}

func newCAIssueCmd(stdio Stdio) *cobra.Command {
	o := caIssueOptions{ttl: mtls.DefaultTTL}
	c := &cobra.Command{
		Use:   "issue --id SPIFFE-ID [--dns NAME]... [--ip ADDR]... [--ttl DURATION] --out NAME [--data DIR]",
		Short: "Issue a service certificate (NAME.pem) and its key (NAME.key)",
		Long:  caIssueLong,
		Example: `  rampart ca issue --id spiffe://pay.internal/ns/prod/sa/ledger --dns ledger.pay.internal --out ledger
  rampart ca issue --id spiffe://pay.internal/control-plane --dns cp.pay.internal --ip 127.0.0.1 --ttl 7d --out cp`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error { return runCAIssue(stdio, o) },
	}
	f := c.Flags()
	f.StringVar(&o.id, "id", "", "the service's SPIFFE `ID`, e.g. spiffe://pay.internal/ns/prod/sa/ledger")
	f.StringArrayVar(&o.dns, "dns", nil, "a DNS `NAME` for the certificate (repeatable)")
	f.StringArrayVar(&o.ips, "ip", nil, "an IP address (`ADDR`) for the certificate (repeatable)")
	f.Var((*durationFlag)(&o.ttl), "ttl", "the certificate's lifetime (`DURATION`: 90m, 24h, 7d; at most 720h)")
	f.StringVar(&o.out, "out", "", "write `NAME`.pem and NAME.key (must not exist)")
	f.StringVar(&o.data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	return c
}

// names checks the flags and returns the SPIFFE ID and the certificate's
// DNS names and IP addresses.
func (o caIssueOptions) names() (spiffeid.ID, []string, error) {
	if o.id == "" {
		return spiffeid.ID{}, nil, usagef("--id is required (e.g. spiffe://pay.internal/ns/prod/sa/ledger)")
	}
	if o.out == "" {
		return spiffeid.ID{}, nil, usagef("--out is required: the certificate goes to NAME.pem, its key to NAME.key")
	}
	id, err := spiffeid.FromString(o.id)
	if err != nil {
		return spiffeid.ID{}, nil, usagef("--id %q: %v", o.id, err)
	}
	if o.ttl <= 0 || o.ttl > mtls.MaxTTL {
		return spiffeid.ID{}, nil, usagef("--ttl %v: want more than 0 and at most %v", o.ttl, mtls.MaxTTL)
	}
	names := slices.Clone(o.dns)
	for _, n := range o.dns {
		if _, err := netip.ParseAddr(n); err == nil {
			return spiffeid.ID{}, nil, usagef("--dns %s is an IP address: use --ip %s", n, n)
		}
	}
	for _, ip := range o.ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return spiffeid.ID{}, nil, usagef("--ip %q: want an IP address such as 192.0.2.1 or 2001:db8::1", ip)
		}
		names = append(names, a.Unmap().String())
	}
	return id, names, nil
}

func runCAIssue(stdio Stdio, o caIssueOptions) error {
	id, names, err := o.names()
	if err != nil {
		return err
	}
	certPath, keyPath := o.out+".pem", o.out+".key"
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return fail(ExitUsage, fmt.Errorf("%s: %w", p, secrets.ErrExists))
		}
	}
	_, _, ca, err := openCA(o.data)
	if err != nil {
		return err
	}
	if !id.MemberOf(ca.TrustDomain) {
		return fail(ExitUsage, fmt.Errorf("--id %s is outside the CA's trust domain %s", id, ca.TrustDomain.Name()))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(ExitFailure, err)
	}
	now := time.Now()
	chain, err := ca.Issue(id, names, o.ttl, key.Public(), now)
	if err != nil {
		return fail(ExitUsage, mtlsError(err))
	}
	keyPEM, err := keygen.KeyPEM(key)
	if err != nil {
		return fail(ExitFailure, err)
	}
	if err := secrets.WriteNew(keyPath, keyPEM); err != nil {
		return fail(ExitUsage, err)
	}
	if err := secrets.WriteNew(certPath, controlplane.CertPEM(chain...)); err != nil {
		return fail(ExitUsage, fmt.Errorf("%w (the key was written to %s)", err, keyPath))
	}
	printIssued(stdio, id, chain[0], now, certPath, keyPath)
	if w := controlplane.CAExpiryNote(ca, now); w != "" {
		fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", w)
	}
	return nil
}

// printIssued says what rampart ca issue made.
func printIssued(stdio Stdio, id spiffeid.ID, leaf *x509.Certificate, now time.Time, certPath, keyPath string) {
	fmt.Fprintf(stdio.Out, "id: %s\n", id)
	fmt.Fprintf(stdio.Out, "serial: %x\n", leaf.SerialNumber)
	fmt.Fprintf(stdio.Out, "expires: %s\n", leaf.NotAfter.UTC().Format(time.RFC3339))
	if len(leaf.DNSNames) > 0 {
		fmt.Fprintf(stdio.Out, "dns: %s\n", strings.Join(leaf.DNSNames, " "))
	}
	if len(leaf.IPAddresses) > 0 {
		s := make([]string, len(leaf.IPAddresses))
		for i, ip := range leaf.IPAddresses {
			s[i] = ip.String()
		}
		fmt.Fprintf(stdio.Out, "ip: %s\n", strings.Join(s, " "))
	}
	fmt.Fprintf(stdio.Out, "renewable until: %s (rampart serve's default --ca-max-lineage %s)\n",
		now.Add(mtls.DefaultMaxLineage).UTC().Format(time.RFC3339), shortDuration(mtls.DefaultMaxLineage))
	fmt.Fprintf(stdio.Out, "%s: certificate chain (certificate, issuing CA); %s: private key, mode 0600\n", certPath, keyPath)
}

const caRenewLong = `Renew a service certificate at rampart serve's ` + controlplane.RenewPath + `, for
services that are not written in Go and for cron jobs. The request goes
over mutual TLS with the current certificate (--cert, --key), which must
still be valid; it asks for the same SPIFFE ID, DNS names and IP addresses
on a new ECDSA P-256 key. The new certificate keeps the lifetime the first
one was issued with.

The new key and chain replace --key and --cert in place: each is written
whole beside the old one, then renamed over it (the key first, mode 0600;
the certificate keeps its file's mode). A program that reloads the files
when they change (rampart gateway, nginx on reload) picks them up. A run
stopped between the two renames is finished by the next one.

--server is the control plane's URL (https://HOST:PORT; its certificate is
verified as any HTTPS server's, against --ca if given, else the system
roots). With --if-expires-within, a certificate that expires later than
that is left alone (exit 0), so that cron can run it often:

  */15 * * * *  rampart ca renew --cert /etc/pay/payments.pem --key /etc/pay/payments.key \
                  --server https://cp.pay.internal:8443 --ca /etc/pay/cp-root.pem --if-expires-within 8h

Renewal stops 90 days after the first certificate of the lineage was
issued (rampart serve --ca-max-lineage): then issue a new one with rampart
ca issue.

Exit status: 0 renewed, or not due yet; 1 the renewal failed (the control
plane is unreachable or refused it, or the certificate has expired); 2
usage, or unreadable or mismatched files.`

// caRenewOptions are rampart ca renew's flags.
type caRenewOptions struct {
	certFile, keyFile, server, caFile string
	within                            durationFlag
	withinSet                         bool // --if-expires-within given
}

func newCARenewCmd(stdio Stdio) *cobra.Command {
	var o caRenewOptions
	c := &cobra.Command{
		Use:   "renew --cert FILE --key FILE --server URL [--ca FILE] [--if-expires-within DURATION]",
		Short: "Renew a service certificate at the control plane, in place",
		Long:  caRenewLong,
		Example: `  rampart ca renew --cert payments.pem --key payments.key --server https://localhost:8443 --ca DATA/ca/root.pem
  rampart ca renew --cert payments.pem --key payments.key --server https://cp.pay.internal:8443 --if-expires-within 8h`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			o.withinSet = c.Flags().Changed("if-expires-within")
			return runCARenew(c.Context(), stdio, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.certFile, "cert", "", "the certificate chain `FILE` to renew (PEM), replaced in place")
	f.StringVar(&o.keyFile, "key", "", "its private key `FILE` (PEM), replaced by a new key")
	f.StringVar(&o.server, "server", "", "the control plane's `URL` (https://HOST:PORT)")
	f.StringVar(&o.caFile, "ca", "", "the roots (`FILE`, PEM) the control plane's certificate chains to (default: the system roots)")
	f.Var(&o.within, "if-expires-within", "renew only if the certificate expires within `DURATION` (8h, 1d); else do nothing")
	return c
}

// check checks the flags, and returns the renewal URL and the roots the
// control plane's certificate must chain to (nil: the system's).
func (o caRenewOptions) check() (string, *x509.CertPool, error) {
	switch {
	case o.certFile == "" || o.keyFile == "":
		return "", nil, usagef("--cert and --key are required: the certificate to renew and its key")
	case o.server == "":
		return "", nil, usagef("--server is required: the control plane's URL, e.g. https://cp.pay.internal:8443")
	case o.within < 0:
		return "", nil, usagef("--if-expires-within %v: want 0 or more", time.Duration(o.within))
	}
	renewURL, err := renewalURL(o.server)
	if err != nil {
		return "", nil, usagef("--server %q: %v", o.server, err)
	}
	if o.caFile == "" {
		return renewURL, nil, nil
	}
	data, err := os.ReadFile(o.caFile)
	if err != nil {
		return "", nil, fail(ExitUsage, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return "", nil, fail(ExitUsage, fmt.Errorf("--ca %s: no PEM certificate", o.caFile))
	}
	return renewURL, roots, nil
}

// load finishes a renewal stopped halfway, then loads the certificate to
// renew and its SPIFFE ID.
func (o caRenewOptions) load(stdio Stdio) (tls.Certificate, spiffeid.ID, error) {
	finished, err := finishRenewal(o.certFile, o.keyFile)
	if err != nil {
		return tls.Certificate{}, spiffeid.ID{}, fail(ExitUsage, err)
	}
	if finished {
		fmt.Fprintf(stdio.Err, "rampart: %s.new: finished a renewal stopped before its last rename\n", o.certFile)
	}
	cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		return tls.Certificate{}, spiffeid.ID{}, fail(ExitUsage, fmt.Errorf("%s, %s: %w", o.certFile, o.keyFile, err))
	}
	id, err := mtls.IDOf(cert.Leaf)
	if err != nil {
		return tls.Certificate{}, spiffeid.ID{}, fail(ExitUsage, fmt.Errorf("%s: not a service certificate: %w", o.certFile, mtlsError(err)))
	}
	return cert, id, nil
}

func runCARenew(ctx context.Context, stdio Stdio, o caRenewOptions) error {
	renewURL, roots, err := o.check()
	if err != nil {
		return err
	}
	cert, id, err := o.load(stdio)
	if err != nil {
		return err
	}
	leaf, now := cert.Leaf, time.Now()
	if o.withinSet && leaf.NotAfter.Sub(now) > time.Duration(o.within) {
		fmt.Fprintf(stdio.Out, "not due: %s (%s) expires at %s, more than %s from now\n",
			o.certFile, id, leaf.NotAfter.UTC().Format(time.RFC3339), shortDuration(time.Duration(o.within)))
		return nil
	}
	if !now.Before(leaf.NotAfter) {
		return fail(ExitFailure, fmt.Errorf("%s expired at %s: an expired certificate cannot renew itself; issue a new one (rampart ca issue --id %s)",
			o.certFile, leaf.NotAfter.UTC().Format(time.RFC3339), id))
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r := mtls.NewStatic(cert)
	next, err := mtls.Renewer(renewURL, mtls.RenewalClient(r, roots), nil)(ctx, r.Certificate())
	if err != nil {
		err = mtlsError(err)
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) && o.caFile == "" {
			err = fmt.Errorf("%w\nhint: a control plane with a private CA's certificate? pass its root with --ca (e.g. DATA/ca/root.pem)", err)
		}
		return fail(ExitFailure, err)
	}
	if err := mtls.WriteFiles(o.certFile, o.keyFile, next); err != nil {
		return fail(ExitFailure, mtlsError(err))
	}
	nl := next.Leaf
	fmt.Fprintf(stdio.Out, "renewed %s: %s, serial %x, expires %s (%s)\n", o.certFile, id, nl.SerialNumber,
		nl.NotAfter.UTC().Format(time.RFC3339), shortDuration(nl.NotAfter.Sub(nl.NotBefore)-mtls.Backdate))
	fmt.Fprintf(stdio.Out, "%s: its new key, mode 0600\n", o.keyFile)
	if l, ok := mtls.LineageOf(nl); ok {
		fmt.Fprintf(stdio.Out, "lineage: first issued %s; renewable until %s at rampart serve's default --ca-max-lineage\n",
			l.Since.UTC().Format(time.RFC3339), l.Since.Add(mtls.DefaultMaxLineage).UTC().Format(time.RFC3339))
	}
	return nil
}

// renewalURL is the renewal endpoint of the control plane at server: its
// URL with the path controlplane.RenewPath (unless it has it already).
func renewalURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", errors.New("want https://HOST[:PORT]: renewal is over mutual TLS")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want https://HOST[:PORT], without credentials, query or fragment")
	}
	if !strings.HasSuffix(u.Path, controlplane.RenewPath) {
		u.Path = strings.TrimSuffix(u.Path, "/") + controlplane.RenewPath
	}
	return u.String(), nil
}

// finishRenewal completes an mtls.WriteFiles stopped between its renames: the
// key is the new one, certFile the old chain and certFile.new the new
// chain, for that key. It reports whether it did.
func finishRenewal(certFile, keyFile string) (bool, error) {
	next := certFile + ".new"
	if _, err := os.Stat(next); err != nil {
		return false, nil
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		os.Remove(next) // a leftover: the pair in place is whole
		return false, nil
	}
	if _, err := tls.LoadX509KeyPair(next, keyFile); err != nil {
		return false, nil // not ours to finish; the pair's own error follows
	}
	if err := os.Rename(next, certFile); err != nil {
		return false, err
	}
	return true, nil
}

func newCARotateCmd(stdio Stdio) *cobra.Command {
	var data, rootKeyFile string
	c := &cobra.Command{
		Use:   "rotate --root-key FILE [--data DIR]",
		Short: "Replace the issuing CA with a new one under the same root",
		Long: `Make a new issuing CA: a new key, and a certificate valid 1 year (never
past the root) signed with the root key, brought back from offline for
this (--root-key). They replace issuing.pem and issuing.key in DATA/ca;
the old certificate is kept in DATA/ca/retired/, and its key is gone.

Certificates the old issuing CA signed keep verifying under the same root
until they expire, and services move to the new one as they renew: nothing
but the root is trusted, and the root does not change. Restart rampart
serve so that it renews from the new issuing CA.

Rotate before the issuing CA expires: certificates are cut short at its
expiry, and none are issued after it. rampart serve and rampart ca issue
warn 30 days before.

Exit status: 0 rotated; 2 usage, no CA, or a key that is not the root's.`,
		Example: `  rampart ca rotate --root-key /media/offline/root.key`,
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if rootKeyFile == "" {
				return usagef("--root-key is required: the root's private key (root.key, which ca init wrote)")
			}
			rootKey, err := readSigner(rootKeyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			dir, keys, old, err := openCA(data)
			if err != nil {
				return err
			}
			now := time.Now()
			ca, err := old.Rotate(rootKey, now)
			if errors.Is(err, mtls.ErrNotRootKey) {
				return fail(ExitUsage, fmt.Errorf("%s is not the key of %s", rootKeyFile, filepath.Join(dir, controlplane.CADirName, controlplane.CARootCert)))
			}
			if err != nil {
				return fail(ExitUsage, mtlsError(err))
			}
			retired, err := controlplane.RotateCA(filepath.Join(dir, controlplane.CADirName), keys, old, ca)
			if err != nil {
				return fail(ExitFailure, err)
			}
			caDir := filepath.Join(dir, controlplane.CADirName)
			day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
			fmt.Fprintf(stdio.Out, "new issuing CA for trust domain %s, valid until %s\n", ca.TrustDomain.Name(), day(ca.Issuing.NotAfter))
			fmt.Fprintf(stdio.Out, "%s, %s: replaced; the old certificate is in %s, its key is gone\n",
				filepath.Join(caDir, controlplane.CAIssuingCert), filepath.Join(caDir, controlplane.CAIssuingKey), retired)
			fmt.Fprintf(stdio.Out, "certificates the old issuing CA signed verify until they expire, %s at the latest\n", day(old.Issuing.NotAfter))
			fmt.Fprintf(stdio.Out, "restart rampart serve to renew from the new issuing CA, and move %s offline again\n", rootKeyFile)
			return nil
		},
	}
	c.Flags().StringVar(&rootKeyFile, "root-key", "", "the root's private key `FILE` (PEM)")
	c.Flags().StringVar(&data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	return c
}

// openCA loads the CA of the data directory data (the default if ""),
// with the master key that opens its issuing key; the error is the
// command's (exit 2).
func openCA(data string) (dir string, master *secrets.Master, ca *mtls.CA, err error) {
	dir, err = dataDir(data)
	if err != nil {
		return "", nil, nil, fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	caDir := filepath.Join(dir, controlplane.CADirName)
	if !controlplane.CAExists(caDir) {
		return "", nil, nil, fail(ExitUsage, fmt.Errorf("no CA in %s: run 'rampart ca init --trust-domain NAME' first", caDir))
	}
	if master, err = secrets.Load(dir, false); err != nil {
		return "", nil, nil, fail(ExitUsage, err)
	}
	if ca, err = controlplane.OpenCA(caDir, master); err != nil {
		return "", nil, nil, fail(ExitUsage, err)
	}
	return dir, master, ca, nil
}

// readSigner reads a PEM private key (PKCS #8, SEC 1 or PKCS #1).
func readSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	var k any
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: a PEM %q, not a private key", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T cannot sign", path, k)
	}
	return s, nil
}

// mtlsError is err as rampart says it: an mtls.Error by its Description,
// without the package's prefix (rampart's own comes first), wrapping err.
func mtlsError(err error) error {
	if me, ok := err.(*mtls.Error); ok {
		return &describedError{me.Description, err}
	}
	return err
}

// describedError is an error shown by another text than its own.
type describedError struct {
	text string
	err  error
}

func (e *describedError) Error() string { return e.text }
func (e *describedError) Unwrap() error { return e.err }
