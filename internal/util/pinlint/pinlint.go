// Package pinlint reviews a pin policy offline for what breaks apps at the
// next renewal or quietly leaves them unpinned. Every finding names its
// rule; errors are what the policy loader refuses, warnings what it
// accepts but should not ship without a second look.
package pinlint

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/rampartsec/rampart/pin"
)

// Severity of a finding.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Rule names, stable in output.
const (
	RuleInvalid             = "invalid"
	RuleSinglePin           = "single-pin"
	RuleBackupEqualsPrimary = "backup-equals-primary"
	RuleDuplicateDomain     = "duplicate-domain"
	RuleNoBackup            = "no-backup"
	RuleCertificatePinsOnly = "certificate-pins-only"
	RuleExpired             = "expired"
	RuleExpiringSoon        = "expiring-soon"
	RulePublicSuffix        = "public-suffix"
	RuleIPAddress           = "ip-address"
	RuleReportLoop          = "report-loop"
	RuleReportURIPinned     = "report-uri-pinned"
)

// Finding is one problem. Domain is empty for the policy as a whole.
type Finding struct {
	Domain   string   `json:"domain,omitempty"`
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// Options adjust Lint.
type Options struct {
	Now      time.Time // zero: time.Now()
	WarnDays int       // expiry horizon; 0 means 30
}

// File lints the policy file at path. A rule with a malformed pin or date
// hides nothing: it is reported, and the rest of the policy, that rule
// included, is reviewed in the same pass.
func File(path string, o Options) []Finding {
	f, err := os.Open(path)
	if err != nil {
		reportURI, domains, err := pin.LoadPolicyFile(path)
		return review(reportURI, domains, nil, err, o)
	}
	defer f.Close()
	// One byte over DecodePolicy's bound is enough for it to refuse the
	// file: never read more.
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return review("", nil, nil, err, o)
	}
	return Bytes(data, path, o)
}

// maxPolicyFile is the policy files' size bound (pin.ParsePolicy's).
const maxPolicyFile = 1 << 20

// Bytes lints a policy file's contents; source names it in messages.
func Bytes(data []byte, source string, o Options) []Finding {
	reportURI, domains, err := pin.DecodePolicy(data, source)
	logs, lerr := pin.DecodeCTLogs(data, source)
	if lerr != nil && domains != nil {
		// The logs' problem is reported itself; the rules that require
		// SCTs are not also told that logs are missing.
		err = errors.Join(err, lerr)
		logs = nil
		for i := range domains {
			domains[i].RequireSCTs = false
		}
	}
	return review(reportURI, domains, logs, err, o)
}

// review lints what pin.DecodePolicy returned, errors included.
func review(reportURI string, domains []pin.Domain, logs []pin.CTLog, err error, o Options) []Finding {
	out := classify(err)
	if domains == nil {
		return out
	}
	// The pins of these rules did not all decode: counting what is left
	// would report a missing backup pin that is only malformed.
	partial := make(map[string]bool)
	for _, f := range out {
		partial[canonical(f.Domain)] = true
	}
	return group(domains, append(out, lintRules(reportURI, domains, logs, partial, o)...))
}

// Lint reviews decoded rules (see pin.DecodePolicy) and the policy's CT
// logs. Findings come grouped by rule, in the policy's order, those about
// the policy as a whole first.
func Lint(reportURI string, domains []pin.Domain, logs []pin.CTLog, o Options) []Finding {
	return group(domains, lintRules(reportURI, domains, logs, nil, o))
}

// group orders findings by rule as the policy lists them, keeping the
// order within a rule.
func group(domains []pin.Domain, fs []Finding) []Finding {
	rank := map[string]int{"": 0}
	for i, d := range domains {
		if _, ok := rank[canonical(d.Name)]; !ok {
			rank[canonical(d.Name)] = i + 1
		}
	}
	at := func(f Finding) int {
		if r, ok := rank[f.Domain]; ok {
			return r
		}
		return len(domains) + 1 // "#3" and other names no rule has
	}
	slices.SortStableFunc(fs, func(a, b Finding) int { return cmp.Compare(at(a), at(b)) })
	return fs
}

func lintRules(reportURI string, domains []pin.Domain, logs []pin.CTLog, partial map[string]bool, o Options) []Finding {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.WarnDays <= 0 {
		o.WarnDays = 30
	}
	var out []Finding
	if _, err := pin.NewPolicyWithCTLogs(reportURI, logs, domains...); err != nil {
		for _, e := range unjoin(err) {
			var pe *pin.PolicyError
			if errors.As(e, &pe) && partial[canonical(pe.Domain)] &&
				(errors.Is(e, pin.ErrNoBackupPin) || errors.Is(e, pin.ErrNoPins)) {
				continue
			}
			out = append(out, classify(e)...)
		}
	}
	// Rules the loader accepts but that deserve a warning.
	for _, d := range domains {
		name := canonical(d.Name)
		add := func(sev Severity, rule, format string, args ...any) {
			out = append(out, Finding{Domain: name, Rule: rule, Severity: sev, Message: fmt.Sprintf(format, args...)})
		}
		// Left with the pins that decoded, the counts mean nothing.
		if !partial[name] {
			lintPinCounts(d, add)
		}
		lintExpiry(d, o, add)
		lintName(d, name, add)
		lintReportURI(d, name, reportURI, domains, add)
	}
	return out
}

