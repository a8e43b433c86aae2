package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/controlplane"
	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/internal/util/pinlint"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

func newBundleCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Sign, verify and publish pin bundles (dynamic pinning)",
		Long: `Sign, verify and publish pin bundles.

A pin bundle is a policy signed as a JWS (RFC 7515, ES256 by default) with a
name, a version that only goes up, and an expiry. Clients embed the public
key and fetch the bundle from the control plane (pin/bundle.Updater), so pins
change without shipping a new app. The signing key stays offline: the control
plane only checks signatures. The format is in docs/bundle.md.

  rampart bundle keygen --out bundle-2027.key
  rampart bundle sign --policy pins.yaml --key bundle-2027.key --name mobile --version 7 --expires 90d -o mobile-7.jws
  rampart bundle verify --bundle-key bundle-2027.pub mobile-7.jws
  rampart bundle publish --server http://127.0.0.1:8080 mobile-7.jws

` + bundleExitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newBundleKeygenCmd(stdio), newBundleSignCmd(stdio), newBundleVerifyCmd(stdio), newBundlePublishCmd(stdio))
	return c
}

const bundleExitCodesHelp = `Exit status:
  0  success
  1  refused: the bundle does not verify (verify), or the control plane
     refused it or is unreachable (publish)
  2  usage error, unreadable input, or invalid policy`

