package ct

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// A Class is what a logged certificate means for a pinned domain.
type Class string

const (
	// Expected: a pin of the rule matches a key of the chain (the key in
	// use, a CA pin), or the operator announced the certificate or its key.
	Expected Class = "expected"
	// Rollover: the certificate is on the rule's backup key, which nobody
	// announced. Clients keep working; someone should know why.
	Rollover Class = "rollover"
	// Rogue: no pin of the rule matches any key of the chain the log
	// recorded. Pinned clients refuse it; everyone else accepts it.
	Rogue Class = "rogue"
	// UnpinnedName: a name of the organisation (a watched domain) that no
	// pin rule covers. Informational.
	UnpinnedName Class = "unpinned-name"
	// Unparsed: a certificate that could not be read, whose bytes mention
	// a watched name. Treated as worth a look, never dropped.
	Unparsed Class = "unparsed"
)

// Severity orders the classes: higher is worse (rogue 5 … expected 1).
func (c Class) Severity() int {
	switch c {
	case Rogue:
		return 5
	case Unparsed:
		return 4
	case Rollover:
		return 3
	case UnpinnedName:
		return 2
	case Expected:
		return 1
	}
	return 0
}

// An Announcement marks a certificate as expected before it is logged:
// by its key (an SPKI pin, the key of a planned renewal or the backup key
// coming into use) or by its TBS hash (one certificate), for one domain or,
// with Domain empty, any.
type Announcement struct {
	Domain string
	SPKI   pin.Pin
	TBS    [sha256.Size]byte
	// Until, when not zero, ends the announcement: certificates logged
	// after it are judged without it.
	Until time.Time
	Note  string
}

func (a *Announcement) covers(domain string, spki pin.Pin, tbs [sha256.Size]byte, at time.Time) bool {
	if a.Domain != "" && a.Domain != domain {
		return false
	}
	if !a.Until.IsZero() && at.After(a.Until) {
		return false
	}
	return (!a.SPKI.IsZero() && a.SPKI == spki) || (a.TBS != [sha256.Size]byte{} && a.TBS == tbs)
}

// A Judge classifies logged certificates against a pinning policy.
type Judge struct {
	policy   *pin.Policy
	rules    map[string]*pin.Domain // by name, the policy's own rules
	children map[string][]string    // parent name -> rule names one label below
	watch    map[string]bool        // names whose subtree is the organisation's
	announce []Announcement
}

// NewJudge returns a judge for policy (nil: no pins yet, only watched
// names). watch adds the organisation's other
// domains (each with its subdomains) whose certificates are reported as
// unpinned names; every rule's own name is watched already. A watched name
// that is not a DNS name is an error.
func NewJudge(policy *pin.Policy, watch []string, announcements []Announcement) (*Judge, error) {
	j := &Judge{policy: policy, rules: map[string]*pin.Domain{}, children: map[string][]string{}, watch: map[string]bool{}}
	var domains []pin.Domain
	if policy != nil {
		domains = policy.Domains()
	}
	for _, d := range domains {
		j.rules[d.Name] = policy.Match(d.Name)
		j.watch[d.Name] = true
		if _, parent, ok := strings.Cut(d.Name, "."); ok {
			j.children[parent] = append(j.children[parent], d.Name)
		}
	}
	for _, w := range watch {
		n, err := pin.CanonicalHost(w)
		if err != nil || !looksLikeHost(n) || strings.HasPrefix(n, "*") {
			return nil, fmt.Errorf("ct: watched domain %q is not a DNS name", w)
		}
		j.watch[n] = true
	}
	j.announce = slices.Clone(announcements)
	return j, nil
}

