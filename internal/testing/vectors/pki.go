package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"time"

	"github.com/rampartsec/rampart/internal/util/keygen"
	"github.com/rampartsec/rampart/internal/util/pki"
	"github.com/rampartsec/rampart/pin"
)

// PKIFile is the file of PKI scenarios (pki.json).
type PKIFile struct {
	Format      string `json:"format"`
	Description string `json:"description"`
	// Certificates are every certificate of the scenarios by name, with
	// the private key of those a server presents.
	Certificates map[string]Certificate `json:"certificates"`
	Cases        []PKICase              `json:"cases"`
}

// Certificate is one certificate of the scenarios.
type Certificate struct {
	PEM     string `json:"pem"`
	SPKIPin string `json:"spki_pin"`
	CertPin string `json:"cert_pin"`
	// KeyPEM is the PKCS #8 private key, for the leaves a test server
	// presents.
	KeyPEM string `json:"key_pem,omitempty"`
}

// PKICase is a connection: a client trusting Roots, with Policy at Now,
// connects to Host, where a server presents Served (leaf first, with the
// leaf's key).
type PKICase struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Host        string          `json:"host"`
	Roots       []string        `json:"roots"`
	Served      []string        `json:"served"`
	Policy      json.RawMessage `json:"policy"`
	// Now is the client's clock for the policy (pin-set expiry), Unix
	// seconds; certificates are valid at any time in the years after
	// generation, so platform validation uses the real clock.
	Now         int64             `json:"now"`
	Expect      PKIExpect         `json:"expect"`
	Unsupported map[string]string `json:"unsupported,omitempty"`
}

// PKIExpect is the outcome a client must reach.
type PKIExpect struct {
	// Accept: the connection is allowed.
	Accept bool `json:"accept"`
	// Failure, when refused: "pin" (a pin failure) or "tls" (the
	// platform's own validation refuses; no pin check, no report).
	Failure string `json:"failure,omitempty"`
	// Report is the failure report sent, nil when none is.
	Report *ExpectReport `json:"report"`
}

// ExpectReport is what the RFC 7469 §3 report must say (plus Rampart's
// rampart-reason and rampart-mode). Chains are given as the SPKI pins of
// their certificates, leaf first.
type ExpectReport struct {
	Reason                  string   `json:"rampart-reason"`
	Mode                    string   `json:"rampart-mode"`
	Hostname                string   `json:"hostname"`
	NotedHostname           string   `json:"noted-hostname"`
	IncludeSubdomains       bool     `json:"include-subdomains"`
	EffectiveExpirationDate *string  `json:"effective-expiration-date"`
	KnownPins               []string `json:"known-pins"`
	KnownCertPins           []string `json:"rampart-known-cert-pins,omitempty"`
	ServedChain             []string `json:"served-chain-pins"`
	ValidatedChain          []string `json:"validated-chain-pins"`
}

// pkiNow is the policy clock of most scenarios: 2026-12-01T00:00:00Z.
var pkiNow = bundleNow

