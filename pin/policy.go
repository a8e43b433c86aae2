package pin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

// Mode says what a pin validation failure does to the connection.
type Mode string

const (
	// Enforce refuses the connection (and reports the failure).
	Enforce Mode = "enforce"
	// ReportOnly lets the connection through and reports the failure: the
	// way to deploy a new policy before enforcing it.
	ReportOnly Mode = "report-only"
)

// dateLayout is the format of [Domain.Expires] in policy files.
const dateLayout = "2006-01-02"

// Domain is the pinning rule for one host name, or for a host name and its
// subdomains.
type Domain struct {
	// Name is a lowercase host name without trailing dot ("api.example.com")
	// or an IP address. Required.
	Name string
	// IncludeSubdomains extends the rule to every name below Name. The most
	// specific rule for a host wins.
	IncludeSubdomains bool
	// Mode is Enforce or ReportOnly; "" means Enforce.
	Mode Mode
	// Expires, when not zero, is the last day on which the pins hold: its
	// calendar date, read in its own location, is kept as 00:00 UTC, and
	// the pins hold through the end of that day, UTC. From the next day on, the host gets CA validation only and a
	// warning is logged and reported, so an app that is never updated is
	// not bricked by stale pins (Android and TrustKit semantics).
	Expires time.Time
	// Pins are the accepted pins. A connection is accepted when one of them
	// matches a certificate of a verified chain. At least one
	// ([ErrNoPins]), two for an enforced rule (see AllowSinglePin).
	Pins []Pin
	// Roles optionally says what each pin is a key of (leaf, backup, CA).
	// Verification ignores roles; exports that must tell leaf keys from CA
	// keys (iOS App Transport Security) and `rampart pin lint` use them.
	// Nil: no pin has a role.
	Roles map[Pin]Role
	// AllowSinglePin opts out of the backup-pin rule: without it, an
	// enforced rule needs at least two distinct pins, so that losing or
	// rotating the key in use does not lock every client out.
	AllowSinglePin bool
	// ReportURI receives failure reports for this rule; the policy's
	// default when the rule names none. Empty: failures are only logged.
	ReportURI string
	// RequireSCTs refuses (or, report-only, reports) a certificate that
	// lacks valid SCTs from the policy's CT logs, counted as browsers
	// count them (see [NewPolicyWithCTLogs]), so that an attacker's
	// certificate must have been logged to be accepted at all. Off by
	// default: certificates of private CAs are never logged, and a pinned
	// app whose list of logs goes stale (logs retire) would refuse every
	// new certificate; pinning already refuses a rogue certificate.
	RequireSCTs bool
}

// Role says what a pin is a key of.
type Role string

const (
	RoleUnknown Role = ""
	RoleLeaf    Role = "leaf"   // the key of the server's certificate
	RoleBackup  Role = "backup" // a spare leaf key, kept offline for the next certificate
	RoleCA      Role = "ca"     // the key of an intermediate or root CA
)

// Role returns the role of pin p in the rule, RoleUnknown when unsaid.
func (d *Domain) Role(p Pin) Role { return d.Roles[p] }

// Expired reports whether the pin set has expired at time now: Expires is
// inclusive, so the pins hold through the end of that day, UTC.
func (d *Domain) Expired(now time.Time) bool {
	return !d.Expires.IsZero() && !now.Before(d.ExpiresAt())
}

// ExpiresAt returns the first instant at which the pin set no longer holds
// (midnight UTC after Expires), or the zero time when it never expires.
func (d *Domain) ExpiresAt() time.Time {
	if d.Expires.IsZero() {
		return time.Time{}
	}
	return d.Expires.AddDate(0, 0, 1)
}

// A Policy maps host names to pinning rules. It is immutable: build a new one
// to change pins, and hand it to [Verifier.SetPolicy].
//
// The zero Policy is not usable; build one with [NewPolicy], [ParsePolicy]
// or [LoadPolicy].
type Policy struct {
	reportURI string
	ctLogs    []CTLog
	domains   []Domain
	byName    map[string]*Domain
	ipRules   []*Domain // rules for IP addresses, for connections whose name is unknown
}

// ReportURI returns the policy's default report URI, which rules without
// their own inherit.
func (p *Policy) ReportURI() string { return p.reportURI }

