package cli

import (
	"bytes"
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
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/keygen"
	"github.com/rampartsec/rampart/internal/masterkey"
	"github.com/rampartsec/rampart/internal/sealed"
	"github.com/rampartsec/rampart/mtls"
)

// The CA's files, in DATA/ca.
const (
	caDirName     = "ca"
	caRootCert    = "root.pem"
	caRootKey     = "root.key"
	caIssuingCert = "issuing.pem"
	caIssuingKey  = "issuing.key"
	// caRetired holds the certificates of issuing CAs rotate replaced.
	caRetired = "retired"
	// caExpiryWarning is how long before the issuing CA expires the
	// commands that use it say to rotate it.
	caExpiryWarning = 30 * 24 * time.Hour
	// caRenewPath is where rampart serve answers certificate renewals.
	caRenewPath = "/v1/certificates/renew"
	// The issuing key is PKCS #8 sealed with a key derived from the master
	// key for this purpose, bound to the trust domain.
	caSealedKeyType = "RAMPART SEALED PRIVATE KEY"
	caKeyPurpose    = "rampart ca issuing key v1"
)

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
rampart serve's ` + caRenewPath + `: Go services with package mtls
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

func newCAInitCmd(stdio Stdio) *cobra.Command {
	var data, trustDomain string
	c := &cobra.Command{
		Use:   "init --trust-domain NAME [--data DIR]",
		Short: "Make the CA: a root and an issuing CA for a trust domain",
		Long: `Make the CA for a trust domain: an ECDSA P-256 root valid 10 years and an
issuing CA valid 1 year, both name-constrained to the trust domain, in
DATA/ca. The keys are written with mode 0600; the issuing key is sealed
(AES-256-GCM) with a key derived from the master key, which is made if there
is none. Nothing is ever overwritten.

Move root.key offline: it is needed only to make a new issuing CA.

Exit status: 0 made; 2 usage, or a CA exists already.`,
		Example: `  rampart ca init --trust-domain pay.internal`,
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if trustDomain == "" {
				return usagef("--trust-domain is required (e.g. pay.internal)")
			}
			td, err := spiffeid.TrustDomainFromString(trustDomain)
			if err != nil {
				return usagef("--trust-domain %q: %v", trustDomain, err)
			}
			dir, err := dataDir(data)
			if err != nil {
				return fail(ExitUsage, fmt.Errorf("data directory: %w", err))
			}
			caDir := filepath.Join(dir, caDirName)
			for _, name := range []string{caRootCert, caRootKey, caIssuingCert, caIssuingKey} {
				if _, err := os.Lstat(filepath.Join(caDir, name)); !errors.Is(err, fs.ErrNotExist) {
					return fail(ExitUsage, fmt.Errorf("%s: a CA exists already (%s); refusing to overwrite it", caDir, name))
				}
			}
			if err := os.MkdirAll(caDir, 0o700); err != nil {
				return fail(ExitFailure, err)
			}
			keys, err := masterkey.Load(dir, true)
			if err != nil {
				return fail(ExitUsage, err)
			}
			ca, rootKey, err := mtls.NewCA(td, time.Now())
			if err != nil {
				return fail(ExitFailure, err)
			}
			rootKeyPEM, err := keygen.KeyPEM(rootKey)
			if err != nil {
				return fail(ExitFailure, err)
			}
			issuingKeyPEM, err := sealCAKey(keys, td, ca.Key)
			if err != nil {
				return fail(ExitFailure, err)
			}
			for _, f := range []struct {
				name string
				data []byte
			}{
				{caRootKey, rootKeyPEM},
				{caRootCert, certPEM(ca.Root)},
				{caIssuingKey, issuingKeyPEM},
				{caIssuingCert, certPEM(ca.Issuing)},
			} {
				if err := keygen.WriteNew(filepath.Join(caDir, f.name), f.data); err != nil {
					return fail(ExitUsage, err)
				}
			}
			p := func(name string) string { return filepath.Join(caDir, name) }
			day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
			fmt.Fprintf(stdio.Out, "CA for trust domain %s in %s\n", td.Name(), caDir)
			fmt.Fprintf(stdio.Out, "%s: root certificate, valid until %s; give it to every service as its trust anchor\n", p(caRootCert), day(ca.Root.NotAfter))
			fmt.Fprintf(stdio.Out, "%s: root private key, mode 0600; move it offline: it is needed only to make a new issuing CA\n", p(caRootKey))
			fmt.Fprintf(stdio.Out, "%s: issuing CA certificate, valid until %s\n", p(caIssuingCert), day(ca.Issuing.NotAfter))
			fmt.Fprintf(stdio.Out, "%s: issuing private key, mode 0600, sealed with the master key from %s\n", p(caIssuingKey), keys.Source)
			return nil
		},
	}
	c.Flags().StringVar(&trustDomain, "trust-domain", "", "the trust domain `NAME`, e.g. pay.internal")
	c.Flags().StringVar(&data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	return c
}

