package mtls

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxLineage is how long after a certificate was first issued
// ([CA.Issue], rampart ca issue) a [RenewHandler] keeps renewing it and its
// renewals, unless [RenewPolicy.MaxLineage] says otherwise: whoever stole
// a workload's key can keep its identity this long (plus one certificate
// lifetime), and no longer. The workload is then issued a new certificate
// by whoever holds the CA, as at first.
const DefaultMaxLineage = 90 * 24 * time.Hour

// Lineage is where a certificate's renewals began: the certificate that
// [CA.Issue] made, of which it is a renewal (or which it is).
type Lineage struct {
	// Since is when the first certificate was issued.
	Since time.Time
	// TTL is the lifetime it was issued with, which renewals keep (up to
	// the renewal endpoint's maximum).
	TTL time.Duration
}

// LineageOf returns the lineage a certificate of this package's CA
// carries; ok is false for other certificates (those of other issuers, and
// of versions of rampart that did not record it). It does not verify the
// certificate: trust the answer only for a certificate verified against
// the CA that made it.
//
// The lineage is recorded in the certificate policies extension (RFC 5280
// §4.2.1.4), non-critical, as the policy anyPolicy with a user notice
// whose explicit text reads, for example,
//
//	rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 86400s
//
// which any X.509 verifier accepts and openssl x509 -text shows; a custom
// extension would need an object identifier Rampart does not have.
func LineageOf(cert *x509.Certificate) (l Lineage, ok bool) {
	if cert == nil {
		return Lineage{}, false
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidCertificatePolicies) {
			l, err := parseLineage(e.Value)
			return l, err == nil
		}
	}
	return Lineage{}, false
}

// hasPolicies reports whether cert has a certificate policies extension.
func hasPolicies(cert *x509.Certificate) bool {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidCertificatePolicies) {
			return true
		}
	}
	return false
}

var (
	oidCertificatePolicies = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidAnyPolicy           = asn1.ObjectIdentifier{2, 5, 29, 32, 0}
	oidUserNotice          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 2, 2} // id-qt-unotice
)

// The certificate policies extension as Issue writes it (RFC 5280
// §4.2.1.4): one PolicyInformation, anyPolicy, with one qualifier, a
// UserNotice holding only an explicitText (UTF8String).
type policyInformation struct {
	Policy     asn1.ObjectIdentifier
	Qualifiers []policyQualifier
}

type policyQualifier struct {
	ID     asn1.ObjectIdentifier
	Notice userNotice
}

type userNotice struct {
	Text string `asn1:"utf8"`
}

const (
	lineagePrefix = "rampart lineage: first issued "
	lineageMiddle = ", lifetime "
)

func (l Lineage) text() string {
	return lineagePrefix + l.Since.UTC().Format(time.RFC3339) + lineageMiddle + strconv.FormatInt(int64(l.TTL/time.Second), 10) + "s"
}

// extension is l as a certificate extension; its lifetime is counted in
// whole seconds, at least one.
func (l Lineage) extension() (pkix.Extension, error) {
	l.TTL = max(l.TTL.Truncate(time.Second), time.Second)
	if l.TTL > MaxTTL {
		return pkix.Extension{}, errorf("lineage lifetime %v: at most %v", l.TTL, MaxTTL)
	}
	if y := l.Since.UTC().Year(); y < 1 || y > 9999 {
		return pkix.Extension{}, errorf("lineage time %v out of range", l.Since)
	}
	v, err := asn1.Marshal([]policyInformation{{
		Policy:     oidAnyPolicy,
		Qualifiers: []policyQualifier{{ID: oidUserNotice, Notice: userNotice{Text: l.text()}}},
	}})
	if err != nil {
		return pkix.Extension{}, errorf("lineage: %w", err)
	}
	return pkix.Extension{Id: oidCertificatePolicies, Value: v}, nil
}

var errNoLineage = newError("no lineage in the certificate policies")

// parseLineage reads the value of a certificate policies extension as
// extension writes it, exactly: any other encoding is refused.
func parseLineage(der []byte) (Lineage, error) {
	var pis []policyInformation
	rest, err := asn1.Unmarshal(der, &pis)
	if err != nil || len(rest) != 0 || len(pis) != 1 || !pis[0].Policy.Equal(oidAnyPolicy) ||
		len(pis[0].Qualifiers) != 1 || !pis[0].Qualifiers[0].ID.Equal(oidUserNotice) {
		return Lineage{}, errNoLineage
	}
	text := pis[0].Qualifiers[0].Notice.Text
	s, ok := strings.CutPrefix(text, lineagePrefix)
	if !ok {
		return Lineage{}, errNoLineage
	}
	since, ttl, ok := strings.Cut(s, lineageMiddle)
	if !ok {
		return Lineage{}, errNoLineage
	}
	t, err := time.Parse(time.RFC3339, since)
	if err != nil {
		return Lineage{}, errNoLineage
	}
	secs, err := strconv.ParseInt(strings.TrimSuffix(ttl, "s"), 10, 64)
	if err != nil || secs <= 0 || secs > int64(MaxTTL/time.Second) {
		return Lineage{}, errNoLineage
	}
	l := Lineage{Since: t.UTC(), TTL: time.Duration(secs) * time.Second}
	// One spelling only: what extension writes.
	if again, err := l.extension(); err != nil || !bytes.Equal(again.Value, der) {
		return Lineage{}, errNoLineage
	}
	return l, nil
}