func newBundleKeygenCmd(stdio Stdio) *cobra.Command {
	var out, alg string
	var asJSON bool
	c := &cobra.Command{
		Use:   "keygen --out KEY [--alg ALG] [--json]",
		Short: "Make a bundle signing key (KEY, 0600) and its public half (KEY.pub)",
		Long: `Make a bundle signing key.

The private key goes to --out (PKCS#8 PEM, mode 0600, never overwritten); the
public key to the same name with .pub instead of .key (or appended). Keep the
private key offline; ship the public key in clients (rampart pin export
--bundle-key) and give it to rampart serve --bundle-key. The key ID (kid)
is the RFC 7638 thumbprint of the public key.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			k, err := bundle.GenerateKey(bundle.Algorithm(alg))
			if err != nil {
				return usagef("%v", err)
			}
			priv, err := bundle.MarshalPrivateKey(k)
			if err != nil {
				return err
			}
			pub, err := bundle.MarshalPublicKey(k.Public())
			if err != nil {
				return err
			}
			kid, err := bundle.KeyID(k.Public())
			if err != nil {
				return err
			}
			pubFile := strings.TrimSuffix(out, ".key") + ".pub"
			if _, err := os.Lstat(pubFile); err == nil {
				return fail(ExitUsage, fmt.Errorf("%s: %w", pubFile, secrets.ErrExists))
			}
			if err := secrets.WriteNew(out, priv); err != nil {
				return fail(ExitUsage, err)
			}
			if err := secrets.WriteNew(pubFile, pub); err != nil {
				return fail(ExitUsage, err)
			}
			os.Chmod(pubFile, 0o644) // public: readable by whoever deploys it
			if alg == "" {
				alg = "ES256"
			}
			if asJSON {
				return writeJSON(stdio.Out, map[string]string{"key": out, "public_key": pubFile, "kid": kid, "alg": alg})
			}
			fmt.Fprintf(stdio.Out, "private key %s (keep offline)\npublic key  %s\nkid         %s\nalg         %s\n", out, pubFile, kid, alg)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the private key to `FILE`")
	c.Flags().StringVar(&alg, "alg", "ES256", "signature algorithm `ALG`: ES256, ES384 or EdDSA")
	c.Flags().BoolVar(&asJSON, "json", false, `print {"key", "public_key", "kid", "alg"}`)
	return c
}

// parseExpiry reads --expires: a date (the bundle holds through the end of
// that day, UTC, like a policy's expires) or a duration from now ("90d",
// "720h").
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.AddDate(0, 0, 1), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			if n > 100000 { // AddDate would wrap around; far beyond any lifetime anyway
				return time.Time{}, fmt.Errorf("--expires %q: too far away; a bundle may live at most %d days", s, bundle.MaxLifetime/(24*time.Hour))
			}
			return now.AddDate(0, 0, n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--expires %q: want a date (YYYY-MM-DD, inclusive) or a duration (90d, 720h)", s)
}

const bundleSignLong = `Sign a policy as a pin bundle (JWS compact serialization) to stdout or -o.

--version must be greater than every version clients have seen: they refuse
older or equal ones (rollback protection). --expires is a date (inclusive,
UTC) or a duration from now (90d), at most 366 days away; clients refuse an
expired bundle and fall back to the policy they ship with. Choose it longer
than your publishing interval and as short as you can: a control plane that
keeps serving this bundle holds clients on it until then.

The policy must pass rampart pin lint without errors (a rule with
include_subdomains on a public suffix is refused); its lint warnings are
printed.

Exit status: 0 signed, 2 usage, unreadable input, invalid policy or a lint
error.`

// signOptions are rampart bundle sign's flags.
type signOptions struct {
	policyFile, keyFile, name, expires, out string
	version                                 int64
}

func newBundleSignCmd(stdio Stdio) *cobra.Command {
	var o signOptions
	c := &cobra.Command{
		Use:   "sign --policy FILE --key KEY --version N --expires DATE [--name NAME] [-o FILE]",
		Short: "Sign a policy as a pin bundle",
		Long:  bundleSignLong,
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return o.run(stdio, time.Now().UTC().Truncate(time.Second))
		},
	}
	f := c.Flags()
	f.StringVar(&o.policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	f.StringVar(&o.keyFile, "key", "", "signing key `FILE` (rampart bundle keygen)")
	f.StringVar(&o.name, "name", "default", "bundle `NAME`, as clients ask for it (/v1/bundles/NAME)")
	f.Int64Var(&o.version, "version", 0, "bundle version `N`, greater than any before")
	f.StringVar(&o.expires, "expires", "", "expiry: a `DATE` (YYYY-MM-DD, inclusive) or a duration (90d), at most 366 days away")
	f.StringVarP(&o.out, "output", "o", "", "write the bundle to `FILE`")
	return c
}

// expiry checks the required flags and reads --expires: after now, within
// bundle.MaxLifetime.
func (o signOptions) expiry(now time.Time) (time.Time, error) {
	switch {
	case o.policyFile == "":
		return time.Time{}, usagef("--policy is required")
	case o.keyFile == "":
		return time.Time{}, usagef("--key is required")
	case o.version < 1:
		return time.Time{}, usagef("--version is required and must be at least 1")
	case o.expires == "":
		return time.Time{}, usagef("--expires is required")
	}
	exp, err := parseExpiry(o.expires, now)
	if err != nil {
		return time.Time{}, usagef("%v", err)
	}
	if !exp.After(now) {
		return time.Time{}, usagef("--expires %s is in the past", o.expires)
	}
	if exp.Sub(now) > bundle.MaxLifetime {
		return time.Time{}, usagef("--expires %s: a bundle may live at most %d days (until %s): a control plane serving it could hold clients on it that long",
			o.expires, bundle.MaxLifetime/(24*time.Hour), now.Add(bundle.MaxLifetime).Format(time.DateOnly))
	}
	return exp, nil
}

func (o signOptions) run(stdio Stdio, now time.Time) error {
	exp, err := o.expiry(now)
	if err != nil {
		return err
	}
	policy, err := pin.LoadPolicy(o.policyFile)
	if err != nil {
		return fail(ExitUsage, err)
	}
	if err := lintBeforeSigning(stdio, o.policyFile, policy, now); err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(o.keyFile)
	if err != nil {
		return fail(ExitUsage, err)
	}
	key, err := bundle.ParsePrivateKey(keyPEM)
	if err != nil {
		return fail(ExitUsage, fmt.Errorf("%s: %w", o.keyFile, err))
	}
	jws, err := bundle.Sign(key, o.name, o.version, now, exp, policy)
	if err != nil {
		return fail(ExitUsage, err)
	}
	kid, _ := bundle.KeyID(key.Public())
	if o.out == "" {
		fmt.Fprintln(stdio.Out, jws)
	} else if err := os.WriteFile(o.out, []byte(jws+"\n"), 0o644); err != nil {
		return fail(ExitUsage, err)
	}
	fmt.Fprintf(stdio.Err, "rampart: signed bundle %s version %d (%d domain(s)), kid %s, expires %s\n",
		o.name, o.version, len(policy.Domains()), kid, exp.Format(time.RFC3339))
	return nil
}

// lintBeforeSigning does what rampart pin lint says: its errors refuse the
// policy, its warnings are shown.
func lintBeforeSigning(stdio Stdio, policyFile string, policy *pin.Policy, now time.Time) error {
	var lintErrs []string
	for _, f := range pinlint.Lint(policy.ReportURI(), policy.Domains(), policy.CTLogs(), pinlint.Options{Now: now}) {
		where := f.Domain
		if where == "" {
			where = "policy"
		}
		if f.Severity == pinlint.Error {
			lintErrs = append(lintErrs, fmt.Sprintf("%s: %s (%s)", where, f.Message, f.Rule))
			continue
		}
		fmt.Fprintf(stdio.Err, "rampart: warning: %s: %s (%s)\n", where, f.Message, f.Rule)
	}
	if len(lintErrs) > 0 {
		return fail(ExitUsage, fmt.Errorf("%s: refusing to sign; rampart pin lint finds:\n  %s", policyFile, strings.Join(lintErrs, "\n  ")))
	}
	return nil
}

// readBundleArg reads a bundle from a file, or stdin for "-".
func readBundleArg(stdio Stdio, name string) (string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(stdio.In, 2<<20))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// bundleInfo is bundle verify's JSON: the bundle's header as the admin
// API describes bundles (api.Bundle, whose times always encode, whatever
// the year), and its policy.
type bundleInfo struct {
	api.Bundle
	Policy json.RawMessage `json:"policy"`
}

func newBundleInfo(b *bundle.Bundle) (bundleInfo, error) {
	policy, err := b.Policy.MarshalJSON()
	if err != nil {
		return bundleInfo{}, err
	}
	header := api.Bundle{Name: b.Name, Version: b.Version, KeyID: b.KeyID, IssuedAt: api.NewTime(b.IssuedAt), ExpiresAt: api.NewTime(b.ExpiresAt)}
	return bundleInfo{header, policy}, nil
}

func newBundleVerifyCmd(stdio Stdio) *cobra.Command {
	var pubs, oldPubs []string
	var name string
	var newerThan int64
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --bundle-key FILE [--name NAME] [--newer-than N] [--json] BUNDLE",
		Short: "Verify a pin bundle as a client would",
		Long: `Verify a pin bundle (a file, or - for stdin) exactly as the client library
does: the signature by one of the --bundle-key keys (the same public keys
rampart serve --bundle-key and rampart pin export --bundle-key take), the
algorithm, the payload, its lifetime (at most 366 days), the policy inside
(with its backup-pin rule), expiry; with --name, the name; with
--newer-than N, that the version is above N (what a client that has N would
demand). Prints the bundle's header fields and policy.

Exit status: 0 valid, 1 refused (the reason on stderr), 2 usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if len(oldPubs) > 0 {
				// Not cobra's MarkDeprecated, which writes to stdout.
				fmt.Fprintln(stdio.Err, "rampart: warning: --pub is deprecated; use --bundle-key")
			}
			pubs := append(append([]string(nil), pubs...), oldPubs...)
			if len(pubs) == 0 {
				return usagef("--bundle-key is required")
			}
			keys, err := controlplane.LoadKeys(pubs)
			if err != nil {
				return fail(ExitUsage, err)
			}
			jws, err := readBundleArg(stdio, a[0])
			if err != nil {
				return fail(ExitUsage, err)
			}
			b, err := bundle.Verify(jws, keys, time.Now())
			if err != nil {
				return fail(ExitFailure, fmt.Errorf("REFUSED: %w", err))
			}
			if name != "" && b.Name != name {
				return fail(ExitFailure, fmt.Errorf("REFUSED: bundle is named %q, not %q", b.Name, name))
			}
			if c.Flags().Changed("newer-than") && b.Version <= newerThan {
				return fail(ExitFailure, fmt.Errorf("REFUSED: %w: version %d is not newer than %d", bundle.ErrRollback, b.Version, newerThan))
			}
			info, err := newBundleInfo(b)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(stdio.Out, info)
			}
			fmt.Fprintf(stdio.Out, "valid bundle %s version %d\n  kid      %s\n  issued   %s\n  expires  %s\n  domains ",
				info.Name, info.Version, info.KeyID, info.IssuedAt.Format(time.RFC3339), info.ExpiresAt.Format(time.RFC3339))
			for _, d := range b.Policy.Domains() {
				fmt.Fprintf(stdio.Out, " %s", d.Name)
			}
			fmt.Fprintln(stdio.Out)
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&pubs, "bundle-key", nil, "trusted public key `FILE` (PEM or JWK/JWKS; repeatable)")
	// --pub was this flag's name; kept working, out of the help.
	f.StringArrayVar(&oldPubs, "pub", nil, "trusted public key `FILE`")
	f.MarkHidden("pub")
	f.StringVar(&name, "name", "", "require this bundle `NAME`")
	f.Int64Var(&newerThan, "newer-than", 0, "require a version greater than `N`")
	f.BoolVar(&asJSON, "json", false, `print {"name", "version", "kid", "issued_at", "expires_at", "policy"}`)
	return c
}