func newCAIssueCmd(stdio Stdio) *cobra.Command {
	var (
		data, idFlag, out string
		dns, ips          []string
		ttl               = mtls.DefaultTTL
	)
	c := &cobra.Command{
		Use:   "issue --id SPIFFE-ID [--dns NAME]... [--ip ADDR]... [--ttl DURATION] --out NAME [--data DIR]",
		Short: "Issue a service certificate (NAME.pem) and its key (NAME.key)",
		Long: `Issue a short-lived certificate for a service: one URI SAN, its SPIFFE ID,
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
an output file exists.`,
		Example: `  rampart ca issue --id spiffe://pay.internal/ns/prod/sa/ledger --dns ledger.pay.internal --out ledger
  rampart ca issue --id spiffe://pay.internal/control-plane --dns cp.pay.internal --ip 127.0.0.1 --ttl 7d --out cp`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if idFlag == "" {
				return usagef("--id is required (e.g. spiffe://pay.internal/ns/prod/sa/ledger)")
			}
			if out == "" {
				return usagef("--out is required: the certificate goes to NAME.pem, its key to NAME.key")
			}
			id, err := spiffeid.FromString(idFlag)
			if err != nil {
				return usagef("--id %q: %v", idFlag, err)
			}
			if ttl <= 0 || ttl > mtls.MaxTTL {
				return usagef("--ttl %v: want more than 0 and at most %v", ttl, mtls.MaxTTL)
			}
			names := slices.Clone(dns)
			for _, n := range dns {
				if _, err := netip.ParseAddr(n); err == nil {
					return usagef("--dns %s is an IP address: use --ip %s", n, n)
				}
			}
			for _, ip := range ips {
				a, err := netip.ParseAddr(ip)
				if err != nil || a.Zone() != "" {
					return usagef("--ip %q: want an IP address such as 192.0.2.1 or 2001:db8::1", ip)
				}
				names = append(names, a.Unmap().String())
			}
			certPath, keyPath := out+".pem", out+".key"
			for _, p := range []string{certPath, keyPath} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					return fail(ExitUsage, fmt.Errorf("%s: %w", p, keygen.ErrExists))
				}
			}
			_, _, ca, err := openCA(data)
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
			chain, err := ca.Issue(id, names, ttl, key.Public(), now)
			if err != nil {
				return fail(ExitUsage, mtlsError(err))
			}
			keyPEM, err := keygen.KeyPEM(key)
			if err != nil {
				return fail(ExitFailure, err)
			}
			if err := keygen.WriteNew(keyPath, keyPEM); err != nil {
				return fail(ExitUsage, err)
			}
			if err := keygen.WriteNew(certPath, certPEM(chain...)); err != nil {
				return fail(ExitUsage, fmt.Errorf("%w (the key was written to %s)", err, keyPath))
			}
			leaf := chain[0]
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
			if w := caExpiryNote(ca, now); w != "" {
				fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", w)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&idFlag, "id", "", "the service's SPIFFE `ID`, e.g. spiffe://pay.internal/ns/prod/sa/ledger")
	f.StringArrayVar(&dns, "dns", nil, "a DNS `NAME` for the certificate (repeatable)")
	f.StringArrayVar(&ips, "ip", nil, "an IP address (`ADDR`) for the certificate (repeatable)")
	f.Var((*durationFlag)(&ttl), "ttl", "the certificate's lifetime (`DURATION`: 90m, 24h, 7d; at most 720h)")
	f.StringVar(&out, "out", "", "write `NAME`.pem and NAME.key (must not exist)")
	f.StringVar(&data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	return c
}

func newCARenewCmd(stdio Stdio) *cobra.Command {
	var (
		certFile, keyFile, server, caFile string
		within                            durationFlag
	)
	c := &cobra.Command{
		Use:   "renew --cert FILE --key FILE --server URL [--ca FILE] [--if-expires-within DURATION]",
		Short: "Renew a service certificate at the control plane, in place",
		Long: `Renew a service certificate at rampart serve's ` + caRenewPath + `, for
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
usage, or unreadable or mismatched files.`,
		Example: `  rampart ca renew --cert payments.pem --key payments.key --server https://localhost:8443 --ca DATA/ca/root.pem
  rampart ca renew --cert payments.pem --key payments.key --server https://cp.pay.internal:8443 --if-expires-within 8h`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case certFile == "" || keyFile == "":
				return usagef("--cert and --key are required: the certificate to renew and its key")
			case server == "":
				return usagef("--server is required: the control plane's URL, e.g. https://cp.pay.internal:8443")
			case within < 0:
				return usagef("--if-expires-within %v: want 0 or more", time.Duration(within))
			}
			renewURL, err := renewalURL(server)
			if err != nil {
				return usagef("--server %q: %v", server, err)
			}
			var roots *x509.CertPool
			if caFile != "" {
				data, err := os.ReadFile(caFile)
				if err != nil {
					return fail(ExitUsage, err)
				}
				roots = x509.NewCertPool()
				if !roots.AppendCertsFromPEM(data) {
					return fail(ExitUsage, fmt.Errorf("--ca %s: no PEM certificate", caFile))
				}
			}
			finished, err := finishRenewal(certFile, keyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			if finished {
				fmt.Fprintf(stdio.Err, "rampart: %s.new: finished a renewal stopped before its last rename\n", certFile)
			}
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fail(ExitUsage, fmt.Errorf("%s, %s: %w", certFile, keyFile, err))
			}
			leaf := cert.Leaf
			id, err := mtls.IDOf(leaf)
			if err != nil {
				return fail(ExitUsage, fmt.Errorf("%s: not a service certificate: %w", certFile, mtlsError(err)))
			}
			now := time.Now()
			if c.Flags().Changed("if-expires-within") && leaf.NotAfter.Sub(now) > time.Duration(within) {
				fmt.Fprintf(stdio.Out, "not due: %s (%s) expires at %s, more than %s from now\n",
					certFile, id, leaf.NotAfter.UTC().Format(time.RFC3339), shortDuration(time.Duration(within)))
				return nil
			}
			if !now.Before(leaf.NotAfter) {
				return fail(ExitFailure, fmt.Errorf("%s expired at %s: an expired certificate cannot renew itself; issue a new one (rampart ca issue --id %s)",
					certFile, leaf.NotAfter.UTC().Format(time.RFC3339), id))
			}
			ctx, cancel := context.WithTimeout(c.Context(), 60*time.Second)
			defer cancel()
			r := mtls.NewStatic(cert)
			next, err := mtls.Renewer(renewURL, mtls.RenewalClient(r, roots), nil)(ctx, r.Certificate())
			if err != nil {
				err = mtlsError(err)
				var ua x509.UnknownAuthorityError
				if errors.As(err, &ua) && caFile == "" {
					err = fmt.Errorf("%w\nhint: a control plane with a private CA's certificate? pass its root with --ca (e.g. DATA/ca/root.pem)", err)
				}
				return fail(ExitFailure, err)
			}
			if err := mtls.WriteFiles(certFile, keyFile, next); err != nil {
				return fail(ExitFailure, mtlsError(err))
			}
			nl := next.Leaf
			fmt.Fprintf(stdio.Out, "renewed %s: %s, serial %x, expires %s (%s)\n", certFile, id, nl.SerialNumber,
				nl.NotAfter.UTC().Format(time.RFC3339), shortDuration(nl.NotAfter.Sub(nl.NotBefore)-mtls.Backdate))
			fmt.Fprintf(stdio.Out, "%s: its new key, mode 0600\n", keyFile)
			if l, ok := mtls.LineageOf(nl); ok {
				fmt.Fprintf(stdio.Out, "lineage: first issued %s; renewable until %s at rampart serve's default --ca-max-lineage\n",
					l.Since.UTC().Format(time.RFC3339), l.Since.Add(mtls.DefaultMaxLineage).UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&certFile, "cert", "", "the certificate chain `FILE` to renew (PEM), replaced in place")
	f.StringVar(&keyFile, "key", "", "its private key `FILE` (PEM), replaced by a new key")
	f.StringVar(&server, "server", "", "the control plane's `URL` (https://HOST:PORT)")
	f.StringVar(&caFile, "ca", "", "the roots (`FILE`, PEM) the control plane's certificate chains to (default: the system roots)")
	f.Var(&within, "if-expires-within", "renew only if the certificate expires within `DURATION` (8h, 1d); else do nothing")
	return c
}

// renewalURL is the renewal endpoint of the control plane at server: its
// URL with the path caRenewPath (unless it has it already).
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
	if !strings.HasSuffix(u.Path, caRenewPath) {
		u.Path = strings.TrimSuffix(u.Path, "/") + caRenewPath
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
				return fail(ExitUsage, fmt.Errorf("%s is not the key of %s", rootKeyFile, filepath.Join(dir, caDirName, caRootCert)))
			}
			if err != nil {
				return fail(ExitUsage, mtlsError(err))
			}
			retired, err := rotateCAFiles(dir, keys, old, ca)
			if err != nil {
				return fail(ExitFailure, err)
			}
			caDir := filepath.Join(dir, caDirName)
			day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
			fmt.Fprintf(stdio.Out, "new issuing CA for trust domain %s, valid until %s\n", ca.TrustDomain.Name(), day(ca.Issuing.NotAfter))
			fmt.Fprintf(stdio.Out, "%s, %s: replaced; the old certificate is in %s, its key is gone\n",
				filepath.Join(caDir, caIssuingCert), filepath.Join(caDir, caIssuingKey), retired)
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
func openCA(data string) (dir string, keys *masterkey.Keys, ca *mtls.CA, err error) {
	dir, err = dataDir(data)
	if err != nil {
		return "", nil, nil, fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	if !caExists(dir) {
		return "", nil, nil, fail(ExitUsage, fmt.Errorf("no CA in %s: run 'rampart ca init --trust-domain NAME' first", filepath.Join(dir, caDirName)))
	}
	if keys, err = masterkey.Load(dir, false); err != nil {
		return "", nil, nil, fail(ExitUsage, err)
	}
	if ca, err = loadCA(dir, keys); err != nil {
		return "", nil, nil, fail(ExitUsage, err)
	}
	return dir, keys, ca, nil
}

// rotateCAFiles puts the issuing CA next in place of old in DATA/ca and
// returns where the old certificate went. The new key and certificate
// are written whole beside the old ones first, then renamed into place,
// the key first: if it stops in between, loadCA finds a key that is not
// the certificate's and says which file finishes the job.
func rotateCAFiles(dataDir string, keys *masterkey.Keys, old, next *mtls.CA) (string, error) {
	dir := filepath.Join(dataDir, caDirName)
	retiredDir := filepath.Join(dir, caRetired)
	if err := os.MkdirAll(retiredDir, 0o700); err != nil {
		return "", err
	}
	retired := filepath.Join(retiredDir, fmt.Sprintf("issuing-%x.pem", old.Issuing.SerialNumber))
	if err := keygen.WriteNew(retired, certPEM(old.Issuing)); errors.Is(err, keygen.ErrExists) {
		// Kept by an earlier run that failed later: the same certificate
		// (its serial names it), so this run may go on.
		if data, rerr := os.ReadFile(retired); rerr != nil || !bytes.Equal(data, certPEM(old.Issuing)) {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	keyPEM, err := sealCAKey(keys, next.TrustDomain, next.Key)
	if err != nil {
		return "", err
	}
	certFile, keyFile := filepath.Join(dir, caIssuingCert), filepath.Join(dir, caIssuingKey)
	for name, data := range map[string][]byte{keyFile + ".new": keyPEM, certFile + ".new": certPEM(next.Issuing)} {
		os.Remove(name) // a leftover of an earlier run that failed before it used it
		if err := keygen.WriteNew(name, data); err != nil {
			return "", err
		}
	}
	if err := os.Rename(keyFile+".new", keyFile); err != nil {
		return "", err
	}
	if err := os.Rename(certFile+".new", certFile); err != nil {
		return "", fmt.Errorf("%w: the new key is in place: rename %s.new to %s", err, certFile, certFile)
	}
	// The renames last through a crash once the directory is on disk.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return retired, nil
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

// caExpiryNote says when the issuing CA expires soon (or has), with what
// to do; "" when it has more than caExpiryWarning left.
func caExpiryNote(ca *mtls.CA, now time.Time) string {
	end := ca.Issuing.NotAfter
	switch {
	case !now.Before(end):
		return fmt.Sprintf("the issuing CA expired on %s: no certificate can be issued or renewed; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	case end.Sub(now) < caExpiryWarning:
		return fmt.Sprintf("the issuing CA expires on %s, and certificates are cut short at that time; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	}
	return ""
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// caKEK is the key that seals the issuing key.
func caKEK(keys *masterkey.Keys) ([]byte, error) {
	return sealed.DeriveKey(keys.SigningKeyKEK, caKeyPurpose)
}

func caSealLabel(td spiffeid.TrustDomain) string { return caKeyPurpose + " " + td.Name() }

func sealCAKey(keys *masterkey.Keys, td spiffeid.TrustDomain, k crypto.Signer) ([]byte, error) {
	kek, err := caKEK(keys)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	s, err := sealed.Seal(kek, caSealLabel(td), der)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: caSealedKeyType, Headers: map[string]string{
		"Sealed-With": "rampart master key, AES-256-GCM", "Trust-Domain": td.Name(),
	}, Bytes: s}), nil
}

// caExists reports whether DATA/ca holds an issuing CA.
func caExists(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, caDirName, caIssuingCert))
	return err == nil
}

// loadCA reads the CA of DATA/ca: the root and issuing certificates and
// the sealed issuing key (the root key is not needed, and may be offline).
func loadCA(dataDir string, keys *masterkey.Keys) (*mtls.CA, error) {
	dir := filepath.Join(dataDir, caDirName)
	root, err := readCert(filepath.Join(dir, caRootCert))
	if err != nil {
		return nil, err
	}
	issuing, err := readCert(filepath.Join(dir, caIssuingCert))
	if err != nil {
		return nil, err
	}
	if err := issuing.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%s is not signed by %s: %w", caIssuingCert, caRootCert, err)
	}
	var td spiffeid.TrustDomain
	if len(issuing.URIs) == 1 {
		td, err = spiffeid.TrustDomainFromURI(issuing.URIs[0])
	}
	if td.IsZero() {
		return nil, fmt.Errorf("%s names no trust domain (want a spiffe://TRUST-DOMAIN URI SAN): %v", filepath.Join(dir, caIssuingCert), err)
	}
	// The root must speak for the same trust domain (the issuing CA's is
	// bound to the sealed key, whose label names it).
	if _, err := mtls.NewBundle(td, root); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caRootCert), mtlsError(err))
	}
	keyFile := filepath.Join(dir, caIssuingKey)
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != caSealedKeyType {
		return nil, fmt.Errorf("%s: not a %s", keyFile, caSealedKeyType)
	}
	kek, err := caKEK(keys)
	if err != nil {
		return nil, err
	}
	der, err := sealed.Open(kek, caSealLabel(td), b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (master key from %s)", keyFile, err, keys.Source)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	pub, ok2 := issuing.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !ok2 || !pub.Equal(signer.Public()) {
		if _, err := os.Stat(filepath.Join(dir, caIssuingCert+".new")); err == nil {
			return nil, fmt.Errorf("%s is not the key of %s: 'rampart ca rotate' stopped halfway; finish it: mv %s.new %s",
				keyFile, caIssuingCert, filepath.Join(dir, caIssuingCert), filepath.Join(dir, caIssuingCert))
		}
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, caIssuingCert)
	}
	return &mtls.CA{Root: root, Issuing: issuing, Key: signer, TrustDomain: td}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// caRenewal is rampart serve's renewal endpoint (mount it at caRenewPath)
// for the CA in DATA/ca, renewing as p says, and the CA, whose root client
// certificates must chain to; all nil when there is no CA. The endpoint
// works only over TLS with client certificates asked for.
func caRenewal(dataDir string, keys *masterkey.Keys, p mtls.RenewPolicy) (http.Handler, *mtls.CA, error) {
	if !caExists(dataDir) {
		return nil, nil, nil
	}
	ca, err := loadCA(dataDir, keys)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	if p.MaxLifetime < 0 || p.MaxLifetime > mtls.MaxTTL {
		return nil, nil, fmt.Errorf("CA renewal lifetime %v: want at most %v", p.MaxLifetime, mtls.MaxTTL)
	}
	if p.MaxLineage < 0 {
		return nil, nil, fmt.Errorf("--ca-max-lineage %v: want more than 0", p.MaxLineage)
	}
	return mtls.RenewHandler(ca, p), ca, nil
}

// caRootKeyWarning is rampart serve's warning while the CA's root key is in
// the data directory, online ("" when it is not): whoever reads it can
// make issuing CAs for the trust domain.
func caRootKeyWarning(dataDir string) string {
	f := filepath.Join(dataDir, caDirName, caRootKey)
	if _, err := os.Lstat(f); err != nil {
		return ""
	}
	return fmt.Sprintf("the CA's root key %s is online, next to the control plane: whoever reads it can make issuing CAs for the trust domain; move it offline (rampart ca rotate --root-key FILE brings it back once a year)", f)
}

// parseCAMaxLineage reads --ca-max-lineage: days ("90d") or a Go
// duration; "" is the default.
func parseCAMaxLineage(s string) (time.Duration, error) {
	if s == "" {
		return mtls.DefaultMaxLineage, nil
	}
	var d durationFlag
	if err := d.Set(s); err != nil || d <= 0 {
		return 0, fmt.Errorf("--ca-max-lineage %q: want days (90d) or a duration (2160h), more than 0", s)
	}
	return time.Duration(d), nil
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