// Domains returns a copy of the rules in the order they were given.
func (p *Policy) Domains() []Domain {
	out := make([]Domain, len(p.domains))
	for i, d := range p.domains {
		d.Pins = slices.Clone(d.Pins)
		d.Roles = maps.Clone(d.Roles)
		out[i] = d
	}
	return out
}

// Match returns the rule that applies to host, or nil when the policy does
// not pin host. The returned rule belongs to the policy and must not be
// modified. The most specific rule wins: an exact rule for the name
// itself, else the nearest parent rule with IncludeSubdomains. A parent
// rule without IncludeSubdomains does not apply to its subdomains.
func (p *Policy) Match(host string) *Domain {
	host, isIP := canonicalHost(host)
	if d := p.byName[host]; d != nil {
		return d
	}
	if isIP {
		return nil
	}
	for i := strings.IndexByte(host, '.'); i >= 0; i = strings.IndexByte(host, '.') {
		host = host[i+1:]
		if d := p.byName[host]; d != nil && d.IncludeSubdomains {
			return d
		}
	}
	return nil
}

// canonicalHost returns the form of host that rules are stored under:
// lowercase without trailing dots for names (every trailing dot, as
// crypto/tls strips them from the SNI); for IP addresses the form netip
// prints, without brackets or zone, IPv4-mapped IPv6 as IPv4 — the way
// crypto/x509 compares addresses, so that no spelling of a pinned address
// escapes its rule. See [CanonicalHost] for the names it refuses.
func canonicalHost(host string) (string, bool) {
	for {
		h := strings.TrimRight(host, ".")
		if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
			h = h[1 : len(h)-1]
		}
		if h == host {
			break
		}
		host = h
	}
	if mayBeIP(host) {
		if addr, err := netip.ParseAddr(host); err == nil {
			return addr.WithZone("").Unmap().String(), true
		}
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host), false
		}
	}
	return host, false
}

// ErrInvalidServerName is returned (wrapped) for a server name with an
// empty label ("api..example.com", ".example.com"), which no rule can
// match by its labels but which crypto/x509 matches exactly against a
// certificate's name of the same spelling: such a name is refused, never
// left unpinned.
var ErrInvalidServerName = errors.New("pin: server name has an empty label")

// CanonicalHost returns the form of a server name that rules are matched
// under, as every entry point of this package computes it: lowercase,
// without its trailing dots (all of them, as crypto/tls strips them from
// the SNI; RFC 6066 §3), and for an IP address, with or without brackets,
// the address as netip prints it (IPv4-mapped IPv6 as IPv4, no zone). A
// name with an empty label is refused with [ErrInvalidServerName].
func CanonicalHost(name string) (string, error) {
	h, isIP := canonicalHost(name)
	if !isIP && (h == "" || h[0] == '.' || strings.Contains(h, "..")) {
		return "", fmt.Errorf("%w: %q", ErrInvalidServerName, name)
	}
	return h, nil
}