const bundlePublishLong = `Publish a signed pin bundle (a file, or - for stdin) on the control plane's
admin API. The admin token is the first line of --token-file, else
$RAMPART_ADMIN_TOKEN, else DATA/admin-token: the file rampart serve makes on
first start in its data directory (--data, else $RAMPART_DATA, else
~/.local/share/rampart), so on the control plane's host no flag is needed.
The server verifies the signature with its --bundle-key keys and refuses a
version that is not newer than the latest.

--server must be https, or http to localhost or a loopback address (the
token would otherwise cross the network in the clear). A certificate from a
private CA (rampart ca init) needs its root: --ca DATA/ca/root.pem.

Exit status: 0 published, 1 refused by the server or unreachable, 2 usage
(no token, an http URL that is not loopback, unreadable input).`

// publishOptions are rampart bundle publish's flags.
type publishOptions struct {
	server, tokenFile, caFile, data string
}

func newBundlePublishCmd(stdio Stdio) *cobra.Command {
	var o publishOptions
	c := &cobra.Command{
		Use:   "publish --server URL [--token-file FILE | --data DIR] [--ca FILE] BUNDLE",
		Short: "Publish a signed bundle on the control plane",
		Long:  bundlePublishLong,
		Example: `  rampart bundle publish --server http://127.0.0.1:8080 mobile-7.jws
  rampart bundle publish --server https://cp.example.com --ca root.pem --token-file admin-token mobile-7.jws`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			return o.run(c.Context(), stdio, a[0])
		},
	}
	f := c.Flags()
	f.StringVar(&o.server, "server", "", "control plane base `URL`")
	f.StringVar(&o.tokenFile, "token-file", "", "read the admin token from `FILE`")
	f.StringVar(&o.data, "data", "", "rampart serve's data `DIR`, for DIR/admin-token (default $RAMPART_DATA or ~/.local/share/rampart)")
	f.StringVar(&o.caFile, "ca", "", "trust the control plane's certificate through these roots (`FILE`, PEM)")
	return c
}

