package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/app/controlplane"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/export"
)

// exportLong is the help of rampart pin export.
const exportLong = `Render one pin policy as the configuration of a client platform, so that the
policy stays the single source of truth. Formats:

  android         res/xml/network_security_config.xml
  trustkit        Info.plist TSKConfiguration (TrustKit, iOS)
  trustkit-swift  the same as a Swift dictionary for TrustKit.initSharedInstance
  ios             App Transport Security NSPinnedDomains (iOS 14+); needs pin roles
  okhttp          Kotlin CertificatePinner (OkHttp 4.3+; --okhttp3 for OkHttp 3)
  curl            the --pinnedpubkey value, for one domain
  dotnet          a C# ServerCertificateCustomValidationCallback (.NET 6+)
  react-native    initializeSslPinning options (react-native-ssl-public-key-pinning)
  hpkp            a Public-Key-Pins header, for one domain
  json            the normalized policy
  rampart-client  the configuration of Rampart's Android/JVM and JavaScript
                  clients (clients/android, clients/js): the policy, the
                  bundle keys, and with --bundle-url, --bundle-name and
                  --min-version where their updater fetches signed bundles
  jwks            the public keys of signed pin bundles (--bundle-key), alone

--bundle-key embeds the public keys that verify signed pin bundles (dynamic
pinning; docs/bundle.md) where the platform allows: an Info.plist key
(trustkit, ios), a constant (trustkit-swift, okhttp, react-native,
dotnet) or a member (rampart-client). Other formats refuse it; ship the jwks output instead.

What a platform cannot express is never guessed: the export fails saying
which policy field to change, or leaves a rule out (report-only rules on
platforms without report-only mode) with a warning on stderr. Remaining
differences (expiry, subdomain depth) are stated in warnings and in the
output's header comment.

With -o, the file is replaced atomically and one line on stderr says what
was written.

Exit status: 0 exported (warnings on stderr); 2 usage, invalid policy, or
a policy the format cannot express.`

func newExportCmd(stdio Stdio) *cobra.Command {
	var (
		policyFile, format, output, identities string
		bundleKeys                             []string
		o                                      export.Options
	)
	formats := make([]string, 0, len(export.Formats()))
	for _, f := range export.Formats() {
		formats = append(formats, string(f))
	}
	c := &cobra.Command{
		Use:   "export --policy FILE --format FORMAT [--domain DOMAIN] [-o FILE]",
		Short: "Render the policy for Android, iOS, TrustKit, OkHttp, curl, .NET, react-native, HPKP",
		Long:  exportLong,
		Example: `  rampart pin export --policy pins.yaml --format android -o app/src/main/res/xml/network_security_config.xml
  rampart pin export --policy pins.yaml --format curl --domain api.example.com
  rampart pin export --policy pins.yaml --format ios --ios-identities ca`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if policyFile == "" || format == "" {
				return usagef("--policy and --format are required")
			}
			policy, err := pin.LoadPolicy(policyFile)
			if err != nil {
				return fail(ExitUsage, err)
			}
			o.Source = filepath.Base(policyFile)
			o.Identities = export.Identities(identities)
			if len(bundleKeys) > 0 {
				keys, err := controlplane.LoadKeys(bundleKeys)
				if err != nil {
					return fail(ExitUsage, fmt.Errorf("--bundle-key %w", err))
				}
				if o.BundleKeys, err = keys.JWKS(); err != nil {
					return err
				}
			}
			r, err := export.Export(policy, export.Format(format), o)
			if err != nil {
				return fail(ExitUsage, err)
			}
			for _, w := range r.Warnings {
				fmt.Fprintf(stdio.Err, "rampart: warning: %s\n", w)
			}
			if output == "" {
				_, err := stdio.Out.Write(r.Output)
				return err
			}
			if err := writeFileAtomic(output, r.Output, 0o644); err != nil {
				return fail(ExitUsage, err)
			}
			fmt.Fprintf(stdio.Err, "rampart: wrote %s (%s, %d bytes)\n", output, format, len(r.Output))
			return nil
		},
	}
	c.Flags().StringVar(&policyFile, "policy", "", "pin policy `FILE` (YAML or JSON)")
	c.Flags().StringVar(&format, "format", "", "output `FORMAT`: "+strings.Join(formats, ", "))
	c.Flags().StringVar(&o.Domain, "domain", "", "export only the rule for `DOMAIN`")
	c.Flags().StringVarP(&output, "output", "o", "", "write to `FILE` (replaced atomically) instead of stdout")
	c.Flags().BoolVar(&o.OkHTTP3, "okhttp3", false, "okhttp: OkHttp 3 patterns (exact names and \"*.\", one level of subdomains)")
	c.Flags().StringVar(&identities, "ios-identities", "", "ios: the `KIND` of pins to export, leaf, ca or both (default: the one kind the rule has)")
	c.Flags().StringArrayVar(&bundleKeys, "bundle-key", nil, "embed this bundle public key `FILE` (repeatable; see above)")
	c.Flags().StringVar(&o.BundleURL, "bundle-url", "", "rampart-client: the https `URL` of signed bundles (its host must be enforced by the policy)")
	c.Flags().StringVar(&o.BundleName, "bundle-name", "", "rampart-client: the bundle `NAME` the clients expect")
	c.Flags().Int64Var(&o.MinVersion, "min-version", 0, "rampart-client: the lowest bundle `VERSION` the clients accept (ship the latest)")
	c.Flags().DurationVar(&o.MaxAge, "max-age", 60*24*time.Hour, "hpkp: max-age, a `DURATION` (capped at the pin set's expiry)")
	return c
}

// writeFileAtomic replaces path with data: readers see the old file or the
// new one, never a part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rampart-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