// mayBeIP is a cheap filter in front of netip.ParseAddr, whose error
// allocates: on the handshake path most hosts are names.
func mayBeIP(h string) bool {
	if strings.IndexByte(h, ':') >= 0 {
		return true
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return h != ""
}

// PolicyError reports an invalid policy. Domain is empty for errors that
// concern the whole policy.
type PolicyError struct {
	Source string // file name, if known
	Domain string
	Err    error
}

func (e *PolicyError) Error() string {
	var b strings.Builder
	b.WriteString("pin: policy")
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	if e.Domain != "" {
		fmt.Fprintf(&b, ": domain %q", e.Domain)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *PolicyError) Unwrap() error { return e.Err }

// Errors wrapped by [PolicyError] for the rules that tools name (see
// `rampart pin lint`).
var (
	// ErrDuplicatePin: a pin is listed twice in a rule, often a backup pin
	// copied from the primary.
	ErrDuplicatePin = errors.New("pin listed twice; a backup pin must be a different key")
	// ErrDuplicateDomain: two rules for the same name.
	ErrDuplicateDomain = errors.New("listed twice: merge the two rules")
	// ErrReportLoop: a report URI on the pinned domain itself.
	ErrReportLoop = errors.New("report_uri is on the pinned domain itself: reports of a pin failure could never be delivered (report loop); send them to another host")
)

// ErrNoPins is wrapped by the [PolicyError] of a rule without pins.
var ErrNoPins = errors.New("no pins")

// ErrNoBackupPin is wrapped by the [PolicyError] of an enforced rule with
// fewer than two distinct pins.
var ErrNoBackupPin = errors.New("enforce mode needs at least two distinct pins: add a backup pin (the pin of a spare key kept offline, see `rampart pin keygen`), or set allow_single_pin: true to accept the risk")

// NewPolicy validates domains and returns a Policy. defaultReportURI may be
// empty. Rules are checked as in a policy file; see [ParsePolicy].
func NewPolicy(defaultReportURI string, domains ...Domain) (*Policy, error) {
	p := &Policy{reportURI: defaultReportURI}
	if err := p.init(domains); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Policy) init(domains []Domain) error {
	var errs []error
	defaultURI := p.reportURI
	if defaultURI != "" {
		if err := checkReportURI(defaultURI); err != nil {
			errs = append(errs, &PolicyError{Err: fmt.Errorf("report_uri: %w", err)})
			defaultURI = "" // reported once, not again for every rule
		}
	}
	if len(domains) == 0 {
		return &PolicyError{Err: errors.New("no domains: a policy pins at least one domain")}
	}
	if err := checkCTLogs(p.ctLogs); err != nil {
		errs = append(errs, err)
	}
	p.domains = make([]Domain, 0, len(domains))
	names := make(map[string]bool, len(domains))
	for i, d := range domains {
		d.Pins = slices.Clone(d.Pins)
		d.Roles = maps.Clone(d.Roles)
		if problems := checkDomain(&d, defaultURI); len(problems) > 0 {
			name := d.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			for _, err := range problems {
				errs = append(errs, &PolicyError{Domain: name, Err: err})
			}
			continue
		}
		if names[d.Name] {
			errs = append(errs, &PolicyError{Domain: d.Name, Err: ErrDuplicateDomain})
			continue
		}
		if d.RequireSCTs && operators(p.ctLogs) < 2 {
			errs = append(errs, &PolicyError{Domain: d.Name, Err: ErrSCTLogs})
			continue
		}
		names[d.Name] = true
		p.domains = append(p.domains, d)
	}
	if len(errs) > 0 {
		// Every problem at once, so that a policy is fixed in one pass.
		return errors.Join(errs...)
	}
	p.byName = make(map[string]*Domain, len(p.domains))
	for i := range p.domains {
		d := &p.domains[i]
		p.byName[d.Name] = d
		if _, err := netip.ParseAddr(d.Name); err == nil {
			p.ipRules = append(p.ipRules, d)
		}
	}
	return nil
}

// checkDomain normalizes d in place and validates it, returning every
// problem of the rule, not the first only.
func checkDomain(d *Domain, defaultReportURI string) []error {
	name, err := checkName(d.Name)
	if err != nil {
		return []error{err} // nothing else can be judged without the name
	}
	d.Name = name
	var errs []error
	if _, err := netip.ParseAddr(name); err == nil && d.IncludeSubdomains {
		errs = append(errs, errors.New("include_subdomains makes no sense for an IP address"))
	}
	switch d.Mode {
	case "":
		d.Mode = Enforce
	case Enforce, ReportOnly:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %q or %q", d.Mode, Enforce, ReportOnly))
	}
	if !d.Expires.IsZero() {
		// The calendar date the caller wrote, in whatever location; the pin
		// set holds through the end of that date, UTC.
		y, m, dd := d.Expires.Date()
		d.Expires = time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
	}
	if len(d.Pins) == 0 {
		errs = append(errs, ErrNoPins)
	}
	seen := make(map[Pin]int, len(d.Pins))
	for i, p := range d.Pins {
		if p.IsZero() {
			errs = append(errs, fmt.Errorf("pin #%d is the zero Pin", i+1))
			continue
		}
		if seen[p]++; seen[p] == 2 { // once per repeated pin
			errs = append(errs, fmt.Errorf("%s: %w", p, ErrDuplicatePin))
		}
	}
	for _, p := range slices.SortedFunc(maps.Keys(d.Roles), func(a, b Pin) int { return strings.Compare(a.String(), b.String()) }) {
		r := d.Roles[p]
		if !slices.Contains(d.Pins, p) {
			errs = append(errs, fmt.Errorf("a role is given for %s, which is not one of the rule's pins", p))
			continue
		}
		switch r {
		case RoleUnknown, RoleLeaf, RoleBackup, RoleCA:
		default:
			errs = append(errs, fmt.Errorf("pin %s: role %q: want leaf, backup or ca", p, r))
		}
	}
	// A repeated pin is reported as such, not again as a missing backup.
	if d.Mode == Enforce && len(d.Pins) == 1 && !d.AllowSinglePin {
		errs = append(errs, ErrNoBackupPin)
	}
	if d.ReportURI == "" {
		d.ReportURI = defaultReportURI
	} else if err := checkReportURI(d.ReportURI); err != nil {
		errs = append(errs, fmt.Errorf("report_uri: %w", err))
		return errs
	}
	if d.ReportURI != "" {
		u, _ := url.Parse(d.ReportURI)
		h, _ := canonicalHost(u.Hostname())
		if h == d.Name || d.IncludeSubdomains && strings.HasSuffix(h, "."+d.Name) {
			errs = append(errs, fmt.Errorf("%s: %w", d.ReportURI, ErrReportLoop))
		}
	}
	return errs
}

// checkName validates a rule's domain name and returns it normalized.
func checkName(name string) (string, error) {
	if name == "" {
		return "", errors.New("domain is empty")
	}
	if addr, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		if addr.Zone() != "" {
			return "", errors.New("an IP address with a zone cannot be pinned")
		}
		return addr.Unmap().String(), nil
	}
	if strings.Contains(name, "*") {
		return "", errors.New("wildcards are not allowed: pin the parent domain with include_subdomains: true")
	}
	if strings.Contains(name, "://") || strings.ContainsAny(name, "/:") {
		return "", errors.New("want a host name, without scheme, port or path")
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if len(n) > 253 {
		return "", errors.New("host name longer than 253 characters")
	}
	for _, label := range strings.Split(n, ".") {
		if err := checkLabel(label); err != nil {
			return "", err
		}
	}
	return n, nil
}

func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label in host name")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q is longer than 63 characters", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i != 0 && i != len(l)-1:
		case c == '_': // seen in real names; certificates may carry them
		case c >= 0x80:
			return fmt.Errorf("label %q is not ASCII: write internationalized names in their punycode (xn--) form", l)
		default:
			return fmt.Errorf("invalid character %q in host name", c)
		}
	}
	return nil
}