// adminServerURL checks --server: the control plane's base URL, https or
// http to a loopback address, with no credentials, query or fragment.
func adminServerURL(server string) (*url.URL, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return nil, usagef("--server %q: want an https:// URL", server)
	}
	if u.User != nil {
		return nil, usagef("--server %s: no user name or password in the URL; the admin token is the credential", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--server %s: want the control plane's base URL, without a query or fragment", u.Redacted())
	}
	if u.Scheme == "http" && !httpx.IsLoopbackHost(u.Hostname()) {
		return nil, usagef("--server %s: the admin token would cross the network in the clear; use https", server)
	}
	return u, nil
}

// adminClient is the HTTP client of the admin commands: the default
// transport (for its proxy settings; an http URL to a loopback address
// never goes through a proxy), the roots of caFile if given, and no
// redirects: a redirect would carry the admin token elsewhere, perhaps over
// http, and the admin API never redirects.
func adminClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := loadRoots(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func (o publishOptions) run(ctx context.Context, stdio Stdio, arg string) error {
	u, err := adminServerURL(o.server)
	if err != nil {
		return err
	}
	token, err := publishToken(o.tokenFile, o.data)
	if err != nil {
		return err
	}
	jws, err := readBundleArg(stdio, arg)
	if err != nil {
		return fail(ExitUsage, err)
	}
	client, err := adminClient(o.caFile)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("v1", "admin", "bundles").String(), bytes.NewReader([]byte(jws)))
	if err != nil {
		return usagef("%v", err)
	}
	req.Header.Set("Content-Type", "application/jose")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return adminDialError(stdio, err, o.caFile)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		var e api.Error
		if json.Unmarshal(body, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(body))
		}
		return fail(ExitFailure, fmt.Errorf("the server refused the bundle (%s): %s", resp.Status, e.Message))
	}
	var published api.PublishedBundle
	if err := json.Unmarshal(body, &published); err != nil {
		return fail(ExitFailure, errors.New("the server answered 201 with a body that is not JSON"))
	}
	fmt.Fprintf(stdio.Out, "published bundle %s version %d\n", published.Name, published.Version)
	return nil
}

