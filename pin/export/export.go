// Package export turns one pin policy into the configuration of every kind
// of client: Android's network security config, TrustKit (plist and Swift),
// iOS App Transport Security, OkHttp, curl, .NET, react-native, HPKP, and
// normalized JSON.
//
// # Faithfulness
//
// Each platform expresses less than a policy does. An export never
// guesses: what a format cannot express either fails with an [*Error] that
// says which policy field to change, or is left out with a warning in
// [Result.Warnings] (a report-only rule on a platform without report-only
// mode is not pinned there). Differences that remain are stated in the
// output's header comment and in the warnings:
//
//   - Expiry: Android, TrustKit and react-native read an expiration date as
//     midnight at the start of that day (Android in the device's time zone,
//     TrustKit in UTC), while a policy's date is inclusive; the exports write
//     the day after. OkHttp, curl, HPKP and App Transport Security have no
//     expiry at all.
//   - Subdomains: OkHttp needs 4.3.0 for "**." patterns (3.x accepts them and
//     never matches); App Transport Security covers one level of subdomains.
//   - Overlapping rules: OkHttp accepts the pins of every matching pattern,
//     where a policy uses only the most specific rule.
package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// Format names an output format.
type Format string

const (
	Android       Format = "android"
	TrustKit      Format = "trustkit"
	TrustKitSwift Format = "trustkit-swift"
	IOS           Format = "ios"
	OkHTTP        Format = "okhttp"
	Curl          Format = "curl"
	DotNet        Format = "dotnet"
	ReactNative   Format = "react-native"
	HPKP          Format = "hpkp"
	JSON          Format = "json"
	// RampartClient is the configuration file of Rampart's Android/JVM and
	// JavaScript clients (clients/android, clients/js): the policy, the
	// bundle keys and where bundles come from.
	RampartClient Format = "rampart-client"
	// JWKS prints only the bundle keys of [Options.BundleKeys].
	JWKS Format = "jwks"
)

// Formats lists every format, in the order of the documentation.
func Formats() []Format {
	return []Format{Android, TrustKit, TrustKitSwift, IOS, OkHTTP, Curl, DotNet, ReactNative, HPKP, JSON, RampartClient, JWKS}
}

// Identities selects the App Transport Security identities to export.
type Identities string

const (
	// IdentitiesAuto exports the one kind of identity the rule's pins have,
	// and fails when they have both.
	IdentitiesAuto Identities = ""
	// IdentitiesLeaf exports the leaf and backup pins only.
	IdentitiesLeaf Identities = "leaf"
	// IdentitiesCA exports the CA pins only.
	IdentitiesCA Identities = "ca"
	// IdentitiesBoth exports both; ATS then requires a leaf AND a CA match.
	IdentitiesBoth Identities = "both"
)

// Options adjust an export. The zero value exports every rule.
type Options struct {
	// Domain, if set, exports only the rule for this domain. Empty: every
	// rule.
	Domain string
	// Source names the policy in the generated header comment. Empty:
	// "a pin policy".
	Source string
	// OkHTTP3 makes OkHttp 3 compatible patterns: the exact name and "*."
	// (one level of subdomains) instead of "**.". False: OkHttp 4's "**.".
	OkHTTP3 bool
	// Identities chooses the App Transport Security identities. Empty
	// means IdentitiesAuto.
	Identities Identities
	// MaxAge is HPKP's max-age; 0 means 60 days. It is capped at the pin
	// set's expiry.
	MaxAge time.Duration
	// Now is the current time for HPKP's max-age; zero means time.Now().
	Now time.Time
	// BundleKeys, if set, is a JWKS (RFC 7517 §5) of the public keys that
	// verify signed pin bundles (bundle.Keys.JWKS), for clients that
	// update their pins from a control plane. Formats that can carry it
	// embed it (trustkit, ios: an Info.plist key; trustkit-swift, okhttp,
	// react-native, dotnet: a constant); the others refuse it. The jwks
	// format prints it alone.
	BundleKeys []byte
	// BundleURL, BundleName and MinVersion say where a rampart-client
	// updater fetches signed bundles, the bundle name it expects and the
	// lowest version it accepts (ship the latest version: a fresh install
	// cannot be rolled back below it). BundleURL must be https on a host
	// that the policy enforces (the updater refuses any other), and needs
	// BundleKeys and BundleName. Only rampart-client carries them.
	BundleURL  string
	BundleName string
	MinVersion int64
}

// Result is an export's output and what the caller should tell the user.
type Result struct {
	Output   []byte
	Warnings []string
}

// Error reports a policy that a format cannot express faithfully.
type Error struct {
	Format Format
	Domain string // empty when the error concerns the whole export
	Err    error
}