// checkReportURI requires https, or http to a loopback address (for local
// collectors and tests).
func checkReportURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries credentials; they would end up in logs", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if httpx.IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q uses http: reports carry certificate chains and host names, so they must go over https (http is allowed only to a loopback address)", s)
	}
	return fmt.Errorf("%q: scheme must be https", s)
}

// The on-disk form. Field names are the documented policy format.
type fileDomain struct {
	Domain            string    `yaml:"domain" json:"domain"`
	IncludeSubdomains bool      `yaml:"include_subdomains" json:"include_subdomains"`
	Mode              Mode      `yaml:"mode" json:"mode"`
	Expires           string    `yaml:"expires,omitempty" json:"expires,omitempty"`
	Pins              []filePin `yaml:"pins" json:"pins"`
	AllowSinglePin    bool      `yaml:"allow_single_pin,omitempty" json:"allow_single_pin,omitempty"`
	ReportURI         string    `yaml:"report_uri,omitempty" json:"report_uri,omitempty"`
	RequireSCTs       bool      `yaml:"require_scts,omitempty" json:"require_scts,omitempty"`
}

type filePolicy struct {
	Version   int          `yaml:"version" json:"version"`
	ReportURI string       `yaml:"report_uri,omitempty" json:"report_uri,omitempty"`
	CTLogs    []fileCTLog  `yaml:"ct_logs,omitempty" json:"ct_logs,omitempty"`
	Domains   []fileDomain `yaml:"domains" json:"domains"`
}

// filePin is a pin as written: "sha256/..." or {pin: "sha256/...", role: ca}.
type filePin struct {
	Pin  string `json:"pin"`
	Role Role   `json:"role,omitempty"`
}

func (f *filePin) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&f.Pin)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var err error
			switch k.Value {
			case "pin":
				err = v.Decode(&f.Pin)
			case "role":
				err = v.Decode(&f.Role)
			default:
				return fmt.Errorf("line %d: field %s is not a pin field (want pin, role)", k.Line, k.Value)
			}
			if err != nil {
				return err
			}
		}
		if f.Pin == "" {
			return fmt.Errorf("line %d: pin entry without pin", n.Line)
		}
		return nil
	}
	return fmt.Errorf("line %d: a pin is a string or {pin: ..., role: ...}", n.Line)
}