// BuildPKI generates the PKI scenarios.
func BuildPKI() (*PKIFile, error) {
	legitRoot, err := pki.NewRoot("Rampart Vectors Root")
	if err != nil {
		return nil, err
	}
	legitInt, err := legitRoot.NewIntermediate("Rampart Vectors Issuing CA")
	if err != nil {
		return nil, err
	}
	rogueRoot, err := pki.NewRoot("Compromised But Trusted Root")
	if err != nil {
		return nil, err
	}
	rogueInt, err := rogueRoot.NewIntermediate("Compromised Issuing CA")
	if err != nil {
		return nil, err
	}
	names := []string{"api.rampart.example", "rampart.example", "sub.api.rampart.example"}
	notBefore := time.Now().Add(-24 * time.Hour).Truncate(time.Hour)
	notAfter := notBefore.AddDate(4, 0, 0)
	leafKey, _ := pki.NewKey(pki.ECDSAP256)
	backupKey, _ := pki.NewKey(pki.ECDSAP256)
	issue := func(ca *pki.CA, key crypto.Signer) (*pki.Leaf, error) {
		return ca.Issue(pki.LeafOptions{DNSNames: names, Key: key, NotBefore: notBefore, NotAfter: notAfter})
	}
	legit, err := issue(legitInt, leafKey)
	if err != nil {
		return nil, err
	}
	renewed, err := issue(legitInt, backupKey)
	if err != nil {
		return nil, err
	}
	fresh, err := issue(legitInt, nil)
	if err != nil {
		return nil, err
	}
	rogue, err := issue(rogueInt, nil)
	if err != nil {
		return nil, err
	}
	// A self-signed certificate on the pinned key: a pin never stands in
	// for CA validation.
	selfSigned, err := selfSign(leafKey.(*ecdsa.PrivateKey), names, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	// A compromised root's intermediate that copies the real issuing CA's
	// subject and key identifier, and a leaf it issues: a chain walked by
	// names and key identifiers (not signatures) reaches the real CA.
	twinInt, twinLeaf, err := twin(rogueRoot, legitInt, names, notBefore, notAfter)
	if err != nil {
		return nil, err
	}

	certs := map[string]Certificate{}
	add := func(name string, c *x509.Certificate, key crypto.Signer) {
		e := Certificate{PEM: string(pki.CertPEM(c)), SPKIPin: pin.FromCertificate(c).String(), CertPin: pin.Fingerprint(c).String()}
		if key != nil {
			k, err := keygen.KeyPEM(key)
			if err != nil {
				panic(err)
			}
			e.KeyPEM = string(k)
		}
		certs[name] = e
	}
	add("legit-root", legitRoot.Cert, nil)
	add("legit-int", legitInt.Cert, nil)
	add("legit-leaf", legit.Cert, legit.Key)
	add("renewed-leaf", renewed.Cert, renewed.Key)
	add("fresh-leaf", fresh.Cert, fresh.Key)
	add("rogue-root", rogueRoot.Cert, nil)
	add("rogue-int", rogueInt.Cert, nil)
	add("rogue-leaf", rogue.Cert, rogue.Key)
	add("self-signed-pinned-key", selfSigned, leafKey)
	add("twin-int", twinInt, nil)
	add("twin-leaf", twinLeaf.Cert, twinLeaf.Key)

	p := func(n string) string { return certs[n].SPKIPin }
	leafPin, backupPin := p("legit-leaf"), pin.FromCertificate(renewed.Cert).String()
	policy := func(rules ...rule) json.RawMessage {
		b, err := json.Marshal(policyDoc{Version: 1, ReportURI: "https://reports.collector.example/v1/reports", Domains: rules})
		if err != nil {
			panic(err)
		}
		if err := checkPolicy(b); err != nil {
			panic(err)
		}
		return b
	}
	api := func(pins ...string) rule {
		return rule{Domain: "api.rampart.example", Mode: "enforce", Pins: pins}
	}
	std := policy(api(leafPin, backupPin))
	both := []string{"legit-root", "rogue-root"}
	chainPins := func(names ...string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = p(n)
		}
		return out
	}
	known := func(pins ...string) []string {
		out := make([]string, len(pins))
		for i, s := range pins {
			out[i] = `pin-sha256="` + s[len("sha256/"):] + `"`
		}
		return out
	}
	report := func(reason, mode, host, noted string, sub bool, exp *string, pins []string, served, validated []string) *ExpectReport {
		return &ExpectReport{Reason: reason, Mode: mode, Hostname: host, NotedHostname: noted, IncludeSubdomains: sub,
			EffectiveExpirationDate: exp, KnownPins: known(pins...), ServedChain: served, ValidatedChain: validated}
	}
	rogueServed := []string{"rogue-leaf", "rogue-int"}
	rogueValidated := chainPins("rogue-leaf", "rogue-int", "rogue-root")
	expiry := "2026-07-01T00:00:00Z"
	lastDay := time.Date(2026, 6, 30, 23, 59, 59, 0, time.UTC).Unix()
	dayAfter := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).Unix()
	expiring := rule{Domain: "api.rampart.example", Mode: "enforce", Expires: "2026-06-30", Pins: []string{leafPin, backupPin}}
	parent := rule{Domain: "rampart.example", IncludeSubdomains: true, Mode: "enforce", Pins: []string{leafPin, backupPin}}
	parentOnly := parent
	parentOnly.IncludeSubdomains = false
	apiRO := rule{Domain: "api.rampart.example", Mode: "report-only", Pins: []string{leafPin}}

	cases := []PKICase{
		{Name: "legit", Description: "the real chain, pinned on the leaf key with a backup", Host: "api.rampart.example", Roots: both, Served: []string{"legit-leaf", "legit-int"}, Policy: std,
			Expect: PKIExpect{Accept: true}},
		{Name: "rogue-ca", Description: "a chain from a compromised CA the platform trusts, for the pinned name: the platform accepts it, the pins refuse it", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: std,
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, nil, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "appended-chain", Description: "the rogue chain with the real issuing CA and root appended (CVE-2016-2402): a pin on the real CA matches the served list, never the verified chain", Host: "api.rampart.example", Roots: both,
			Served: []string{"rogue-leaf", "rogue-int", "legit-int", "legit-root"}, Policy: policy(api(p("legit-int"), backupPin)),
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, nil, []string{p("legit-int"), backupPin}, chainPins("rogue-leaf", "rogue-int", "legit-int", "legit-root"), rogueValidated)}},
		{Name: "appended-chain-twin-issuer", Description: "a leaf from a compromised root's intermediate that copies the real issuing CA's subject and key identifier, served with the real issuing CA first: a chain walked by issuer names reaches the real CA; the verified chain does not", Host: "api.rampart.example", Roots: both,
			Served: []string{"twin-leaf", "legit-int", "twin-int"}, Policy: policy(api(p("legit-int"), backupPin)),
			Expect:      PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, nil, []string{p("legit-int"), backupPin}, chainPins("twin-leaf", "legit-int", "twin-int"), chainPins("twin-leaf", "twin-int", "rogue-root"))},
			Unsupported: nil},
		{Name: "pin-on-unsent-root", Description: "pinned on the root, which the server does not send: the verified chain ends at the root from the trust store", Host: "api.rampart.example", Roots: both, Served: []string{"legit-leaf", "legit-int"}, Policy: policy(api(p("legit-root"), backupPin)),
			Expect: PKIExpect{Accept: true}},
		{Name: "pin-on-intermediate", Description: "pinned on the issuing CA", Host: "api.rampart.example", Roots: both, Served: []string{"legit-leaf", "legit-int"}, Policy: policy(api(p("legit-int"), p("legit-root"))),
			Expect: PKIExpect{Accept: true}},
		{Name: "renewal-on-backup-key", Description: "the certificate renewed on the backup key", Host: "api.rampart.example", Roots: both, Served: []string{"renewed-leaf", "legit-int"}, Policy: std,
			Expect: PKIExpect{Accept: true}},
		{Name: "fresh-key", Description: "a certificate from the real CA on a new key that no pin names", Host: "api.rampart.example", Roots: both, Served: []string{"fresh-leaf", "legit-int"}, Policy: std,
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, nil, []string{leafPin, backupPin}, chainPins("fresh-leaf", "legit-int"), chainPins("fresh-leaf", "legit-int", "legit-root"))}},
		{Name: "certificate-fingerprint-pin", Description: "pinned by the leaf certificate's fingerprint (cert-sha256)", Host: "api.rampart.example", Roots: both, Served: []string{"legit-leaf", "legit-int"}, Policy: policy(api(certs["legit-leaf"].CertPin, backupPin)),
			Expect: PKIExpect{Accept: true}},
		{Name: "untrusted-chain-with-pinned-key", Description: "a self-signed certificate on the pinned key: refused by the platform's validation; a pin never replaces it", Host: "api.rampart.example", Roots: both, Served: []string{"self-signed-pinned-key"}, Policy: std,
			Expect: PKIExpect{Failure: "tls"}},
		{Name: "pin-set-last-day", Description: "the rule expires 2026-06-30, now is 2026-06-30T23:59:59Z: the date is inclusive, the pins hold", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(expiring), Now: lastDay,
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, &expiry, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "pin-set-expired", Description: "the rule expired at 2026-07-01T00:00:00Z: CA validation only, and a report says so", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(expiring), Now: dayAfter,
			Expect: PKIExpect{Accept: true, Report: report("pin-set-expired", "enforce", "api.rampart.example", "api.rampart.example", false, &expiry, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "report-only", Description: "the rogue chain under a report-only rule: allowed, and reported", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(rule{Domain: "api.rampart.example", Mode: "report-only", Pins: []string{leafPin, backupPin}}),
			Expect: PKIExpect{Accept: true, Report: report("pin-mismatch", "report-only", "api.rampart.example", "api.rampart.example", false, nil, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "include-subdomains-on", Description: "a rule for rampart.example with include_subdomains applies to api.rampart.example", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(parent),
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "rampart.example", true, nil, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "include-subdomains-off", Description: "a rule for rampart.example without include_subdomains does not apply to api.rampart.example: not pinned", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(parentOnly),
			Expect: PKIExpect{Accept: true}},
		{Name: "include-subdomains-on-the-name-itself", Description: "a rule with include_subdomains applies to its own name too", Host: "rampart.example", Roots: both, Served: rogueServed, Policy: policy(parent),
			Expect: PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "rampart.example", "rampart.example", true, nil, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "most-specific-rule-wins", Description: "rampart.example (include_subdomains, enforce) and api.rampart.example (report-only): the exact rule applies", Host: "api.rampart.example", Roots: both, Served: rogueServed, Policy: policy(parent, apiRO),
			Expect: PKIExpect{Accept: true, Report: report("pin-mismatch", "report-only", "api.rampart.example", "api.rampart.example", false, nil, []string{leafPin}, chainPins(rogueServed...), rogueValidated)}},
		{Name: "exact-rule-not-for-subdomains", Description: "a rule for api.rampart.example without include_subdomains does not apply to sub.api.rampart.example", Host: "sub.api.rampart.example", Roots: both, Served: rogueServed, Policy: std,
			Expect: PKIExpect{Accept: true}},
		{Name: "host-in-upper-case", Description: "API.Rampart.Example: host names match without regard to case", Host: "API.Rampart.Example", Roots: both, Served: rogueServed, Policy: std,
			Expect:      PKIExpect{Failure: "pin", Report: report("pin-mismatch", "enforce", "api.rampart.example", "api.rampart.example", false, nil, []string{leafPin, backupPin}, chainPins(rogueServed...), rogueValidated)},
			Unsupported: nil},
	}
	for i := range cases {
		if cases[i].Now == 0 {
			cases[i].Now = pkiNow.Unix()
		}
	}
	return &PKIFile{
		Format:       "rampart-pki-vectors/1",
		Description:  "PKI scenarios: for each case, a TLS server on loopback presents served (leaf first, with the leaf's key) for host; the client trusts roots, pins with policy at now (the policy clock; certificates are checked by the platform at the real time), and must reach expect. See README.md.",
		Certificates: certs,
		Cases:        cases,
	}, nil
}

func selfSign(key *ecdsa.PrivateKey, names []string, nb, na time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    nb, NotAfter: na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// twin makes an intermediate under root with the subject and subject key
// identifier of like, and a leaf it issues.
func twin(root, like *pki.CA, names []string, nb, na time.Time) (*x509.Certificate, *pki.Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		RawSubject:            like.Cert.RawSubject,
		SubjectKeyId:          like.Cert.SubjectKeyId,
		NotBefore:             like.Cert.NotBefore,
		NotAfter:              like.Cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	ca := &pki.CA{Cert: cert, Key: key, Chain: []*x509.Certificate{cert, root.Cert}}
	leaf, err := ca.Issue(pki.LeafOptions{DNSNames: names, NotBefore: nb, NotAfter: na})
	if err != nil {
		return nil, nil, err
	}
	return cert, leaf, nil
}
