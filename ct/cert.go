package ct

import (
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// A Certificate is what the monitor reads from a logged certificate or
// precertificate: its names, its key and the fields an operator needs to
// recognise it.
//
// It is read from the TBSCertificate by a deliberately lenient walker
// rather than crypto/x509, which refuses certificates (negative serials,
// odd string types, malformed but ignorable extensions) that other
// clients may still accept: a monitor that drops what it cannot parse
// strictly would miss exactly the certificates worth a look.
type Certificate struct {
	// DNSNames are the subject alternative name's dNSName entries, in
	// lower case, and the subject common name when it looks like a host
	// name (clients that still read it).
	DNSNames []string
	// IPAddresses are the subject alternative name's iPAddress entries.
	IPAddresses []netip.Addr
	// CommonName is the subject's common name, if any.
	CommonName string
	// Issuer is the issuer's distinguished name, as crypto/x509 prints it.
	Issuer string
	// Serial is the serial number in lower-case hex, as encoded.
	Serial string
	// NotBefore and NotAfter are the validity period (zero when unreadable).
	NotBefore, NotAfter time.Time
	// SPKI is the DER SubjectPublicKeyInfo: its SHA-256 is the SPKI pin.
	SPKI []byte
	// TBSHash identifies the certificate across its precertificate and
	// final forms: the SHA-256 of the TBSCertificate without the CT poison
	// and SCT list extensions (the hash certspotter calls the TBS hash).
	TBSHash [sha256.Size]byte
	// IssuerKeyHash is, for a precertificate, the SHA-256 of its issuer's
	// key as the log's leaf records it (set by whoever read the entry;
	// see [Entry]): what authenticates the recorded chain's first issuer.
	IssuerKeyHash [sha256.Size]byte

	issuer, subject []byte // DER Names
}

// subjectName prints the subject's distinguished name.
func (c *Certificate) subjectName() string { return nameString(c.subject) }

// ErrCertificate is wrapped by the errors of certificates the walker
// cannot read.
var ErrCertificate = errors.New("ct: unreadable certificate")

var (
	oidSAN        = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidPoison     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidSCTList    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
	oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// ParseCertificate reads a DER certificate; see [Certificate].
func ParseCertificate(der []byte) (*Certificate, error) {
	s := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: not a certificate", ErrCertificate)
	}
	return ParseTBS(tbs)
}

// ParseTBS reads a DER TBSCertificate, as a precertificate entry holds it.
func ParseTBS(der []byte) (*Certificate, error) {
	c, err := parseTBS(der)
	if c != nil {
		c.Issuer = nameString(c.issuer)
	}
	return c, err
}

// parseCert is ParseCertificate (leaf) or ParseTBS (precertificate)
// without formatting the issuer's name, which only matters for the few
// certificates a judge is concerned with: the monitor's fast path.
func parseCert(der []byte, precert bool) (*Certificate, error) {
	if precert {
		return parseTBS(der)
	}
	s := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: not a certificate", ErrCertificate)
	}
	return parseTBS(tbs)
}

func parseTBS(der []byte) (*Certificate, error) {
	s := cryptobyte.String(der)
	var tbs cryptobyte.String
	if !s.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: not a TBSCertificate", ErrCertificate)
	}
	c := &Certificate{}
	body := tbs
	// version [0] EXPLICIT, optional.
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, fmt.Errorf("%w: version", ErrCertificate)
	}
	var serial cryptobyte.String
	var tag cbasn1.Tag
	if !tbs.ReadAnyASN1(&serial, &tag) || tag != cbasn1.INTEGER {
		return nil, fmt.Errorf("%w: serial number", ErrCertificate)
	}
	c.Serial = hex.EncodeToString(serial)
	var issuer, validity, subject, spki cryptobyte.String
	if !tbs.SkipASN1(cbasn1.SEQUENCE) || // signature algorithm
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: issuer, validity, subject or public key", ErrCertificate)
	}
	c.SPKI = spki
	c.issuer, c.subject = issuer, subject
	c.CommonName = commonName(subject)
	c.NotBefore, c.NotAfter = readValidity(validity)
	// issuerUniqueID [1], subjectUniqueID [2], optional.
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) || !tbs.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) || !tbs.SkipOptionalASN1(cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return nil, fmt.Errorf("%w: unique identifiers", ErrCertificate)
	}
	prefix := body[:len(body)-len(tbs)]
	var kept [][]byte
	var sanErr error
	if tbs.PeekASN1Tag(cbasn1.Tag(3).Constructed().ContextSpecific()) {
		var wrapped, exts cryptobyte.String
		if !tbs.ReadASN1(&wrapped, cbasn1.Tag(3).Constructed().ContextSpecific()) || !wrapped.ReadASN1(&exts, cbasn1.SEQUENCE) {
			return nil, fmt.Errorf("%w: extensions", ErrCertificate)
		}
		for !exts.Empty() {
			var raw cryptobyte.String
			if !exts.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
				return nil, fmt.Errorf("%w: extension", ErrCertificate)
			}
			ext := raw
			var seq cryptobyte.String
			var oid asn1.ObjectIdentifier
			if !ext.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&oid) {
				return nil, fmt.Errorf("%w: extension", ErrCertificate)
			}
			if oid.Equal(oidPoison) || oid.Equal(oidSCTList) {
				continue
			}
			kept = append(kept, raw)
			if oid.Equal(oidSAN) {
				seq.SkipOptionalASN1(cbasn1.BOOLEAN) // critical
				var value cryptobyte.String
				if !seq.ReadASN1(&value, cbasn1.OCTET_STRING) {
					sanErr = fmt.Errorf("%w: subject alternative name", ErrCertificate)
					continue
				}
				sanErr = c.readSAN(value)
			}
		}
	}
	c.TBSHash = tbsHash(prefix, kept)
	if cn := strings.ToLower(strings.TrimRight(c.CommonName, ".")); looksLikeHost(cn) && !slices.Contains(c.DNSNames, cn) {
		c.DNSNames = append(c.DNSNames, cn)
	}
	if sanErr != nil {
		return c, sanErr
	}
	return c, nil
}