func (f filePin) MarshalJSON() ([]byte, error) {
	if f.Role == RoleUnknown {
		return json.Marshal(f.Pin)
	}
	type plain filePin
	return json.Marshal(plain(f))
}

// maxPolicySize bounds what ParsePolicy reads; real policies are a few KiB.
const maxPolicySize = 1 << 20

// ParsePolicy parses a policy file in YAML or JSON (JSON is read as YAML, so
// both have the same strict rules):
//
//	version: 1
//	report_uri: https://reports.example.com/pins   # optional default
//	domains:
//	  - domain: api.example.com
//	    include_subdomains: false
//	    mode: enforce              # enforce (default) | report-only
//	    expires: "2027-06-30"      # optional, inclusive, UTC
//	    pins:
//	      - sha256/...             # current key
//	      - {pin: sha256/..., role: backup}   # a role is optional: leaf, backup or ca
//	      - cert-sha256:ab12...    # or a whole-certificate fingerprint
//	    allow_single_pin: false    # true opts out of the backup-pin rule
//	    report_uri: https://...    # optional override
//	    require_scts: false        # true: also require SCTs from ct_logs
//	ct_logs:                       # the CT logs whose SCTs count (two operators at least)
//	  - {key: <base64 DER public key>, operator: Google, description: Argon 2026h2}
//
// Unknown fields, duplicate keys, duplicate domains, malformed pins, an
// enforced rule without a backup pin, a non-https report URI, or a report
// URI on the pinned domain itself are errors. Every invalid rule is
// reported: the error is a [*PolicyError], or several joined with
// [errors.Join].
func ParsePolicy(data []byte) (*Policy, error) {
	return parsePolicy(data, "")
}

// LoadPolicy reads and parses a policy file; see [ParsePolicy].
func LoadPolicy(path string) (*Policy, error) {
	data, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	return parsePolicy(data, path)
}

func readPolicy(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	return data, nil
}

// DecodePolicy reads a policy file's syntax — the fields, pins and dates —
// without the checks of [NewPolicy], for tools that review a policy rule by
// rule: [NewPolicy](reportURI, domains...) then gives what [ParsePolicy]
// gives. source names the file in errors; it may be empty.
//
// When only some rules are malformed (a pin or a date that does not
// parse), the error has a [*PolicyError] for each of those problems, and
// reportURI and domains are still returned, every rule decoded as far as
// it goes (the malformed pins and dates left out), so that a tool can
// review the rest in the same pass. When the file as a whole cannot be
// read, domains is nil.
func DecodePolicy(data []byte, source string) (reportURI string, domains []Domain, err error) {
	_, reportURI, domains, err = decodePolicy(data, source)
	return reportURI, domains, err
}

// DecodeCTLogs reads the ct_logs of a policy file (see [DecodePolicy]), for
// tools that rebuild the policy with [NewPolicyWithCTLogs].
func DecodeCTLogs(data []byte, source string) ([]CTLog, error) {
	fp, _, _, err := decodePolicy(data, source)
	if err != nil && fp == nil {
		return nil, err
	}
	return fp.logs(source)
}

func (fp *filePolicy) logs(source string) ([]CTLog, error) {
	var logs []CTLog
	for i := range fp.CTLogs {
		l, err := fp.CTLogs[i].log()
		if err != nil {
			return nil, withSource(&PolicyError{Err: err}, source)
		}
		logs = append(logs, l)
	}
	return logs, nil
}

func decodePolicy(data []byte, source string) (fpp *filePolicy, reportURI string, domains []Domain, err error) {
	if len(data) > maxPolicySize {
		return nil, "", nil, withSource(fmt.Errorf("larger than %d bytes", maxPolicySize), source)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, "", nil, withSource(errors.New("empty file"), source)
	}
	var fp filePolicy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fp); err != nil {
		return nil, "", nil, withSource(yamlError(err), source)
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, "", nil, withSource(errors.New("more than one YAML document"), source)
	}
	if fp.Version != 1 {
		return nil, "", nil, withSource(fmt.Errorf("version %d: want version: 1", fp.Version), source)
	}
	var errs []error
	domains = make([]Domain, len(fp.Domains))
	for i, fd := range fp.Domains {
		d, problems := fd.domain()
		name := fd.Domain
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		for _, err := range problems {
			errs = append(errs, &PolicyError{Domain: name, Err: err})
		}
		domains[i] = d
	}
	if len(errs) > 0 {
		return &fp, fp.ReportURI, domains, withSource(errors.Join(errs...), source)
	}
	return &fp, fp.ReportURI, domains, nil
}

