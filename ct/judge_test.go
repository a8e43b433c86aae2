package ct_test

import (
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/pin"
)

// TestJudgeNames: which rules a certificate's names bring in, with the
// policy's own matching (exact names, include_subdomains, the most
// specific rule) and wildcard SANs covering pinned names.
func TestJudgeNames(t *testing.T) {
	w := newPKI(t)
	ipPin := pin.FromSPKI([]byte("ip key"))
	ipBackup := pin.FromSPKI([]byte("ip backup"))
	domains := w.policy.Domains()
	domains = append(domains, pin.Domain{Name: "192.0.2.7", Pins: []pin.Pin{ipPin, ipBackup}},
		pin.Domain{Name: "deep.shop.pay.example", Pins: []pin.Pin{ipPin, ipBackup}, Expires: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	policy, err := pin.NewPolicy("", domains...)
	if err != nil {
		t.Fatal(err)
	}
	j := newJudge(t, policy, []string{"pay.example", "Corp.Example."}, nil)
	if got := j.Domains(); !slices.Equal(got, []string{"192.0.2.7", "api.pay.example", "corp.example", "deep.shop.pay.example", "pay.example", "shop.pay.example"}) {
		t.Errorf("watched %q", got)
	}
	spki := keyDER(t, elliptic.P256())
	for _, c := range []struct {
		names []string
		ips   []string
		rules []string
		class ct.Class
	}{
		{[]string{"api.pay.example"}, nil, []string{"api.pay.example"}, ct.Rogue},
		{[]string{"x.api.pay.example"}, nil, nil, ct.UnpinnedName}, // api's rule has no include_subdomains
		{[]string{"*.api.pay.example"}, nil, nil, ct.UnpinnedName},
		{[]string{"www.shop.pay.example"}, nil, []string{"shop.pay.example"}, ct.Rogue},
		{[]string{"a.b.shop.pay.example"}, nil, []string{"shop.pay.example"}, ct.Rogue},
		{[]string{"deep.shop.pay.example"}, nil, []string{"deep.shop.pay.example"}, ct.Rogue}, // the most specific rule
		{[]string{"*.pay.example"}, nil, []string{"api.pay.example", "shop.pay.example"}, ct.Rogue},
		{[]string{"*.shop.pay.example"}, nil, []string{"deep.shop.pay.example", "shop.pay.example"}, ct.Rogue},
		{[]string{"a.*.pay.example"}, nil, nil, ""},
		{[]string{"blog.pay.example"}, nil, nil, ct.UnpinnedName},
		{[]string{"pay.example"}, nil, nil, ct.UnpinnedName},
		{[]string{"mail.corp.example"}, nil, nil, ct.UnpinnedName},
		{[]string{"example"}, nil, nil, ""},
		{[]string{"pay.example.evil"}, nil, nil, ""},
		{[]string{"evilpay.example"}, nil, nil, ""},
		{nil, []string{"192.0.2.7"}, []string{"192.0.2.7"}, ct.Rogue},
		{nil, []string{"192.0.2.8"}, nil, ""},
	} {
		cert := &ct.Certificate{DNSNames: c.names, SPKI: spki}
		for _, ip := range c.ips {
			cert.IPAddresses = append(cert.IPAddresses, netip.MustParseAddr(ip))
		}
		v := j.Judge(cert, nil, nil, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
		var rules []string
		for _, r := range v.Rules {
			rules = append(rules, r.Rule)
			if r.Rule == "deep.shop.pay.example" && !r.Expired {
				t.Errorf("%q: the expired rule is not marked expired", c.names)
			}
		}
		slices.Sort(rules)
		if !slices.Equal(rules, c.rules) || v.Class != c.class {
			t.Errorf("names %q %q: rules %q class %q, want %q %q", c.names, c.ips, rules, v.Class, c.rules, c.class)
		}
		if j.Concerns(cert) != (c.class != "") {
			t.Errorf("names %q: Concerns disagrees with the verdict", c.names)
		}
	}
}

// TestAnnouncements: an announced key or certificate is expected, for its
// domain only and until its end.
func TestAnnouncements(t *testing.T) {
	w := newPKI(t)
	spki := keyDER(t, elliptic.P256())
	newPin := pin.FromSPKI(spki)
	backupPin, _ := pin.FromPrivateKey(w.backupKey)
	backupSPKI := func() []byte {
		c := w.goodInt.Issue(t, testLeaf(w.backupKey, "api.pay.example"))
		return c.Cert.RawSubjectPublicKeyInfo
	}()
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	tbs := [32]byte{7}
	for _, c := range []struct {
		name string
		a    ct.Announcement
		spki []byte
		want ct.Class
	}{
		{"new key, announced", ct.Announcement{Domain: "api.pay.example", SPKI: newPin}, spki, ct.Expected},
		{"new key, any domain", ct.Announcement{SPKI: newPin}, spki, ct.Expected},
		{"new key, other domain", ct.Announcement{Domain: "shop.pay.example", SPKI: newPin}, spki, ct.Rogue},
		{"new key, announcement over", ct.Announcement{SPKI: newPin, Until: at.Add(-time.Hour)}, spki, ct.Rogue},
		{"by TBS hash", ct.Announcement{TBS: tbs}, spki, ct.Expected},
		{"backup key, announced", ct.Announcement{SPKI: backupPin}, backupSPKI, ct.Expected},
		{"backup key, not announced", ct.Announcement{SPKI: newPin}, backupSPKI, ct.Rollover},
	} {
		j := newJudge(t, w.policy, nil, []ct.Announcement{c.a})
		v := j.Judge(&ct.Certificate{DNSNames: []string{"api.pay.example"}, SPKI: c.spki, TBSHash: tbs}, nil, nil, at)
		if v.Class != c.want {
			t.Errorf("%s: %s, want %s", c.name, v.Class, c.want)
		}
		if c.want == ct.Expected && !v.Rules[0].Announced {
			t.Errorf("%s: not marked announced", c.name)
		}
	}
}

// TestChainMustBeAuthentic: a log's recorded chain is not covered by its
// Merkle leaf, so a CA pin counts only for a certificate that really
// issued the one below it. A rogue leaf with the pinned intermediate
// appended is rogue; a precertificate's issuer is the one whose key hash
// the leaf records.
func TestChainMustBeAuthentic(t *testing.T) {
	w := newPKI(t)
	j := newJudge(t, w.policy, nil, nil)
	at := time.Now()
	honest := w.goodInt.Issue(t, testLeaf(nil, "www.shop.pay.example"))
	rogue := w.rogue.Issue(t, testLeaf(nil, "www.shop.pay.example"))
	judge := func(der []byte, precert bool, ikh [32]byte, chain ...[]byte) ct.Verdict {
		t.Helper()
		x, _ := x509.ParseCertificate(der)
		c, err := ct.ParseTBS(x.RawTBSCertificate)
		if err != nil {
			t.Fatal(err)
		}
		if !precert {
			return j.Judge(c, der, chain, at)
		}
		c.IssuerKeyHash = ikh
		return j.Judge(c, nil, chain, at)
	}
	goodKeyHash := sha256.Sum256(w.goodInt.Cert.RawSubjectPublicKeyInfo)
	rogueKeyHash := sha256.Sum256(w.rogue.Cert.RawSubjectPublicKeyInfo)
	for _, c := range []struct {
		name    string
		v       ct.Verdict
		want    ct.Class
		wantPos int
	}{
		{"honest certificate", judge(honest.Cert.Raw, false, [32]byte{}, w.goodInt.Cert.Raw), ct.Expected, 1},
		{"rogue certificate, pinned CA appended", judge(rogue.Cert.Raw, false, [32]byte{}, w.goodInt.Cert.Raw), ct.Rogue, -1},
		{"rogue certificate, pinned CA after its own", judge(rogue.Cert.Raw, false, [32]byte{}, w.rogue.Cert.Raw, w.goodInt.Cert.Raw), ct.Rogue, -1},
		{"honest precertificate", judge(honest.Cert.Raw, true, goodKeyHash, w.goodInt.Cert.Raw), ct.Expected, 1},
		{"rogue precertificate, pinned CA appended", judge(rogue.Cert.Raw, true, rogueKeyHash, w.goodInt.Cert.Raw), ct.Rogue, -1},
		{"precertificate without its issuer's key hash", judge(honest.Cert.Raw, true, [32]byte{}, w.goodInt.Cert.Raw), ct.Rogue, -1},
	} {
		if c.v.Class != c.want || c.v.Rules[0].Position != c.wantPos {
			t.Errorf("%s: %s at position %d, want %s at %d", c.name, c.v.Class, c.v.Rules[0].Position, c.want, c.wantPos)
		}
	}
}

func TestParseAnnouncements(t *testing.T) {
	spki := pin.FromSPKI([]byte("k")).String()
	got, err := ct.ParseAnnouncements([]byte("expected:\n  - spki: " + spki + "\n    domain: API.pay.example.\n    until: 2027-01-31\n  - tbs: " + strings.Repeat("ab", 32) + "\n"))
	if err != nil || len(got) != 2 || got[0].Domain != "api.pay.example" || got[0].Until.Format(time.RFC3339Nano) != "2027-01-31T23:59:59.999999999Z" || got[1].TBS[0] != 0xab {
		t.Fatalf("%+v %v", got, err)
	}
	for name, doc := range map[string]string{
		"both":          "expected:\n  - {spki: " + spki + ", tbs: " + strings.Repeat("ab", 32) + "}\n",
		"neither":       "expected:\n  - {domain: a.example}\n",
		"a cert pin":    "expected:\n  - {spki: 'cert-sha256:" + strings.Repeat("ab", 32) + "'}\n",
		"short tbs":     "expected:\n  - {tbs: abcd}\n",
		"bad until":     "expected:\n  - {spki: " + spki + ", until: soon}\n",
		"unknown field": "expected:\n  - {spki: " + spki + ", pin: x}\n",
		"too large":     "expected:\n" + strings.Repeat("#", ct.MaxAnnouncementsSize),
	} {
		if _, err := ct.ParseAnnouncements([]byte(doc)); !errors.Is(err, ct.ErrAnnouncements) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
