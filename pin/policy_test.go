package pin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
)

func testPin(s string) string {
	d := sha256.Sum256([]byte(s))
	return "sha256/" + base64.StdEncoding.EncodeToString(d[:])
}

var (
	pinA = testPin("a")
	pinB = testPin("b")
	pinC = testPin("c")
)

const samplePolicy = `
version: 1
report_uri: https://reports.example.net/pins   # optional default
domains:
  - domain: api.example.com
    include_subdomains: false
    mode: enforce
    expires: "2027-06-30"
    pins:
      - %s
      - %s
  - domain: Example.COM.
    include_subdomains: true
    mode: report-only
    pins: [%s]
    report_uri: http://127.0.0.1:9000/r
`

func TestParsePolicy(t *testing.T) {
	p, err := pin.ParsePolicy(fmt.Appendf(nil, samplePolicy, pinA, pinB, pinC))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Domains()
	if len(d) != 2 {
		t.Fatalf("got %d domains", len(d))
	}
	api, parent := d[0], d[1]
	if api.Name != "api.example.com" || api.Mode != pin.Enforce || api.IncludeSubdomains ||
		api.ReportURI != "https://reports.example.net/pins" || len(api.Pins) != 2 || api.Pins[1].String() != pinB {
		t.Errorf("api rule = %+v", api)
	}
	if !api.Expires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("expires = %v", api.Expires)
	}
	if parent.Name != "example.com" || parent.Mode != pin.ReportOnly || !parent.IncludeSubdomains || parent.ReportURI != "http://127.0.0.1:9000/r" {
		t.Errorf("parent rule = %+v (names are lowercased, trailing dot dropped)", parent)
	}

	// JSON is accepted with the same schema, and MarshalJSON is a fixed
	// point of parsing.
	js, err := p.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	q, err := pin.ParsePolicy(js)
	if err != nil {
		t.Fatalf("re-parsing %s: %v", js, err)
	}
	if !reflect.DeepEqual(p.Domains(), q.Domains()) || p.ReportURI() != q.ReportURI() {
		t.Errorf("JSON round trip changed the policy:\n%+v\n%+v", p.Domains(), q.Domains())
	}
}

func TestPolicyMatch(t *testing.T) {
	p, err := pin.ParsePolicy(fmt.Appendf(nil, `
version: 1
domains:
  - {domain: example.com, include_subdomains: true, pins: [%[1]s, %[2]s]}
  - {domain: api.example.com, pins: [%[1]s, %[2]s]}
  - {domain: b.example.com, include_subdomains: false, pins: [%[1]s, %[2]s]}
  - {domain: 10.0.0.1, pins: [%[1]s, %[2]s]}
  - {domain: "[2001:db8::1]", pins: [%[1]s, %[2]s]}
`, pinA, pinB))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"example.com":          "example.com",
		"EXAMPLE.com.":         "example.com",
		"x.example.com":        "example.com",
		"api.example.com":      "api.example.com",
		"v2.api.example.com":   "example.com", // api.example.com does not include subdomains
		"b.example.com":        "b.example.com",
		"a.b.example.com":      "example.com",
		"badexample.com":       "",
		"example.org":          "",
		"com":                  "",
		"10.0.0.1":             "10.0.0.1",
		"1.10.0.0.1":           "",
		"2001:db8::1":          "2001:db8::1",
		"[2001:db8:0::1]":      "2001:db8::1", // every spelling of a pinned address
		"2001:0db8::0001":      "2001:db8::1",
		"::ffff:10.0.0.1":      "10.0.0.1",
		"[::ffff:10.0.0.1]":    "10.0.0.1",
		"10.0.0.1.":            "10.0.0.1",
		"fe80::1%eth0":         "",
		"example.com.evil.net": "",
	} {
		got := ""
		if d := p.Match(host); d != nil {
			got = d.Name
		}
		if got != want {
			t.Errorf("Match(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestExpiresIsInclusive(t *testing.T) {
	d := pin.Domain{Expires: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)}
	for now, want := range map[time.Time]bool{
		time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC):                     false,
		time.Date(2027, 6, 30, 23, 59, 59, 999999999, time.UTC):          false,
		time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC):                      true,
		time.Date(2027, 6, 30, 20, 0, 0, 0, time.FixedZone("", -5*3600)): true, // 01:00 UTC on July 1
	} {
		if got := d.Expired(now); got != want {
			t.Errorf("Expired(%v) = %v, want %v", now, got, want)
		}
	}
	if (&pin.Domain{}).Expired(time.Now()) {
		t.Error("a rule without expiry expired")
	}
}