// addFunc records a finding of the rule being linted.
type addFunc func(sev Severity, rule, format string, args ...any)

// lintPinCounts warns of rules whose pins leave clients nothing to fall
// back on.
func lintPinCounts(d pin.Domain, add addFunc) {
	if len(d.Pins) == 1 && (d.AllowSinglePin || d.Mode == pin.ReportOnly) {
		add(Warning, RuleSinglePin, "one pin: when its key is lost, rotated or compromised, pinned clients have nothing to fall back on; add a backup pin (rampart pin keygen)")
	}
	if len(d.Pins) > 0 && allRole(d, pin.RoleLeaf) {
		add(Warning, RuleNoBackup, "every pin is a leaf key in use, with no backup key and no CA pin: the next renewal on a new key breaks clients")
	}
	if len(d.Pins) > 0 && allKind(d, pin.Cert) {
		add(Warning, RuleCertificatePinsOnly, "every pin is a certificate fingerprint: the next renewal breaks clients, even on the same key; pin public keys (sha256/...)")
	}
}

// lintExpiry warns of pin sets expired or expiring within o.WarnDays.
func lintExpiry(d pin.Domain, o Options, add addFunc) {
	if d.Expires.IsZero() {
		return
	}
	end := d.ExpiresAt()
	switch {
	case !o.Now.Before(end):
		add(Warning, RuleExpired, "the pin set expired after %s: clients do CA validation only", d.Expires.Format(time.DateOnly))
	case end.Sub(o.Now) < time.Duration(o.WarnDays)*24*time.Hour:
		add(Warning, RuleExpiringSoon, "the pin set expires after %s, within %d days: clients then do CA validation only; extend it or plan the change", d.Expires.Format(time.DateOnly), o.WarnDays)
	}
}

// lintName checks what the rule's name pins: an IP address, or with
// include_subdomains a public suffix.
func lintName(d pin.Domain, name string, add addFunc) {
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		add(Warning, RuleIPAddress, "an IP address: few clients can pin one (TrustKit and react-native refuse), and certificates for addresses are rare; pin a host name")
	} else if d.IncludeSubdomains {
		if ps, _ := publicsuffix.PublicSuffix(name); ps == name {
			add(Error, RulePublicSuffix, "include_subdomains on %s, a public suffix: it pins every site registered under it", name)
		}
	}
}

// lintReportURI warns when a rule's reports go to a host another rule
// pins: when both fail, the reports are lost.
func lintReportURI(d pin.Domain, name, reportURI string, domains []pin.Domain, add addFunc) {
	uri := d.ReportURI
	if uri == "" {
		uri = reportURI
	}
	u, err := url.Parse(uri)
	if err != nil || uri == "" {
		return
	}
	h := canonical(u.Hostname())
	for _, o := range domains {
		other := canonical(o.Name)
		if other != name && (h == other || o.IncludeSubdomains && strings.HasSuffix(h, "."+other)) {
			add(Warning, RuleReportURIPinned, "report_uri %s is on a host pinned by rule %s: when that rule's pins fail too, the reports are lost", uri, other)
		}
	}
}

// classify turns policy errors into findings named by rule.
func classify(err error) []Finding {
	var out []Finding
	for _, e := range unjoin(err) {
		f := Finding{Rule: RuleInvalid, Severity: Error, Message: e.Error()}
		var pe *pin.PolicyError
		if errors.As(e, &pe) {
			f.Domain = pe.Domain
			f.Message = pe.Err.Error()
		}
		switch {
		case errors.Is(e, pin.ErrNoBackupPin):
			f.Rule = RuleSinglePin
		case errors.Is(e, pin.ErrDuplicatePin):
			f.Rule = RuleBackupEqualsPrimary
		case errors.Is(e, pin.ErrDuplicateDomain):
			f.Rule = RuleDuplicateDomain
		case errors.Is(e, pin.ErrReportLoop):
			f.Rule = RuleReportLoop
		}
		out = append(out, f)
	}
	return out
}

// unjoin returns the errors joined in err (nil for nil).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// canonical is the name a rule is reported under: the pin package's
// normal form, or the name as written when it has none.
func canonical(name string) string {
	if c, err := pin.CanonicalHost(name); err == nil {
		return c
	}
	return strings.ToLower(name)
}

func allRole(d pin.Domain, r pin.Role) bool {
	for _, p := range d.Pins {
		if d.Role(p) != r {
			return false
		}
	}
	return true
}

func allKind(d pin.Domain, k pin.Kind) bool {
	for _, p := range d.Pins {
		if p.Kind() != k {
			return false
		}
	}
	return true
}

// Counts returns the number of errors and warnings.
func Counts(fs []Finding) (errs, warnings int) {
	for _, f := range fs {
		if f.Severity == Error {
			errs++
		} else {
			warnings++
		}
	}
	return errs, warnings
}
