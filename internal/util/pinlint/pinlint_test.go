package pinlint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const (
	a = "sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w="
	b = "sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="
	c = "sha256/PqGpvcjLYUvUNw92652/zA+RKtSDHYGEtBPY8X9aqHk="
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func lint(t *testing.T, policy string) []Finding {
	t.Helper()
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return File(file, Options{Now: now})
}

// Each rule, alone in a policy, with its name and severity.
func TestRules(t *testing.T) {
	one := func(domain string) string {
		return "version: 1\ndomains:\n" + domain
	}
	for _, tc := range []struct {
		rule     string
		severity Severity
		policy   string
	}{
		{RuleSinglePin, Error, one("  - {domain: a.test, pins: [" + a + "]}\n")},
		{RuleSinglePin, Warning, one("  - {domain: a.test, allow_single_pin: true, pins: [" + a + "]}\n")},
		{RuleSinglePin, Warning, one("  - {domain: a.test, mode: report-only, pins: [" + a + "]}\n")},
		{RuleBackupEqualsPrimary, Error, one("  - {domain: a.test, pins: [" + a + ", " + a + "]}\n")},
		{RuleDuplicateDomain, Error, one("  - {domain: a.test, pins: [" + a + ", " + b + "]}\n  - {domain: A.test, pins: [" + a + ", " + b + "]}\n")},
		{RuleNoBackup, Warning, one("  - {domain: a.test, pins: [{pin: " + a + ", role: leaf}, {pin: " + b + ", role: leaf}]}\n")},
		{RuleCertificatePinsOnly, Warning, one("  - {domain: a.test, pins: ['cert-sha256:" + strings.Repeat("ab", 32) + "', 'cert-sha256:" + strings.Repeat("cd", 32) + "']}\n")},
		{RuleExpired, Warning, one("  - {domain: a.test, expires: '2026-11-24', pins: [" + a + ", " + b + "]}\n")},
		{RuleExpiringSoon, Warning, one("  - {domain: a.test, expires: '2026-12-10', pins: [" + a + ", " + b + "]}\n")},
		{RulePublicSuffix, Error, one("  - {domain: github.io, include_subdomains: true, pins: [" + a + ", " + b + "]}\n")},
		{RulePublicSuffix, Error, one("  - {domain: co.uk, include_subdomains: true, pins: [" + a + ", " + b + "]}\n")},
		{RuleIPAddress, Warning, one("  - {domain: 10.0.0.1, pins: [" + a + ", " + b + "]}\n")},
		{RuleReportLoop, Error, one("  - {domain: a.test, report_uri: 'https://a.test/r', pins: [" + a + ", " + b + "]}\n")},
		{RuleReportURIPinned, Warning, one("  - {domain: a.test, report_uri: 'https://r.b.test/r', pins: [" + a + ", " + b + "]}\n  - {domain: b.test, include_subdomains: true, pins: [" + a + ", " + c + "]}\n")},
		{RuleInvalid, Error, one("  - {domain: a.test, pins: [sha256/nope, " + b + "]}\n")},
		{RuleInvalid, Error, "version: 1\ndomains: [{domain: a.test, includeSubdomains: true, pins: [" + a + "]}]\n"},
		{RuleInvalid, Error, one("  - {domain: a.test, report_uri: 'http://r.test/', pins: [" + a + ", " + b + "]}\n")},
	} {
		t.Run(tc.rule+"/"+string(tc.severity), func(t *testing.T) {
			fs := lint(t, tc.policy)
			if len(fs) != 1 || fs[0].Rule != tc.rule || fs[0].Severity != tc.severity {
				t.Fatalf("findings = %+v, want exactly one %s %s", fs, tc.severity, tc.rule)
			}
		})
	}
}

func TestClean(t *testing.T) {
	fs := lint(t, fmt.Sprintf(`version: 1
report_uri: https://reports.example.net/pins
domains:
  - domain: api.example.com
    expires: "2027-06-30"
    pins:
      - {pin: %s, role: leaf}
      - {pin: %s, role: backup}
  - domain: example.org
    include_subdomains: true
    pins: [{pin: %s, role: ca}, %s]
`, a, b, c, a))
	if len(fs) != 0 {
		t.Fatalf("findings on a clean policy: %+v", fs)
	}
}

// Every problem of a policy at once, not the first only.
func TestAllAtOnce(t *testing.T) {
	fs := lint(t, "version: 1\ndomains:\n  - {domain: a.test, pins: ["+a+"]}\n  - {domain: b.test, pins: ["+a+", "+a+"]}\n  - {domain: 10.0.0.1, expires: '2020-01-01', pins: ["+a+", "+b+"]}\n")
	errs, warns := Counts(fs)
	if errs != 2 || warns != 2 {
		t.Fatalf("errors %d, warnings %d, want 2 and 2: %+v", errs, warns, fs)
	}
}

// FuzzLint: any policy text lints without panicking, every finding is
// named and graded, and a policy the loader accepts has no error findings
// other than public-suffix (which the loader does not know).
func FuzzLint(f *testing.F) {
	f.Add([]byte("version: 1\ndomains:\n  - {domain: a.test, pins: [" + a + "]}\n"))
	f.Add([]byte("version: 1\nreport_uri: https://r.b.test/\ndomains:\n  - {domain: github.io, include_subdomains: true, expires: '2026-12-01', pins: [{pin: " + a + ", role: leaf}, {pin: " + b + ", role: leaf}]}\n  - {domain: b.test, include_subdomains: true, pins: [" + a + ", " + c + "]}\n"))
	f.Add([]byte("version: 1\ndomains: [{domain: 10.0.0.1, pins: ['cert-sha256:" + strings.Repeat("ab", 32) + "']}]"))
	f.Add([]byte("version: 1\ndomains:\n  - {domain: a.test, report_uri: 'https://a.test/', pins: [sha256/abc, " + a + "]}\n  - {domain: b.test, pins: [" + a + "]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reportURI, domains, err := pin.DecodePolicy(data, "")
		if err != nil {
			// Malformed rules are reported, each finding well formed,
			// and never a missing backup for a rule whose pins did not
			// all decode.
			fs := Bytes(data, "", Options{Now: now})
			if len(fs) == 0 {
				t.Fatalf("no finding for a policy that does not decode: %v", err)
			}
			broken := map[string]bool{}
			for _, e := range unjoin(err) {
				var pe *pin.PolicyError
				if errors.As(e, &pe) {
					broken[canonical(pe.Domain)] = true
				}
			}
			for _, fd := range fs {
				if fd.Rule == "" || (fd.Severity != Error && fd.Severity != Warning) || fd.Message == "" {
					t.Fatalf("malformed finding %+v", fd)
				}
			}
			for _, fd := range fs {
				if fd.Rule == RuleSinglePin && broken[fd.Domain] {
					t.Fatalf("single-pin reported for %s, whose pins did not decode: %+v", fd.Domain, fs)
				}
			}
			return
		}
		_, loadErr := pin.NewPolicy(reportURI, domains...)
		for _, fd := range Lint(reportURI, domains, nil, Options{Now: now}) {
			if fd.Rule == "" || (fd.Severity != Error && fd.Severity != Warning) || fd.Message == "" {
				t.Fatalf("malformed finding %+v", fd)
			}
			if loadErr == nil && fd.Severity == Error && fd.Rule != RulePublicSuffix {
				t.Fatalf("error finding %+v for a policy the loader accepts", fd)
			}
		}
	})
}

// A malformed pin hides nothing: the other rules' problems, and the other
// problems of its own rule, are reported in the same run.
func TestMalformedPinHidesNothing(t *testing.T) {
	fs := lint(t, "version: 1\ndomains:\n"+
		"  - {domain: x.example.com, report_uri: 'https://x.example.com/r', pins: [sha256/abc, "+a+", "+b+"]}\n"+
		"  - {domain: one.example.com, pins: ["+a+"]}\n"+
		"  - {domain: dup.example.com, pins: ["+a+", "+a+"]}\n"+
		"  - {domain: github.io, include_subdomains: true, pins: ["+a+", "+b+"]}\n"+
		"  - {domain: old.example.com, expires: '2020-01-01', pins: ["+a+", "+b+"]}\n")
	want := map[string]string{
		"x.example.com/" + RuleInvalid:               "",
		"x.example.com/" + RuleReportLoop:            "",
		"one.example.com/" + RuleSinglePin:           "",
		"dup.example.com/" + RuleBackupEqualsPrimary: "",
		"github.io/" + RulePublicSuffix:              "",
		"old.example.com/" + RuleExpired:             "",
	}
	got := map[string]bool{}
	for _, f := range fs {
		got[f.Domain+"/"+f.Rule] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missing finding %s", k)
		}
	}
	if len(fs) != len(want) {
		t.Errorf("%d findings, want %d: %+v", len(fs), len(want), fs)
	}
}