func TestPolicyErrors(t *testing.T) {
	two := fmt.Sprintf("[%s, %s]", pinA, pinB)
	for _, tc := range []struct {
		name, policy, want string
		is                 error
	}{
		{"empty", "", "empty file", nil},
		{"not yaml", "{{{", "did not find expected node content", nil},
		{"version", "version: 2\ndomains: []", "want version: 1", nil},
		{"no version", "domains: [{domain: a.test, pins: " + two + "}]", "want version: 1", nil},
		{"no domains", "version: 1\ndomains: []", "no domains", nil},
		{"unknown top field", "version: 1\nreport_url: https://x.test/\ndomains: [{domain: a.test, pins: " + two + "}]", `field report_url is not a policy field`, nil},
		{"unknown domain field", "version: 1\ndomains: [{domain: a.test, includeSubdomains: true, pins: " + two + "}]", `field includeSubdomains is not a domain field`, nil},
		{"duplicate key", "version: 1\nversion: 1\ndomains: []", `already defined`, nil},
		{"two documents", "version: 1\ndomains: [{domain: a.test, pins: " + two + "}]\n---\nversion: 1\n", "more than one YAML document", nil},
		{"single pin", "version: 1\ndomains: [{domain: a.test, pins: [" + pinA + "]}]", `domain "a.test": enforce mode needs at least two distinct pins: add a backup pin`, pin.ErrNoBackupPin},
		{"duplicate pin", "version: 1\ndomains: [{domain: a.test, pins: [" + pinA + ", " + pinA + "]}]", "listed twice; a backup pin must be a different key", nil},
		{"no pins", "version: 1\ndomains: [{domain: a.test, mode: report-only, pins: []}]", "no pins", nil},
		{"bad pin", "version: 1\ndomains: [{domain: a.test, pins: [sha256/xyz, " + pinB + "]}]", `domain "a.test": pin: invalid pin "sha256/xyz"`, pin.ErrEncoding},
		{"duplicate domain", "version: 1\ndomains: [{domain: a.test, pins: " + two + "}, {domain: A.test., pins: " + two + "}]", `domain "a.test": listed twice`, nil},
		{"bad mode", "version: 1\ndomains: [{domain: a.test, mode: strict, pins: " + two + "}]", `mode "strict"`, nil},
		{"bad expires", "version: 1\ndomains: [{domain: a.test, expires: 30/06/2027, pins: " + two + "}]", "want a date as YYYY-MM-DD", nil},
		{"wildcard", "version: 1\ndomains: [{domain: '*.a.test', pins: " + two + "}]", "pin the parent domain with include_subdomains: true", nil},
		{"url as domain", "version: 1\ndomains: [{domain: 'https://a.test', pins: " + two + "}]", "without scheme, port or path", nil},
		{"port in domain", "version: 1\ndomains: [{domain: 'a.test:443', pins: " + two + "}]", "without scheme, port or path", nil},
		{"empty label", "version: 1\ndomains: [{domain: 'a..test', pins: " + two + "}]", "empty label", nil},
		{"unicode", "version: 1\ndomains: [{domain: 'bücher.test', pins: " + two + "}]", "punycode", nil},
		{"IP with subdomains", "version: 1\ndomains: [{domain: 10.0.0.1, include_subdomains: true, pins: " + two + "}]", "IP address", nil},
		{"http report uri", "version: 1\nreport_uri: http://reports.test/\ndomains: [{domain: a.test, pins: " + two + "}]", "must go over https", nil},
		{"report uri credentials", "version: 1\ndomains: [{domain: a.test, report_uri: 'https://u:p@r.test/', pins: " + two + "}]", "carries credentials", nil},
		{"relative report uri", "version: 1\ndomains: [{domain: a.test, report_uri: /reports, pins: " + two + "}]", "not an absolute URL", nil},
		{"report loop", "version: 1\ndomains: [{domain: a.test, report_uri: 'https://a.test/r', pins: " + two + "}]", "report loop", nil},
		{"report loop subdomain", "version: 1\ndomains: [{domain: a.test, include_subdomains: true, report_uri: 'https://r.a.test/r', pins: " + two + "}]", "report loop", nil},
		{"report loop default", "version: 1\nreport_uri: https://a.test/r\ndomains: [{domain: a.test, pins: " + two + "}]", "report loop", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pin.ParsePolicy([]byte(tc.policy))
			var pe *pin.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *pin.PolicyError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestPolicyOptOuts(t *testing.T) {
	for name, policy := range map[string]string{
		"allow_single_pin":            "version: 1\ndomains: [{domain: a.test, allow_single_pin: true, pins: [" + pinA + "]}]",
		"report-only with one pin":    "version: 1\ndomains: [{domain: a.test, mode: report-only, pins: [" + pinA + "]}]",
		"http report uri to loopback": "version: 1\nreport_uri: 'http://[::1]:8080/r'\ndomains: [{domain: a.test, pins: [" + pinA + ", " + pinB + "]}]",
		"report uri on another host":  "version: 1\ndomains: [{domain: a.test, report_uri: 'https://a.test.example/r', pins: [" + pinA + ", " + pinB + "]}]",
		"json":                        `{"version": 1, "domains": [{"domain": "a.test", "pins": ["` + pinA + `", "` + pinB + `"]}]}`,
		"certificate pin as backup":   "version: 1\ndomains: [{domain: a.test, pins: [" + pinA + ", 'cert-sha256:" + strings.Repeat("ab", 32) + "']}]",
	} {
		if _, err := pin.ParsePolicy([]byte(policy)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	os.WriteFile(file, []byte("version: 1\ndomains: [{domain: a.test, pins: ["+pinA+"]}]"), 0o600)
	_, err := pin.LoadPolicy(file)
	if err == nil || !strings.Contains(err.Error(), "pin: policy "+file+": domain \"a.test\"") {
		t.Errorf("err = %v, want it to name the file and the domain", err)
	}
	if _, err := pin.LoadPolicy(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	big := make([]byte, 2<<20)
	os.WriteFile(file, big, 0o600)
	if _, err := pin.LoadPolicy(file); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("2 MiB policy: err = %v", err)
	}
}

func TestNewPolicyCopies(t *testing.T) {
	pins := []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))}
	p, err := pin.NewPolicy("", pin.Domain{Name: "a.test", Pins: pins})
	if err != nil {
		t.Fatal(err)
	}
	pins[0] = pin.FromSPKI([]byte("c"))
	p.Domains()[0].Pins[1] = pin.FromSPKI([]byte("d"))
	if got := p.Match("a.test").Pins; got[0] != pin.FromSPKI([]byte("a")) || got[1] != pin.FromSPKI([]byte("b")) {
		t.Error("the policy shares its pins with the caller")
	}
}

// FuzzParsePolicy: ParsePolicy never panics, fails only with a
// *PolicyError, and accepted policies keep the backup-pin rule and survive a
// JSON round trip unchanged.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(samplePolicy, pinA, pinB, pinC)))
	f.Add([]byte(`{"version": 1, "domains": [{"domain": "a.test", "pins": ["` + pinA + `", "` + pinB + `"]}]}`))
	f.Add([]byte("version: 1\ndomains: [{domain: a.test, allow_single_pin: true, expires: 2027-01-01, pins: [" + pinA + "]}]"))
	f.Add([]byte("version: 1\ndomains: [{domain: 10.0.0.1, mode: report-only, pins: ['cert-sha256:" + strings.Repeat("0f", 32) + "']}]"))
	f.Add([]byte("version: 1\ndomains: [{domain: a.test, pins: [" + pinA + "]}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("version: 1\ndomains: [{domain: a.test, pins: [{pin: " + pinA + ", role: backup}, {pin: " + pinB + ", role: ca}]}]"))
	keyDER := func() string {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		return base64.StdEncoding.EncodeToString(der)
	}
	f.Add([]byte("version: 1\nct_logs: [{key: " + keyDER() + ", operator: A}, {key: " + keyDER() + ", operator: B}]\ndomains: [{domain: a.test, require_scts: true, pins: [" + pinA + ", " + pinB + "]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pin.ParsePolicy(data)
		if err != nil {
			var pe *pin.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PolicyError", err)
			}
			return
		}
		ops := map[string]bool{}
		for _, l := range p.CTLogs() {
			ops[strings.ToLower(l.Operator)] = true
		}
		for _, d := range p.Domains() {
			if d.RequireSCTs && len(ops) < 2 {
				t.Fatalf("rule %q requires SCTs with logs of %d operator(s)", d.Name, len(ops))
			}
			if d.Mode == pin.Enforce && len(d.Pins) < 2 && !d.AllowSinglePin {
				t.Fatalf("accepted enforced rule %q without a backup pin", d.Name)
			}
			if p.Match(d.Name) == nil {
				t.Fatalf("rule %q does not match its own name", d.Name)
			}
		}
		js, err := p.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		q, err := pin.ParsePolicy(js)
		if err != nil {
			t.Fatalf("normalized policy %s does not parse: %v", js, err)
		}
		if !reflect.DeepEqual(p.Domains(), q.Domains()) {
			t.Fatalf("JSON round trip changed the policy")
		}
	})
}

func TestPinRoles(t *testing.T) {
	p, err := pin.ParsePolicy([]byte(fmt.Sprintf(`
version: 1
domains:
  - domain: a.test
    pins:
      - %s
      - {pin: %s, role: backup}
      - pin: %s
        role: ca
`, pinA, pinB, pinC)))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Match("a.test")
	a, _ := pin.Parse(pinA)
	b, _ := pin.Parse(pinB)
	c, _ := pin.Parse(pinC)
	if d.Role(a) != pin.RoleUnknown || d.Role(b) != pin.RoleBackup || d.Role(c) != pin.RoleCA {
		t.Errorf("roles = %v", d.Roles)
	}
	js, _ := p.MarshalJSON()
	if !strings.Contains(string(js), `"pins":["`+pinA+`",{"pin":"`+pinB+`","role":"backup"},{"pin":"`+pinC+`","role":"ca"}]`) {
		t.Errorf("normalized JSON = %s", js)
	}
	for policy, want := range map[string]string{
		"version: 1\ndomains: [{domain: a.test, pins: [{pin: " + pinA + ", role: root}, " + pinB + "]}]": `role "root": want leaf, backup or ca`,
		"version: 1\ndomains: [{domain: a.test, pins: [{pin: " + pinA + ", kind: ca}, " + pinB + "]}]":   "field kind is not a pin field",
		"version: 1\ndomains: [{domain: a.test, pins: [{role: ca}, " + pinB + "]}]":                      "pin entry without pin",
		"version: 1\ndomains: [{domain: a.test, pins: [[" + pinA + "], " + pinB + "]}]":                  "a pin is a string or {pin: ..., role: ...}",
	} {
		if _, err := pin.ParsePolicy([]byte(policy)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", policy, err, want)
		}
	}
}

// Every invalid rule is reported at once, each a *PolicyError with its
// sentinel, so that tools can name them.
func TestPolicyErrorsJoined(t *testing.T) {
	_, err := pin.ParsePolicy([]byte(fmt.Sprintf(`
version: 1
domains:
  - {domain: a.test, pins: [%[1]s]}
  - {domain: b.test, pins: [%[1]s, %[1]s]}
  - {domain: c.test, report_uri: "https://c.test/r", pins: [%[1]s, %[2]s]}
  - {domain: ok.test, pins: [%[1]s, %[2]s]}
  - {domain: OK.test, pins: [%[1]s, %[2]s]}
`, pinA, pinB)))
	if err == nil {
		t.Fatal("invalid policy accepted")
	}
	for _, sentinel := range []error{pin.ErrNoBackupPin, pin.ErrDuplicatePin, pin.ErrReportLoop, pin.ErrDuplicateDomain} {
		if !errors.Is(err, sentinel) {
			t.Errorf("err does not wrap %v:\n%v", sentinel, err)
		}
	}
	if n := strings.Count(err.Error(), "pin: policy: domain"); n != 4 {
		t.Errorf("%d errors reported, want 4:\n%v", n, err)
	}
}
