package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/keygen"
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
  rampart bundle sign --policy pins.yaml --key bundle-2027.key --name mobile --version 7 --expires 2027-03-31 -o mobile-7.jws
  rampart bundle verify --pub bundle-2027.pub mobile-7.jws
  rampart bundle publish --server https://cp.example.com mobile-7.jws

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newBundleKeygenCmd(stdio), newBundleSignCmd(stdio), newBundleVerifyCmd(stdio), newBundlePublishCmd(stdio))
	return c
}

func newBundleKeygenCmd(stdio Stdio) *cobra.Command {
	var out, alg string
	var asJSON bool
	c := &cobra.Command{
		Use:   "keygen --out KEY [--alg ES256|ES384|EdDSA] [--json]",
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
			k, err := bundle.GenerateKey(alg)
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
				return fail(ExitUsage, fmt.Errorf("%s: %w", pubFile, keygen.ErrExists))
			}
			if err := keygen.WriteNew(out, priv); err != nil {
				return fail(ExitUsage, err)
			}
			if err := keygen.WriteNew(pubFile, pub); err != nil {
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
	c.Flags().StringVar(&alg, "alg", "ES256", "signature algorithm: `ES256`, ES384 or EdDSA")
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
			return now.AddDate(0, 0, n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--expires %q: want a date (YYYY-MM-DD, inclusive) or a duration (90d, 720h)", s)
}

func newBundleSignCmd(stdio Stdio) *cobra.Command {
	var policyFile, keyFile, name, expires, out string
	var version int64
	c := &cobra.Command{
		Use:   "sign --policy FILE --key KEY --version N --expires DATE [--name NAME] [-o FILE]",
		Short: "Sign a policy as a pin bundle",
		Long: `Sign a policy as a pin bundle (JWS compact serialization) to stdout or -o.

--version must be greater than every version clients have seen: they refuse
older or equal ones (rollback protection). --expires is a date (inclusive,
UTC) or a duration from now (90d); clients refuse an expired bundle and fall
back to the policy they ship with. Choose it longer than your publishing
interval and shorter than you would let a stale bundle live.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case policyFile == "":
				return usagef("--policy is required")
			case keyFile == "":
				return usagef("--key is required")
			case version < 1:
				return usagef("--version is required and must be at least 1")
			case expires == "":
				return usagef("--expires is required")
			}
			now := time.Now().UTC().Truncate(time.Second)
			exp, err := parseExpiry(expires, now)
			if err != nil {
				return usagef("%v", err)
			}
			if !exp.After(now) {
				return usagef("--expires %s is in the past", expires)
			}
			policy, err := pin.LoadPolicy(policyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			key, err := bundle.ParsePrivateKey(keyPEM)
			if err != nil {
				return fail(ExitUsage, fmt.Errorf("%s: %w", keyFile, err))
			}
			jws, err := bundle.Sign(key, name, version, now, exp, policy)
			if err != nil {
				return fail(ExitUsage, err)
			}
			kid, _ := bundle.KeyID(key.Public())
			if out == "" {
				fmt.Fprintln(stdio.Out, jws)
			} else if err := os.WriteFile(out, []byte(jws+"\n"), 0o644); err != nil {
				return fail(ExitUsage, err)
			}
			fmt.Fprintf(stdio.Err, "rampart: signed bundle %s version %d (%d domain(s)), kid %s, expires %s\n",
				name, version, len(policy.Domains()), kid, exp.Format(time.RFC3339))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	f.StringVar(&keyFile, "key", "", "signing key `FILE` (rampart bundle keygen)")
	f.StringVar(&name, "name", "default", "bundle `NAME`, as clients ask for it (/v1/bundles/NAME)")
	f.Int64Var(&version, "version", 0, "bundle version `N`, greater than any before")
	f.StringVar(&expires, "expires", "", "expiry: a `DATE` (YYYY-MM-DD, inclusive) or a duration (90d)")
	f.StringVarP(&out, "output", "o", "", "write the bundle to `FILE`")
	return c
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

func loadKeys(files []string) (*bundle.Keys, error) {
	var all *bundle.Keys
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := bundle.ParseKeys(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if all == nil {
			all = k
		} else if err := all.Merge(k); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return all, nil
}

type bundleInfo struct {
	Name      string          `json:"name"`
	Version   int64           `json:"version"`
	KeyID     string          `json:"kid"`
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Policy    json.RawMessage `json:"policy"`
}

func newBundleVerifyCmd(stdio Stdio) *cobra.Command {
	var pubs []string
	var name string
	var newerThan int64
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --pub FILE [--name NAME] [--newer-than N] [--json] BUNDLE",
		Short: "Verify a pin bundle as a client would",
		Long: `Verify a pin bundle (a file, or - for stdin) exactly as the client library
does: the signature by one of the --pub keys, the algorithm, the payload, the
policy inside (with its backup-pin rule), expiry; with --name, the name; with
--newer-than N, that the version is above N (what a client that has N would
demand). Prints the bundle's header fields and policy.

Exit status: 0 valid, 1 refused (the reason on stderr), 2 usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if len(pubs) == 0 {
				return usagef("--pub is required")
			}
			keys, err := loadKeys(pubs)
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
			policy, err := b.Policy.MarshalJSON()
			if err != nil {
				return err
			}
			info := bundleInfo{b.Name, b.Version, b.KeyID, b.IssuedAt.UTC(), b.ExpiresAt.UTC(), policy}
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
	f.StringArrayVar(&pubs, "pub", nil, "trusted public key `FILE` (PEM or JWK/JWKS; repeatable)")
	f.StringVar(&name, "name", "", "require this bundle `NAME`")
	f.Int64Var(&newerThan, "newer-than", 0, "require a version greater than `N`")
	f.BoolVar(&asJSON, "json", false, `print {"name", "version", "kid", "issued_at", "expires_at", "policy"}`)
	return c
}

func newBundlePublishCmd(stdio Stdio) *cobra.Command {
	var server, tokenFile, caFile string
	c := &cobra.Command{
		Use:   "publish --server URL [--token-file FILE] [--ca FILE] BUNDLE",
		Short: "Publish a signed bundle on the control plane",
		Long: `Publish a signed pin bundle (a file, or - for stdin) on the control plane's
admin API. The admin token is $RAMPART_ADMIN_TOKEN or the first line of
--token-file. The server verifies the signature with its --bundle-key keys
and refuses a version that is not newer than the latest.

Exit status: 0 published, 1 refused by the server or unreachable, 2 usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			u, err := url.Parse(server)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return usagef("--server %q: want an https:// URL", server)
			}
			if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
				return usagef("--server %s: the admin token would cross the network in the clear; use https", server)
			}
			token := os.Getenv("RAMPART_ADMIN_TOKEN")
			if tokenFile != "" {
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return fail(ExitUsage, err)
				}
				token, _, _ = strings.Cut(string(data), "\n")
				token = strings.TrimSpace(token)
			}
			if token == "" {
				return usagef("no admin token: set $RAMPART_ADMIN_TOKEN or --token-file")
			}
			jws, err := readBundleArg(stdio, a[0])
			if err != nil {
				return fail(ExitUsage, err)
			}
			client := &http.Client{
				Timeout: 30 * time.Second,
				// A redirect would carry the admin token elsewhere, perhaps
				// over http: the admin API never redirects, so refuse.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
			if caFile != "" {
				pool, err := loadRoots(caFile)
				if err != nil {
					return err
				}
				client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			}
			ctx, cancel := context.WithTimeout(c.Context(), 30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/v1/admin/bundles", bytes.NewReader([]byte(jws)))
			if err != nil {
				return usagef("%v", err)
			}
			req.Header.Set("Content-Type", "application/jose")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				return fail(ExitFailure, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode != http.StatusCreated {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					e.Error = strings.TrimSpace(string(body))
				}
				return fail(ExitFailure, fmt.Errorf("the server refused the bundle (%s): %s", resp.Status, e.Error))
			}
			var info map[string]any
			if err := json.Unmarshal(body, &info); err != nil {
				return fail(ExitFailure, errors.New("the server answered 201 with a body that is not JSON"))
			}
			fmt.Fprintf(stdio.Out, "published bundle %v version %v\n", info["name"], info["version"])
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&server, "server", "", "control plane base `URL`")
	f.StringVar(&tokenFile, "token-file", "", "read the admin token from `FILE`")
	f.StringVar(&caFile, "ca", "", "trust the control plane's certificate through these roots (`FILE`, PEM)")
	return c
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1" || strings.HasPrefix(h, "127.")
}
