package authz

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

var discard = slog.New(slog.DiscardHandler)

// loadCases are files and whether envoyproxy/ratelimit loads them (the
// message is the start of its error); TestLoadLikeEnvoyRatelimit checks
// the same table against the real service.
var loadCases = []struct {
	name, file string
	err        string // "" if the file loads
}{
	{"sample", sampleConfig, ""},
	{"minimal", "domain: d\n", ""},
	{"all units", "domain: d\ndescriptors:\n" +
		"  - {key: a, rate_limit: {unit: second, requests_per_unit: 1}}\n" +
		"  - {key: b, rate_limit: {unit: MINUTE, requests_per_unit: 1}}\n" +
		"  - {key: c, rate_limit: {unit: Hour, requests_per_unit: 1}}\n" +
		"  - {key: d, rate_limit: {unit: day, requests_per_unit: 1}}\n" +
		"  - {key: e, rate_limit: {unit: week, requests_per_unit: 1}}\n" +
		"  - {key: f, rate_limit: {unit: month, requests_per_unit: 1}}\n" +
		"  - {key: g, rate_limit: {unit: year, requests_per_unit: 1}}\n", ""},
	{"a value as a number", "domain: d\ndescriptors:\n  - {key: port, value: 443, rate_limit: {unit: second, requests_per_unit: 1}}\n", ""},
	{"metric settings", "domain: d\ndescriptors:\n  - {key: a, detailed_metric: true, value_to_metric: true, quota_mode: true, rate_limit: {unit: second, requests_per_unit: 1}}\n", ""},
	{"no domain", "descriptors:\n  - {key: a}\n", "config file cannot have empty domain"},
	{"an empty file", "", "config file cannot have empty domain"},
	{"not YAML", "domain: [\n", "error loading config file"},
	{"a list at the top", "- domain: d\n", "error loading config file"},
	{"an unknown key", "domain: d\ndescriptors:\n  - {key: a, rate_limt: {unit: second}}\n", "config error, unknown key 'rate_limt'"},
	{"an unknown key at the top", "domain: d\nlimits: []\n", "config error, unknown key 'limits'"},
	{"a list of strings", "domain: d\ndescriptors: [a, b]\n", "config error, yaml file contains list of type other than map"},
	{"a float", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: second, requests_per_unit: 1.5}}\n", "error checking config"},
	{"an empty key", "domain: d\ndescriptors:\n  - {value: a}\n", "descriptor has empty key"},
	{"a duplicate key", "domain: d\ndescriptors:\n  - {key: a}\n  - {key: a}\n", "duplicate descriptor composite key 'd.a'"},
	{"a duplicate key and value", "domain: d\ndescriptors:\n  - {key: a, value: x}\n  - {key: a, value: x}\n", "duplicate descriptor composite key 'd.a_x'"},
	{"a duplicate nested key", "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - {key: b}\n      - {key: b}\n", "duplicate descriptor composite key 'd.a.b'"},
	{"a key and a value are not a duplicate", "domain: d\ndescriptors:\n  - {key: a}\n  - {key: a, value: x}\n", ""},
	{"an unknown unit", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: fortnight, requests_per_unit: 1}}\n", "invalid rate limit unit 'fortnight'"},
	{"no unit", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {requests_per_unit: 1}}\n", "invalid rate limit unit ''"},
	{"the unit UNKNOWN", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: unknown, requests_per_unit: 1}}\n", "invalid rate limit unit 'unknown'"},
	{"unlimited with a unit", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unlimited: true, unit: second}}\n", "should not specify rate limit unit when unlimited"},
	{"unlimited", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unlimited: true}}\n", ""},
	{"an empty replaces", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: second, requests_per_unit: 1, name: x, replaces: [{name: ''}]}}\n", "should not have an empty replaces entry"},
	{"replaces itself", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: second, requests_per_unit: 1, name: x, replaces: [{name: x}]}}\n", "replaces should not contain name of same descriptor"},
	{"share_threshold without a wildcard", "domain: d\ndescriptors:\n  - {key: a, value: x, share_threshold: true}\n", "share_threshold can only be used with wildcard values"},
	{"share_threshold with a wildcard", "domain: d\ndescriptors:\n  - {key: a, value: x*, share_threshold: true, rate_limit: {unit: second, requests_per_unit: 1}}\n", ""},
	{"a negative rate", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: second, requests_per_unit: -1}}\n", "error loading config file"},
	{"a rate of zero", "domain: d\ndescriptors:\n  - {key: a, rate_limit: {unit: second, requests_per_unit: 0}}\n", ""},
	{"a string for a boolean", "domain: d\ndescriptors:\n  - {key: a, shadow_mode: 'yes please'}\n", "error loading config file"},
}

func TestParseLimitConfig(t *testing.T) {
	t.Parallel()
	for _, c := range loadCases {
		_, err := ParseLimitConfig("f.yaml", []byte(c.file))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v, want it loaded", c.name, err)
		case c.err != "" && err == nil:
			t.Errorf("%s: loaded, want %q", c.name, c.err)
		case c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		case err != nil && !errors.Is(err, ErrLimitConfig):
			t.Errorf("%s: %v does not wrap ErrLimitConfig", c.name, err)
		}
	}
}

func TestDuplicateDomain(t *testing.T) {
	t.Parallel()
	a, _ := ParseLimitConfig("a.yaml", []byte("domain: d\n"))
	b, _ := ParseLimitConfig("b.yaml", []byte("domain: d\n"))
	if _, err := NewLimits(LimitsOptions{}, a, b); err == nil || !strings.Contains(err.Error(), "duplicate domain 'd'") {
		t.Errorf("two files of domain d: %v", err)
	}
}

func TestDeepConfig(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("domain: d\n")
	for i := range 100 {
		ind := strings.Repeat("  ", i)
		b.WriteString(ind + "descriptors:\n" + ind + "  - key: k\n" + ind + "    ")
	}
	b.WriteString("value: v\n")
	if _, err := ParseLimitConfig("deep.yaml", []byte(b.String())); err == nil {
		t.Error("100 levels: loaded")
	}
}

// FuzzParseLimitConfig: any file is loaded or refused with
// ErrLimitConfig, and a loaded one builds a service.
func FuzzParseLimitConfig(f *testing.F) {
	for _, c := range loadCases {
		f.Add([]byte(c.file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseLimitConfig("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrLimitConfig) {
				t.Fatalf("%v does not wrap ErrLimitConfig", err)
			}
			return
		}
		if _, err := NewLimits(LimitsOptions{}, c); err != nil {
			t.Fatalf("a loaded file does not build: %v", err)
		}
	})
}