// LoadPolicyFile reads a policy file and decodes it; see [DecodePolicy].
func LoadPolicyFile(path string) (reportURI string, domains []Domain, err error) {
	data, err := readPolicy(path)
	if err != nil {
		return "", nil, err
	}
	return DecodePolicy(data, path)
}

// withSource names the file in policy errors, joined or not.
func withSource(err error, source string) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if pe, ok := e.(*PolicyError); ok {
				pe.Source = source
			}
		}
		return err
	}
	if pe, ok := err.(*PolicyError); ok {
		pe.Source = source
		return pe
	}
	return &PolicyError{Source: source, Err: err}
}

func parsePolicy(data []byte, source string) (*Policy, error) {
	fp, reportURI, domains, err := decodePolicy(data, source)
	if err != nil {
		return nil, err
	}
	logs, err := fp.logs(source)
	if err != nil {
		return nil, err
	}
	p := &Policy{reportURI: reportURI, ctLogs: logs}
	if err := p.init(domains); err != nil {
		return nil, withSource(err, source)
	}
	return p, nil
}

// domain decodes fd, leaving out what does not parse, and returns every
// problem.
func (fd *fileDomain) domain() (Domain, []error) {
	d := Domain{
		Name:              fd.Domain,
		IncludeSubdomains: fd.IncludeSubdomains,
		Mode:              fd.Mode,
		AllowSinglePin:    fd.AllowSinglePin,
		ReportURI:         fd.ReportURI,
		RequireSCTs:       fd.RequireSCTs,
	}
	var errs []error
	if fd.Expires != "" {
		t, err := time.Parse(dateLayout, fd.Expires)
		if err != nil {
			errs = append(errs, fmt.Errorf("expires %q: want a date as YYYY-MM-DD", fd.Expires))
		}
		d.Expires = t
	}
	for _, fp := range fd.Pins {
		p, err := Parse(fp.Pin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.Pins = append(d.Pins, p)
		if fp.Role != RoleUnknown {
			if d.Roles == nil {
				d.Roles = make(map[Pin]Role)
			}
			d.Roles[p] = fp.Role
		}
	}
	return d, errs
}

// yamlError rewrites the YAML decoder's messages, which name Go types, into
// ones that name policy fields.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			m = strings.Replace(m, "not found in type pin.filePolicy", "is not a policy field", 1)
			m = strings.Replace(m, "not found in type pin.fileDomain", "is not a domain field", 1)
			msgs[i] = m
		}
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// MarshalJSON returns the normalized policy in the policy-file schema:
// names lowercased, modes explicit, report URIs resolved per domain, pins
// in canonical form (an object {pin, role} when the pin has a role).
func (p *Policy) MarshalJSON() ([]byte, error) {
	fp := filePolicy{Version: 1, ReportURI: p.reportURI, Domains: make([]fileDomain, len(p.domains))}
	for _, l := range p.ctLogs {
		fp.CTLogs = append(fp.CTLogs, fileCTLog{Key: base64.StdEncoding.EncodeToString(l.KeyDER), Operator: l.Operator, Description: l.Description})
	}
	for i, d := range p.domains {
		fd := fileDomain{
			Domain:            d.Name,
			IncludeSubdomains: d.IncludeSubdomains,
			Mode:              d.Mode,
			AllowSinglePin:    d.AllowSinglePin,
			ReportURI:         d.ReportURI,
			RequireSCTs:       d.RequireSCTs,
			Pins:              make([]filePin, len(d.Pins)),
		}
		if !d.Expires.IsZero() {
			fd.Expires = d.Expires.Format(dateLayout)
		}
		for j, pin := range d.Pins {
			fd.Pins[j] = filePin{Pin: pin.String(), Role: d.Roles[pin]}
		}
		fp.Domains[i] = fd
	}
	return json.Marshal(fp)
}