// adminDialError is the failure of a request to the admin API, with a hint
// for the TLS errors a private CA or a wrong name cause.
func adminDialError(stdio Stdio, err error, caFile string) error {
	var unknownCA x509.UnknownAuthorityError
	var wrongName x509.HostnameError
	switch {
	case errors.As(err, &unknownCA) && caFile == "":
		fmt.Fprintf(stdio.Err, "rampart: %v\nrampart: hint: a certificate from a private CA? pass its root with --ca (for rampart ca init: --ca DATA/ca/root.pem)\n", err)
		return fail(ExitFailure, nil)
	case errors.As(err, &unknownCA):
		fmt.Fprintf(stdio.Err, "rampart: %v\nrampart: hint: the server's certificate does not chain to --ca %s\n", err, caFile)
		return fail(ExitFailure, nil)
	case errors.As(err, &wrongName):
		fmt.Fprintf(stdio.Err, "rampart: %v\nrampart: hint: give --server a name the certificate covers\n", err)
		return fail(ExitFailure, nil)
	}
	return fail(ExitFailure, err)
}

// publishToken finds the admin token: the first line of tokenFile, else
// $RAMPART_ADMIN_TOKEN, else the admin-token file in the data directory.
func publishToken(tokenFile, data string) (string, error) {
	if tokenFile == "" {
		if t := strings.TrimSpace(os.Getenv("RAMPART_ADMIN_TOKEN")); t != "" {
			return t, nil
		}
	}
	file := tokenFile
	if file == "" {
		dir, err := dataDirName(data)
		if err != nil {
			return "", usagef("no admin token: set $RAMPART_ADMIN_TOKEN, --token-file FILE or --data DIR (%v)", err)
		}
		file = filepath.Join(dir, "admin-token")
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return "", usagef("no admin token: set $RAMPART_ADMIN_TOKEN or --token-file FILE, or give --data the directory of rampart serve, which makes DATA/admin-token on first start (%s does not exist)", file)
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fail(ExitUsage, err)
	}
	token, _, _ := strings.Cut(string(raw), "\n")
	if token = strings.TrimSpace(token); token == "" {
		return "", fail(ExitUsage, fmt.Errorf("%s: empty; want the admin token on its first line", file))
	}
	return token, nil
}

// dataDirName is the data directory as rampart serve finds it (dir, else
// $RAMPART_DATA, else $XDG_DATA_HOME/rampart or ~/.local/share/rampart),
// without creating it.
func dataDirName(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("RAMPART_DATA")
	}
	if dir != "" {
		return dir, nil
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "rampart"), nil
}
