package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/rampartsec/rampart/internal/safetext"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// Limits on what one report may hold. A real report has a chain of two to
// four certificates and a handful of pins.
const (
	maxReportBody = 64 << 10
	maxChain      = 16
	maxPins       = 64
	maxField      = 1024 // any string field but certificates
	maxCertJSON   = 16 << 10
)

// wireReport is the union of an RFC 7469 §3 report (with Rampart's
// rampart-* extensions) and TrustKit's report (iOS and Android), which
// extends the same fields. Pointers tell a missing field from a zero one.
type wireReport struct {
	DateTime                  *string           `json:"date-time"`
	Hostname                  *string           `json:"hostname"`
	Port                      *int              `json:"port"`
	EffectiveExpirationDate   *string           `json:"effective-expiration-date"`
	IncludeSubdomains         *bool             `json:"include-subdomains"`
	NotedHostname             *string           `json:"noted-hostname"`
	ServedCertificateChain    *[]jsontext.Value `json:"served-certificate-chain"`
	ValidatedCertificateChain *[]jsontext.Value `json:"validated-certificate-chain"`
	KnownPins                 *[]string         `json:"known-pins"`

	RampartMode    string `json:"rampart-mode"`
	RampartReason  string `json:"rampart-reason"`
	RampartVersion string `json:"rampart-library-version"`

	AppBundleID             *string `json:"app-bundle-id"`
	AppVersion              string  `json:"app-version"`
	AppPlatform             string  `json:"app-platform"`
	AppPlatformVersion      string  `json:"app-platform-version"`
	AppVendorID             string  `json:"app-vendor-id"`
	TrustKitVersion         string  `json:"trustkit-version"`
	EnforcePinning          *bool   `json:"enforce-pinning"`
	ValidationResult        *int    `json:"validation-result"`
	KnownPinsExpirationDate *string `json:"known-pins-expiration-date"`
}

// trustKitReasons names TrustKit's TSKTrustEvaluationResult values.
var trustKitReasons = map[int]string{
	1: "pin-mismatch",
	2: "invalid-certificate-chain",
	3: "invalid-parameters",
	4: "user-defined-trust-anchor",
	5: "spki-hash-error",
}

// reportError is a report that cannot be accepted; its text goes to the
// client.
type reportError struct{ msg string }

func (e *reportError) Error() string { return e.msg }

func badReport(format string, args ...any) error {
	return &reportError{fmt.Sprintf(format, args...)}
}