func (e *Error) Error() string {
	if e.Domain == "" {
		return fmt.Sprintf("export %s: %v", e.Format, e.Err)
	}
	return fmt.Sprintf("export %s: domain %q: %v", e.Format, e.Domain, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUnknownFormat is wrapped by the error for a format name Export does
// not know.
var ErrUnknownFormat = errors.New("unknown format")

// exporter holds the state of one export.
type exporter struct {
	format   Format
	opts     Options
	policy   *pin.Policy
	rules    []pin.Domain
	warnings []string
	jwks     string // compact BundleKeys
}

func (x *exporter) warnf(format string, args ...any) {
	x.warnings = append(x.warnings, fmt.Sprintf(format, args...))
}

func (x *exporter) errorf(domain, format string, args ...any) error {
	return &Error{Format: x.format, Domain: domain, Err: fmt.Errorf(format, args...)}
}

// Export renders policy p in format f.
func Export(p *pin.Policy, f Format, o Options) (*Result, error) {
	x := &exporter{format: f, opts: o, policy: p, rules: p.Domains()}
	if o.Domain != "" {
		d := p.Match(o.Domain)
		if d == nil || !strings.EqualFold(strings.TrimSuffix(o.Domain, "."), d.Name) {
			return nil, x.errorf("", "the policy has no rule for domain %q", o.Domain)
		}
		x.rules = slices.DeleteFunc(x.rules, func(r pin.Domain) bool { return r.Name != d.Name })
	}
	if o.BundleKeys != nil {
		if err := x.loadBundleKeys(); err != nil {
			return nil, err
		}
	}
	var (
		out []byte
		err error
	)
	switch f {
	case Android:
		out, err = x.android()
	case TrustKit:
		out, err = x.trustKitPlist()
	case TrustKitSwift:
		out, err = x.trustKitSwift()
	case IOS:
		out, err = x.ios()
	case OkHTTP:
		out, err = x.okhttp()
	case Curl:
		out, err = x.curl()
	case DotNet:
		out, err = x.dotnet()
	case ReactNative:
		out, err = x.reactNative()
	case HPKP:
		out, err = x.hpkp()
	case JSON:
		out, err = x.json()
	case RampartClient:
		out, err = x.rampartClient()
	case JWKS:
		out, err = x.jwksOnly()
	default:
		return nil, &Error{Format: f, Err: fmt.Errorf("%w %q (want one of %v)", ErrUnknownFormat, f, Formats())}
	}
	if err != nil {
		return nil, err
	}
	if (o.BundleURL != "" || o.BundleName != "" || o.MinVersion != 0) && f != RampartClient {
		return nil, x.errorf("", "only rampart-client carries the bundle URL, name and minimum version")
	}
	if f != JSON && f != RampartClient {
		for _, d := range x.rules {
			if d.RequireSCTs {
				x.warnf("domain %s: %s clients cannot require SCTs (require_scts): they accept certificates without them", d.Name, f)
			}
		}
	}
	if out, err = x.appendBundleKeys(out); err != nil {
		return nil, err
	}
	return &Result{Output: out, Warnings: x.warnings}, nil
}

// header is the first comment of generated files.
func (x *exporter) header() string {
	src := safeName(x.opts.Source)
	if src == "" {
		src = "a pin policy"
	}
	// No "--": the header also goes into XML comments.
	return fmt.Sprintf("Generated by rampart pin export (format %s) from %s. Edit the policy, not this file.", x.format, src)
}

// spkiOnly fails when a rule has certificate pins, which only SPKI formats
// cannot express.
func (x *exporter) spkiOnly(d pin.Domain) error {
	for _, p := range d.Pins {
		if p.Kind() != pin.SPKI {
			return x.errorf(d.Name, "pin %s is a certificate fingerprint, which %s cannot express; pin the certificate's public key instead (rampart pin hash gives its sha256/ pin)", p, x.format)
		}
	}
	return nil
}

// enforcedOnly returns the enforced rules, warning about the report-only
// ones it leaves out. A report-only rule under an enforced parent that
// includes subdomains cannot simply be left out: the parent would enforce
// its pins there. Formats that can exempt a name (exempt != nil) get it in
// exempt; the others fail.
func (x *exporter) enforcedOnly(alternative string, exempt *[]pin.Domain) ([]pin.Domain, error) {
	var out []pin.Domain
	for _, d := range x.rules {
		if d.Mode == pin.Enforce {
			out = append(out, d)
			continue
		}
		if parent := x.enforcingParent(d.Name); parent != nil {
			if exempt == nil {
				return nil, x.errorf(d.Name, "the rule is report-only, but %s cannot exempt it from rule %s, which includes subdomains and would enforce its pins here; make this rule enforce, or stop including subdomains in %s", x.format, parent.Name, parent.Name)
			}
			*exempt = append(*exempt, d)
			x.warnf("domain %s is report-only, which %s cannot express: it is exported without pins, so that rule %s does not enforce its pins there", d.Name, x.format, parent.Name)
			continue
		}
		msg := fmt.Sprintf("domain %s is report-only, which %s cannot express: it is left out and not pinned there", d.Name, x.format)
		if alternative != "" {
			msg += "; " + alternative
		}
		x.warnf("%s", msg)
	}
	return out, nil
}

// enforcingParent returns the nearest enforced rule that includes
// subdomains and covers name, nil if none.
func (x *exporter) enforcingParent(name string) *pin.Domain {
	for i := strings.IndexByte(name, '.'); i >= 0; i = strings.IndexByte(name, '.') {
		name = name[i+1:]
		for j := range x.policy.Domains() {
			d := x.policy.Domains()[j]
			if d.Name == name && d.IncludeSubdomains {
				if d.Mode == pin.Enforce {
					return &d
				}
				return nil // the nearest parent is report-only itself
			}
		}
	}
	return nil
}

// noExpiry warns about rules whose expiry the format cannot carry.
func (x *exporter) noExpiry(rules []pin.Domain) {
	for _, d := range rules {
		if !d.Expires.IsZero() {
			x.warnf("domain %s: %s has no pin expiry, so these pins are still enforced after %s: replace this configuration before then", d.Name, x.format, d.Expires.Format(time.DateOnly))
		}
	}
}

// startOfDayAfter is the date to write for platforms that read an
// expiration date as the start of that day: the day after the policy's
// inclusive date.
func startOfDayAfter(d pin.Domain) string {
	return d.ExpiresAt().Format(time.DateOnly)
}

// safeName keeps a file name fit for every comment syntax the exports
// write into: no line breaks, comment delimiters or "--".
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return strings.ReplaceAll(string(b), "--", "-_")
}

func isIP(name string) bool {
	return strings.Contains(name, ":") || strings.Trim(name, "0123456789.") == ""
}

func (x *exporter) json() ([]byte, error) {
	p := x.policy
	if x.opts.Domain != "" {
		var err error
		if p, err = pin.NewPolicyWithCTLogs(p.ReportURI(), p.CTLogs(), x.rules...); err != nil {
			return nil, err
		}
	}
	raw, err := p.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// loadBundleKeys checks Options.BundleKeys and keeps it compact.
func (x *exporter) loadBundleKeys() error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(x.opts.BundleKeys, &set); err != nil || len(set.Keys) == 0 {
		return &Error{Format: x.format, Err: errors.New("the bundle keys are not a JWKS with at least one key")}
	}
	// The clients refuse a key whose kid is not its RFC 7638 thumbprint,
	// a private key, or a key type they cannot verify with: so does the
	// export, rather than ship a file the client will not load.
	if _, err := bundle.ParseKeys(x.opts.BundleKeys); err != nil {
		return &Error{Format: x.format, Err: err}
	}
	var b bytes.Buffer
	if err := json.Compact(&b, x.opts.BundleKeys); err != nil {
		return &Error{Format: x.format, Err: err}
	}
	x.jwks = b.String()
	return nil
}

func (x *exporter) jwksOnly() ([]byte, error) {
	if x.jwks == "" {
		return nil, x.errorf("", "the jwks format prints the bundle keys: give them with --bundle-key")
	}
	var b bytes.Buffer
	json.Indent(&b, []byte(x.jwks), "", "  ")
	b.WriteByte('\n')
	return b.Bytes(), nil
}

const bundleKeysComment = "Public keys that verify the signed pin bundles of the control plane (JWKS, RFC 7517; see docs/bundle.md)."

// appendBundleKeys adds the bundle keys to the source-code formats; the
// plist formats carry them inside, jwks is them.
func (x *exporter) appendBundleKeys(out []byte) ([]byte, error) {
	if x.jwks == "" {
		return out, nil
	}
	b := bytes.NewBuffer(out)
	switch x.format {
	case TrustKit, IOS, JWKS, RampartClient:
	case TrustKitSwift:
		fmt.Fprintf(b, "\n// %s\nlet pinBundleKeys = %s\n", bundleKeysComment, swiftString(x.jwks))
	case OkHTTP:
		fmt.Fprintf(b, "\n// %s\nconst val PIN_BUNDLE_KEYS: String = %s\n", bundleKeysComment, strings.ReplaceAll(swiftString(x.jwks), "$", `\$`))
	case ReactNative:
		fmt.Fprintf(b, "\n// %s\nexport const pinBundleKeys = %s;\n", bundleKeysComment, x.jwks)
	case DotNet:
		fmt.Fprintf(b, "\nnamespace Rampart.Pinning\n{\n    // %s\n    public static class PinBundleKeys\n    {\n        public const string Jwks = %s;\n    }\n}\n", bundleKeysComment, swiftString(x.jwks))
	default:
		return nil, x.errorf("", "%s cannot carry bundle keys; export them with --format jwks and ship that file with the app", x.format)
	}
	return b.Bytes(), nil
}