// readSAN reads the GeneralNames of a subject alternative name extension:
// dNSName [2] and iPAddress [7].
func (c *Certificate) readSAN(value cryptobyte.String) error {
	var names cryptobyte.String
	if !value.ReadASN1(&names, cbasn1.SEQUENCE) {
		return fmt.Errorf("%w: subject alternative name", ErrCertificate)
	}
	for !names.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&v, &tag) {
			return fmt.Errorf("%w: subject alternative name entry", ErrCertificate)
		}
		switch tag {
		case cbasn1.Tag(2).ContextSpecific():
			n := strings.ToLower(strings.TrimRight(string(v), "."))
			if n != "" && !slices.Contains(c.DNSNames, n) {
				c.DNSNames = append(c.DNSNames, n)
			}
		case cbasn1.Tag(7).ContextSpecific():
			if a, ok := netip.AddrFromSlice(v); ok {
				c.IPAddresses = append(c.IPAddresses, a.Unmap())
			}
		}
	}
	return nil
}

// tbsHash is the SHA-256 of a TBSCertificate rebuilt from its fields
// before the extensions and the extensions kept.
func tbsHash(prefix []byte, exts [][]byte) [sha256.Size]byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(prefix)
		if len(exts) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range exts {
						b.AddBytes(e)
					}
				})
			})
		}
	})
	out, err := b.Bytes()
	if err != nil { // only for lengths beyond what a parsed input can have
		return sha256.Sum256(prefix)
	}
	return sha256.Sum256(out)
}

// readValidity reads the validity period; a time it cannot read, or
// outside years 1 to 9999 once in UTC (a GeneralizedTime with an offset
// can reach year 10000), reads as zero: what is kept must be writable.
func readValidity(v cryptobyte.String) (notBefore, notAfter time.Time) {
	sane := func(t time.Time) time.Time {
		if t = t.UTC(); t.Year() < 1 || t.Year() > 9999 {
			return time.Time{}
		}
		return t
	}
	read := func() time.Time {
		var t time.Time
		switch {
		case v.PeekASN1Tag(cbasn1.UTCTime):
			if v.ReadASN1UTCTime(&t) {
				return sane(t)
			}
		case v.PeekASN1Tag(cbasn1.GeneralizedTime):
			if v.ReadASN1GeneralizedTime(&t) {
				return sane(t)
			}
		}
		var skip cryptobyte.String
		var tag cbasn1.Tag
		v.ReadAnyASN1(&skip, &tag)
		return time.Time{}
	}
	notBefore = read()
	notAfter = read()
	return notBefore, notAfter
}

// nameString prints a DER Name as crypto/x509 does, or in hex when it does
// not decode.
func nameString(der []byte) string {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) > 0 {
		return "DER:" + hex.EncodeToString(der)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n.String()
}

// commonName is the common name of a DER Name, read leniently (any
// string type, its bytes as they are, BMPString decoded); of several, the
// last, as crypto/x509 takes it.
func commonName(der []byte) string {
	s := cryptobyte.String(der)
	var rdns cryptobyte.String
	if !s.ReadASN1(&rdns, cbasn1.SEQUENCE) {
		return ""
	}
	cn := ""
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return cn
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var oid asn1.ObjectIdentifier
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) {
				return cn
			}
			if !oid.Equal(oidCommonName) {
				continue
			}
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !atv.ReadAnyASN1(&v, &tag) {
				return cn
			}
			if tag == cbasn1.Tag(30) { // BMPString: UTF-16BE
				u := make([]uint16, 0, len(v)/2)
				for i := 0; i+1 < len(v); i += 2 {
					u = append(u, uint16(v[i])<<8|uint16(v[i+1]))
				}
				cn = string(utf16.Decode(u))
				continue
			}
			cn = string(v)
		}
	}
	return cn
}

// looksLikeHost reports whether a common name is a DNS name (with an
// optional leading wildcard label), not a person's or an organisation's.
func looksLikeHost(s string) bool {
	if s == "" || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for i, label := range strings.Split(s, ".") {
		if label == "*" && i == 0 {
			continue
		}
		if label == "" || len(label) > 63 {
			return false
		}
		for j := 0; j < len(label); j++ {
			b := label[j]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}