// parseReport validates a report body and extracts what the store keeps.
// It returns the content shared by identical reports and the device
// identifier, if any.
func parseReport(body []byte) (store.ReportContent, string, error) {
	var c store.ReportContent
	if !utf8.Valid(body) {
		return c, "", badReport("the body is not valid UTF-8")
	}
	var w wireReport
	if err := jsonv2.Unmarshal(body, &w); err != nil {
		return c, "", badReport("malformed JSON: %s", jsonErrorText(err))
	}

	trustKit := w.AppBundleID != nil || w.ValidationResult != nil
	var missing []string
	need := func(name string, present bool) {
		if !present {
			missing = append(missing, name)
		}
	}
	need("hostname", w.Hostname != nil)
	need("port", w.Port != nil)
	need("known-pins", w.KnownPins != nil)
	spec := "RFC 7469 §3"
	if trustKit {
		// TrustKit sends a null date-time when it could not format one,
		// and only the validated chain.
		c.Format, spec = "trustkit", "TrustKit's report format"
		need("validated-certificate-chain", w.ValidatedCertificateChain != nil)
		need("validation-result", w.ValidationResult != nil)
		need("app-bundle-id", w.AppBundleID != nil)
	} else {
		c.Format = "rfc7469"
		need("date-time", w.DateTime != nil)
		need("served-certificate-chain", w.ServedCertificateChain != nil)
	}
	if len(missing) > 0 {
		return c, "", badReport("missing required field(s): %s (%s)", strings.Join(missing, ", "), spec)
	}

	for _, d := range []struct {
		name     string
		v        *string
		dateOnly bool
	}{
		{"date-time", w.DateTime, false},
		{"effective-expiration-date", w.EffectiveExpirationDate, false},
		{"known-pins-expiration-date", w.KnownPinsExpirationDate, true},
	} {
		if d.v == nil || *d.v == "" && trustKit {
			continue
		}
		if _, err := time.Parse(time.RFC3339, *d.v); err != nil {
			if _, derr := time.Parse(time.DateOnly, *d.v); !d.dateOnly || derr != nil {
				return c, "", badReport("%s %q: want an RFC 3339 date and time", d.name, truncate(*d.v, 64))
			}
		}
	}
	host := strings.TrimSuffix(strings.ToLower(*w.Hostname), ".")
	if err := checkHostname("hostname", host); err != nil {
		return c, "", err
	}
	c.Hostname = host
	if p := *w.Port; p < 0 || p > 65535 {
		return c, "", badReport("port %d: want 0 to 65535", p)
	}
	c.Port = *w.Port
	c.NotedHostname = host
	if w.NotedHostname != nil && *w.NotedHostname != "" {
		noted := strings.TrimSuffix(strings.ToLower(*w.NotedHostname), ".")
		if err := checkHostname("noted-hostname", noted); err != nil {
			return c, "", err
		}
		c.NotedHostname = noted
	}
	if w.IncludeSubdomains != nil {
		c.IncludeSubdomains = *w.IncludeSubdomains
	}
	if err := checkPins(*w.KnownPins); err != nil {
		return c, "", err
	}

	var served, validated []jsontext.Value
	if w.ServedCertificateChain != nil {
		served = *w.ServedCertificateChain
	}
	if w.ValidatedCertificateChain != nil {
		validated = *w.ValidatedCertificateChain
	}
	chains := [2]struct {
		name  string
		certs []jsontext.Value
	}{{"served-certificate-chain", served}, {"validated-certificate-chain", validated}}
	for _, ch := range chains {
		if len(ch.certs) > maxChain {
			return c, "", badReport("%s has %d certificates; at most %d", ch.name, len(ch.certs), maxChain)
		}
		// Only the first certificate is parsed (below); the others need
		// only be PEM certificates as JSON strings, which is checked
		// without decoding them: they are kept, not used.
		for i, raw := range ch.certs {
			if len(raw) > maxCertJSON || !bytes.HasPrefix(raw, []byte(`"-----BEGIN CERTIFICATE-----`)) {
				return c, "", badReport("%s[%d]: not a PEM certificate", ch.name, i)
			}
		}
	}
	// The unexpected key: the certificate the server presented.
	first := chains[0]
	if len(first.certs) == 0 {
		first = chains[1]
	}
	if len(first.certs) == 0 {
		return c, "", badReport("served-certificate-chain and validated-certificate-chain are both empty: the report names no certificate")
	}
	firstPEM, err := jsontext.AppendUnquote(nil, first.certs[0])
	if err != nil {
		return c, "", badReport("%s[0]: not a JSON string", first.name)
	}
	sc, err := certs.get(firstPEM)
	if err != nil {
		return c, "", badReport("%s[0]: %v", first.name, err)
	}
	c.ServedPin, c.ServedSubject = sc.pin, sc.subject

	if trustKit {
		if *w.AppBundleID == "" {
			return c, "", badReport("app-bundle-id is empty")
		}
		c.AppBundleID = *w.AppBundleID
		c.AppVersion = w.AppVersion
		c.AppPlatform = strings.ToLower(w.AppPlatform)
		if w.EnforcePinning != nil {
			c.Mode = map[bool]string{true: string(pin.Enforce), false: string(pin.ReportOnly)}[*w.EnforcePinning]
		}
		c.Reason = trustKitReasons[*w.ValidationResult]
		if c.Reason == "" {
			return c, "", badReport("validation-result %d: want 1 to 5 (TSKTrustEvaluationResult; 0 is a success, which is not reported)", *w.ValidationResult)
		}
	} else {
		switch pin.Mode(w.RampartMode) {
		case "", pin.Enforce, pin.ReportOnly:
			c.Mode = w.RampartMode
		default:
			return c, "", badReport("rampart-mode %q: want enforce or report-only", w.RampartMode)
		}
		c.Reason = w.RampartReason
		if w.RampartVersion != "" {
			c.AppPlatform = "rampart-go"
			c.AppVersion = w.RampartVersion
		}
	}
	for name, v := range map[string]string{"app-bundle-id": c.AppBundleID, "app-version": c.AppVersion, "app-platform": c.AppPlatform,
		"rampart-reason": c.Reason, "app-vendor-id": w.AppVendorID, "app-platform-version": w.AppPlatformVersion,
		"trustkit-version": w.TrustKitVersion, "rampart-library-version": w.RampartVersion} {
		if len(v) > maxField {
			return c, "", badReport("%s is longer than %d bytes", name, maxField)
		}
		// Control characters (NUL above all) have no place in these
		// fields, and some databases refuse them; format characters
		// (bidi overrides, zero-width characters) and line separators
		// would let a sender make one value display as another.
		if i := strings.IndexFunc(v, isControl); i >= 0 {
			r, _ := utf8.DecodeRuneInString(v[i:])
			return c, "", badReport("%s has a %s (U+%04X) at byte %d", name, controlKind(r), r, i)
		}
	}
	// The digest is of the report as stored: host names normalized.
	w.Hostname, w.NotedHostname = &c.Hostname, &c.NotedHostname

	device := w.AppVendorID
	digest, err := reportDigest(&w, chains[0].certs, chains[1].certs)
	if err != nil {
		return c, "", err
	}
	c.Digest = digest
	c.Body = body
	return c, device, nil
}