// Domains returns the watched names (rules' and extra), sorted: what a
// monitor looks for.
func (j *Judge) Domains() []string {
	out := make([]string, 0, len(j.watch))
	for n := range j.watch {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// A Verdict is the judgement of one certificate.
type Verdict struct {
	// Class is the worst class of Rules (or UnpinnedName / Unparsed).
	Class Class
	// Names are the certificate's names that concern the organisation.
	Names []string
	// Rules has one judgement per pin rule that covers a name.
	Rules []RuleVerdict
	// SPKI is the pin of the certificate's key.
	SPKI pin.Pin
}

// A RuleVerdict is the judgement of a certificate for one pin rule.
type RuleVerdict struct {
	// Rule is the rule's domain name.
	Rule  string
	Mode  pin.Mode
	Class Class
	// Pin is the pin that matched (zero for a rogue certificate), Role
	// its role in the rule and Position where in the chain it matched (0
	// the leaf, 1 its issuer, ...).
	Pin      pin.Pin
	Role     pin.Role
	Position int
	// Announced is set when an announcement made the certificate expected.
	Announced bool
	// Expired says the rule's pins have expired: clients no longer
	// enforce them.
	Expired bool
}

// concerns returns the rules that apply to the certificate's names and the
// names that concern the organisation.
func (j *Judge) concerns(c *Certificate) (rules []*pin.Domain, names []string) {
	add := func(d *pin.Domain) {
		if d != nil && !slices.Contains(rules, d) {
			rules = append(rules, d)
		}
	}
	for _, n := range c.DNSNames {
		ours := false
		if base, ok := strings.CutPrefix(n, "*."); ok {
			// A wildcard covers every name one label below base: the
			// rules for those names, and the rule a new name there
			// would get.
			for _, child := range j.children[base] {
				add(j.rules[child])
				ours = true
			}
			if d := j.subtreeRule(base); d != nil {
				add(d)
				ours = true
			}
			ours = ours || j.watched(base)
		} else if strings.ContainsAny(n, "*") {
			continue // a wildcard elsewhere than the first label matches nothing
		} else {
			if d := j.match(n); d != nil {
				add(d)
				ours = true
			}
			ours = ours || j.watched(n)
		}
		if ours {
			names = append(names, n)
		}
	}
	for _, a := range c.IPAddresses {
		if d := j.match(a.String()); d != nil {
			add(d)
			names = append(names, a.String())
		}
	}
	return rules, names
}

func (j *Judge) match(name string) *pin.Domain {
	if j.policy == nil {
		return nil
	}
	return j.policy.Match(name)
}

// subtreeRule is the rule that applies to a new name directly below base:
// the nearest of base and its parents with IncludeSubdomains.
func (j *Judge) subtreeRule(base string) *pin.Domain {
	for n := base; n != ""; {
		if d := j.rules[n]; d != nil && d.IncludeSubdomains {
			return d
		}
		_, parent, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		n = parent
	}
	return nil
}

func (j *Judge) watched(n string) bool {
	for n != "" {
		if j.watch[n] {
			return true
		}
		_, parent, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		n = parent
	}
	return false
}

// Concerns reports whether a certificate names the organisation at all:
// the fast test a monitor makes on every entry.
func (j *Judge) Concerns(c *Certificate) bool {
	_, names := j.concerns(c)
	return len(names) > 0
}

// Mentions reports whether raw bytes contain a watched name: the test for
// certificates that do not parse, so that none is dropped unseen.
func (j *Judge) Mentions(raw []byte) bool {
	s := strings.ToLower(string(raw))
	for n := range j.watch {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// Judge classifies certificate c at time at (which decides whether a
// rule's pins have expired and whether an announcement still holds), with
// the issuing chain the log recorded (DER, issuer first) and leafDER the
// whole certificate, nil for a precertificate's TBS.
func (j *Judge) Judge(c *Certificate, leafDER []byte, chain [][]byte, at time.Time) Verdict {
	rules, names := j.concerns(c)
	v := Verdict{Names: names, SPKI: pin.FromSPKI(c.SPKI)}
	if len(names) == 0 {
		return v
	}
	keys := chainPins(c, leafDER, chain)
	for _, d := range rules {
		rv := j.judgeRule(d, c, keys, at)
		v.Rules = append(v.Rules, rv)
		if rv.Class.Severity() > v.Class.Severity() {
			v.Class = rv.Class
		}
	}
	if len(rules) == 0 {
		v.Class = UnpinnedName
	}
	return v
}

// chainPins are, per chain position, the pins a certificate there can
// match: its SPKI pin, and its certificate pin when the whole certificate
// is known (not for a precertificate's TBS). Only the chain the log's
// tree authenticates counts: a log's chain is not covered by its Merkle
// leaf, so a certificate of the recorded chain is credited only when it
// issued the one below it (checked signatures; for a precertificate, its
// issuer is the certificate whose key hash the leaf records, or a
// precertificate signing certificate that key issued). A certificate a
// log or a proxy appended proves nothing.
func chainPins(c *Certificate, leafDER []byte, chain [][]byte) [][]pin.Pin {
	leaf := []pin.Pin{pin.FromSPKI(c.SPKI)}
	if leafDER != nil {
		leaf = append(leaf, certPin(leafDER))
	}
	out := [][]pin.Pin{leaf}
	for pos, x := range verifiedIssuers(c, leafDER, chain) {
		for len(out) <= pos+1 {
			out = append(out, nil)
		}
		if x != nil {
			out[pos+1] = []pin.Pin{pin.FromCertificate(x), certPin(x.Raw)}
		}
	}
	return out
}

// oidPrecertSigning is the extended key usage of a precertificate
// signing certificate (RFC 6962 §3.1).
var oidPrecertSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 4}

// verifiedIssuers returns the recorded chain's certificates that are
// authenticated, by chain position (nil where a position is not, and
// nothing after the first that is not).
func verifiedIssuers(c *Certificate, leafDER []byte, chain [][]byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for _, der := range chain {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			break
		}
		certs = append(certs, x)
	}
	if len(certs) == 0 {
		return nil
	}
	out := make([]*x509.Certificate, len(certs))
	first := 0
	if leafDER != nil {
		leaf, err := x509.ParseCertificate(leafDER)
		if err != nil || leaf.CheckSignatureFrom(certs[0]) != nil {
			return nil
		}
	} else {
		switch {
		case c.IssuerKeyHash == [sha256.Size]byte{}:
			return nil
		case sha256.Sum256(certs[0].RawSubjectPublicKeyInfo) == c.IssuerKeyHash:
		case len(certs) > 1 && slices.ContainsFunc(certs[0].UnknownExtKeyUsage, oidPrecertSigning.Equal) &&
			sha256.Sum256(certs[1].RawSubjectPublicKeyInfo) == c.IssuerKeyHash && certs[0].CheckSignatureFrom(certs[1]) == nil:
			first = 1 // the precertificate signing certificate is not an issuer of the final certificate
		default:
			return nil
		}
	}
	out[first] = certs[first]
	for i := first; i+1 < len(certs); i++ {
		if certs[i].CheckSignatureFrom(certs[i+1]) != nil {
			break
		}
		out[i+1] = certs[i+1]
	}
	return out
}

func certPin(der []byte) pin.Pin {
	sum := sha256.Sum256(der)
	p, _ := pin.Parse("cert-sha256:" + hex.EncodeToString(sum[:]))
	return p
}

func (j *Judge) judgeRule(d *pin.Domain, c *Certificate, keys [][]pin.Pin, at time.Time) RuleVerdict {
	rv := RuleVerdict{Rule: d.Name, Mode: d.Mode, Expired: d.Expired(at), Position: -1}
	if rv.Mode == "" {
		rv.Mode = pin.Enforce
	}
	leaf := keys[0][0]
	announced := j.announced(d.Name, leaf, c.TBSHash, at)
	for pos, ps := range keys {
		for _, p := range ps {
			if slices.Contains(d.Pins, p) && rv.Position < 0 {
				rv.Pin, rv.Role, rv.Position = p, d.Role(p), pos
			}
		}
	}
	switch {
	case rv.Position < 0 && announced:
		rv.Class, rv.Announced = Expected, true
	case rv.Position < 0:
		rv.Class = Rogue
	case rv.Position == 0 && rv.Role == pin.RoleBackup && announced:
		rv.Class, rv.Announced = Expected, true
	case rv.Position == 0 && rv.Role == pin.RoleBackup:
		rv.Class = Rollover
	default:
		rv.Class = Expected
	}
	return rv
}

func (j *Judge) announced(domain string, spki pin.Pin, tbs [sha256.Size]byte, at time.Time) bool {
	for i := range j.announce {
		if j.announce[i].covers(domain, spki, tbs, at) {
			return true
		}
	}
	return false
}