// Every problem of one rule: a report loop is reported next to a missing
// backup pin, not after it is fixed.
func TestEveryProblemOfARule(t *testing.T) {
	fs := lint(t, "version: 1\ndomains:\n  - {domain: a.test, report_uri: 'https://a.test/r', pins: ["+a+"]}\n")
	rules := map[string]bool{}
	for _, f := range fs {
		rules[f.Rule] = true
	}
	if !rules[RuleSinglePin] || !rules[RuleReportLoop] || len(fs) != 2 {
		t.Fatalf("findings = %+v, want single-pin and report-loop", fs)
	}
}

// Findings come grouped by rule, in the policy's order, the policy's own
// first: a reader fixes one rule at a time.
func TestFindingsGroupedByDomain(t *testing.T) {
	fs := lint(t, "version: 1\nreport_uri: 'http://r.test/'\ndomains:\n"+
		"  - {domain: b.test, mode: report-only, report_uri: 'https://b.test/r', pins: ["+a+"]}\n"+
		"  - {domain: a.test, expires: '2020-01-01', pins: ["+a+"]}\n")
	var order []string
	for _, f := range fs {
		if len(order) == 0 || order[len(order)-1] != f.Domain {
			order = append(order, f.Domain)
		}
	}
	if strings.Join(order, ",") != ",b.test,a.test" {
		t.Fatalf("domains in order %q, want the policy, b.test, a.test: %+v", order, fs)
	}
}

// TestFileBounded: a file larger than a policy may be is refused after
// reading one byte past the bound, not read whole (/dev/zero never ends).
func TestFileBounded(t *testing.T) {
	fs := File("/dev/zero", Options{})
	if len(fs) != 1 || !strings.Contains(fs[0].Message, "larger than") {
		t.Errorf("findings %+v", fs)
	}
}