// servedCert is what a report's first certificate tells.
type servedCert struct{ pin, subject string }

// certCache remembers the certificates of recent reports: a failure seen
// by many clients (one rogue certificate) arrives as many reports with
// the same certificate, and parsing it is most of a report's cost.
type certCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]servedCert
}

var certs = &certCache{m: make(map[[sha256.Size]byte]servedCert)}

const maxCachedCerts = 4096

func (cc *certCache) get(pemBytes []byte) (servedCert, error) {
	key := sha256.Sum256(pemBytes)
	cc.mu.Lock()
	sc, ok := cc.m[key]
	cc.mu.Unlock()
	if ok {
		return sc, nil
	}
	cert, err := parsePEMCertificate(pemBytes)
	if err != nil {
		return sc, err
	}
	sc = servedCert{pin.FromCertificate(cert).String(), cleanText(cert.Subject.String(), maxField)}
	cc.mu.Lock()
	if len(cc.m) >= maxCachedCerts {
		clear(cc.m) // rare; simpler than LRU and as good for floods
	}
	cc.m[key] = sc
	cc.mu.Unlock()
	return sc, nil
}

func parsePEMCertificate(s []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(s)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, errors.New("not a valid certificate")
	}
	return cert, nil
}

// checkPins accepts RFC 7469 pin directives (pin-sha256="base64") and
// TrustKit's form, which is the same.
func checkPins(pins []string) error {
	if len(pins) > maxPins {
		return badReport("known-pins has %d entries; at most %d", len(pins), maxPins)
	}
	for i, p := range pins {
		v, ok := strings.CutPrefix(p, `pin-sha256="`)
		if !ok || !strings.HasSuffix(v, `"`) {
			return badReport(`known-pins[%d]: want pin-sha256="<base64>"`, i)
		}
		if _, err := pin.Parse("sha256/" + strings.TrimSuffix(v, `"`)); err != nil {
			return badReport("known-pins[%d]: %v", i, err)
		}
	}
	return nil
}

// jsonErrorText turns JSON errors into messages that name the JSON, not
// Go types.
func jsonErrorText(err error) string {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		field := strings.TrimPrefix(string(se.JSONPointer), "/")
		if se.GoType != nil && se.JSONKind != 0 {
			return fmt.Sprintf("field %s: want %s, got %s", field, goKindName(se.GoType.Kind()), jsonKindName(se.JSONKind))
		}
		if se.Err != nil {
			return fmt.Sprintf("field %s: %v", field, se.Err)
		}
		return fmt.Sprintf("field %s: not what a report holds", field)
	}
	var sy *jsontext.SyntacticError
	if errors.As(err, &sy) {
		switch msg := sy.Err.Error(); {
		case errors.Is(sy.Err, io.ErrUnexpectedEOF):
			return "unexpected end of input"
		case strings.Contains(msg, "after top-level value"):
			return fmt.Sprintf("data after the report object (at byte %d)", sy.ByteOffset)
		default:
			return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(msg, "jsontext: "), sy.ByteOffset)
		}
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a JSON string"
	case '0':
		return "a JSON number"
	case 't', 'f':
		return "a JSON boolean"
	case 'n':
		return "null"
	case '{':
		return "a JSON object"
	case '[':
		return "a JSON array"
	}
	return "something else"
}

func goKindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array"
	case reflect.Struct:
		return "an object"
	}
	return k.String()
}

// reportDigest is the aggregation key of a report: a SHA-256 over every
// field but date-time and app-vendor-id (identical reports differ only in
// when they were made and by which device). Strings are hashed decoded,
// so two encodings of the same report ("\/" or "/") aggregate.
func reportDigest(w *wireReport, served, validated []jsontext.Value) (string, error) {
	h := sha256.New()
	var buf [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(b)))
		h.Write(buf[:])
		h.Write(b)
	}
	str := func(p *string) {
		if p == nil {
			field([]byte{0xff}) // absent differs from ""
			return
		}
		field([]byte(*p))
	}
	num := func(p *int) {
		if p == nil {
			field([]byte{0xff})
			return
		}
		field(strconv.AppendInt(nil, int64(*p), 10))
	}
	boolean := func(p *bool) {
		switch {
		case p == nil:
			field([]byte{0xff})
		case *p:
			field([]byte{1})
		default:
			field([]byte{0})
		}
	}
	str(w.Hostname)
	num(w.Port)
	str(w.EffectiveExpirationDate)
	boolean(w.IncludeSubdomains)
	str(w.NotedHostname)
	for _, chain := range [][]jsontext.Value{served, validated} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(chain)))
		h.Write(buf[:])
		for _, raw := range chain {
			if err := hashString(raw, field, h); err != nil {
				return "", badReport("a certificate is not a JSON string")
			}
		}
	}
	if w.KnownPins != nil {
		binary.BigEndian.PutUint64(buf[:], uint64(len(*w.KnownPins)))
		h.Write(buf[:])
		for _, p := range *w.KnownPins {
			field([]byte(p))
		}
	}
	for _, s := range []string{w.RampartMode, w.RampartReason, w.RampartVersion, w.AppVersion, w.AppPlatform, w.AppPlatformVersion, w.TrustKitVersion} {
		field([]byte(s))
	}
	str(w.AppBundleID)
	boolean(w.EnforcePinning)
	num(w.ValidationResult)
	str(w.KnownPinsExpirationDate)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashString writes the decoded content of the JSON string raw to field.
// PEM in JSON usually escapes nothing but line breaks; that case is
// decoded here, without encoding/json and without copying.
func hashString(raw jsontext.Value, field func([]byte), h io.Writer) error {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return errors.New("not a JSON string")
	}
	inner := raw[1 : len(raw)-1]
	n, simple := 0, true
	for i := 0; i < len(inner); i++ {
		switch c := inner[i]; {
		case c == '\\' && i+1 < len(inner) && inner[i+1] == 'n':
			i++
		case c == '\\':
			simple = false
		case c < 0x20:
			return errors.New("control character in a JSON string")
		}
		n++
	}
	if !simple {
		s, err := jsontext.AppendUnquote(nil, raw)
		if err != nil {
			return err
		}
		field(s)
		return nil
	}
	// The same bytes as field(decoded): the length, then the content.
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(n))
	h.Write(l[:])
	for len(inner) > 0 {
		i := bytes.Index(inner, []byte(`\n`))
		if i < 0 {
			h.Write(inner)
			break
		}
		h.Write(inner[:i])
		h.Write([]byte{'\n'})
		inner = inner[i+2:]
	}
	return nil
}

// The control plane's rules for untrusted text are package safetext's,
// under the names its many callers here use.
func isControl(r rune) bool            { return safetext.IsControl(r) }
func controlKind(r rune) string        { return safetext.ControlKind(r) }
func cleanText(s string, n int) string { return safetext.Clean(s, n) }
func truncate(s string, n int) string  { return safetext.Truncate(s, n) }
func checkHostname(field, h string) error {
	if err := safetext.CheckHostname(field, h); err != nil {
		return &reportError{err.Error()}
	}
	return nil
}
