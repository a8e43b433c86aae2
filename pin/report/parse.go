package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/rampartsec/rampart/internal/util/safetext"
	"github.com/rampartsec/rampart/pin"
)

// Format is the dialect of a report.
type Format string

const (
	// RFC7469 is the report of RFC 7469 §3, with or without Rampart's
	// rampart-* members: what [New] makes.
	RFC7469 Format = "rfc7469"
	// TrustKit is the report TrustKit sends (iOS and Android): RFC 7469's
	// members, date-time and served-certificate-chain optional, and its
	// own.
	TrustKit Format = "trustkit"
)

// MaxSize is the largest report [Parse] accepts, in bytes (64 KiB): far
// above a real report, which has a chain of two to four certificates,
// twice, and a handful of pins. A collector stops reading a body there.
const MaxSize = 64 << 10

// MaxText is the longest text member [Parse] accepts, in bytes: any
// string member but dates, pins and certificates.
const MaxText = 1024

// Limits on what one report may hold.
const (
	maxChain = 16       // certificates in each chain
	maxPins  = 64       // entries of known-pins, and of rampart-known-cert-pins
	maxCert  = 16 << 10 // bytes of one PEM certificate
)

// Error is a report [Parse] refuses. Msg names the member at fault in the
// terms of the JSON the sender wrote, and is meant to be returned to the
// sender; Error adds the package prefix.
type Error struct {
	// Field is the member at fault, as a path ("port", "known-pins[2]"):
	// the first missing one when required members are missing; "" when
	// the body as a whole is at fault (too large, not UTF-8, not JSON).
	Field string
	// Msg says what is wrong, naming Field.
	Msg string
	// Err is the cause, when there is one: the JSON decoder's error, or
	// the [*pin.ParseError] of a pin.
	Err error
}

func (e *Error) Error() string { return "pin/report: " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

func refuse(field string, cause error, format string, args ...any) *Error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// Parse reads a report in either [Format]. It returns the report with its
// host names normalized (lowercase, without final dots; noted-hostname
// is hostname when missing or empty) and every other member as sent. A
// report is TrustKit's when it has app-bundle-id or validation-result.
//
// Parse refuses, with an [*Error], in this order:
//
//   - a body over [MaxSize], not UTF-8, or not exactly one JSON object; a
//     member given twice, or with the wrong JSON type;
//   - a report without hostname, port and known-pins, and without
//     date-time and served-certificate-chain (RFC 7469) or
//     validated-certificate-chain, validation-result and app-bundle-id
//     (TrustKit); null counts as missing;
//   - a date that is not RFC 3339 (known-pins-expiration-date may be a
//     date; TrustKit may send empty dates);
//   - a host name that is not one (lowercase letters, digits, - . _ * : [ ],
//     at most 253 bytes, after normalizing), a port outside 0 to 65535;
//   - more than 64 known-pins or rampart-known-cert-pins, or one that is
//     not pin-sha256="<base64 of 32 bytes>", or a certificate pin as
//     [pin.Pin.String] writes it;
//   - a chain of more than 16 certificates, or an entry that is not a PEM
//     certificate of at most 16 KiB; no certificate at all;
//   - TrustKit's empty app-bundle-id, or a validation-result other than 1
//     to 5 (0 is a success, which TrustKit does not report); a
//     rampart-mode other than enforce or report-only;
//   - any other string member over [MaxText] bytes, or holding a control
//     or format character (a NUL, a bidi override): a collector shows
//     these values, and they must not display as something else.
//
// Certificates are checked for their PEM framing only; [Report.Presented]
// gives the one a collector parses to learn the unexpected key.
func Parse(body []byte) (*Report, Format, error) {
	if len(body) > MaxSize {
		return nil, "", refuse("", nil, "the report is larger than %d KiB", MaxSize>>10)
	}
	if !utf8.Valid(body) {
		return nil, "", refuse("", nil, "the body is not valid UTF-8")
	}
	var w wire
	if err := jsonv2.Unmarshal(body, &w); err != nil {
		field, msg := jsonError(body, err)
		return nil, "", refuse(field, err, "malformed JSON: %s", msg)
	}
	format := RFC7469
	if w.AppBundleID != nil || w.ValidationResult != nil {
		format = TrustKit
	}
	if err := w.checkPresent(format); err != nil {
		return nil, "", err
	}
	r := w.report()
	if err := r.check(format); err != nil {
		return nil, "", err
	}
	return r, format, nil
}

// wire is a Report as Parse decodes it. The members that a format
// requires, and whose zero value is valid, are pointers here, shadowing
// Report's, so that a missing member (or null) is told from a zero one; a
// test checks that each has its Report field's name and type. The slices
// need no shadow: a missing member or null leaves them nil, [] does not.
type wire struct {
	Report           `json:",inline"`
	DateTime         *string `json:"date-time"`
	Hostname         *string `json:"hostname"`
	Port             *int    `json:"port"`
	AppBundleID      *string `json:"app-bundle-id"`
	ValidationResult *int    `json:"validation-result"`
}

func (w *wire) checkPresent(format Format) error {
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
	if format == TrustKit {
		// TrustKit sends a null date-time when it could not format one,
		// and only the validated chain.
		spec = "TrustKit's report format"
		need("validated-certificate-chain", w.ValidatedCertificateChain != nil)
		need("validation-result", w.ValidationResult != nil)
		need("app-bundle-id", w.AppBundleID != nil)
	} else {
		need("date-time", w.DateTime != nil)
		need("served-certificate-chain", w.ServedCertificateChain != nil)
	}
	if len(missing) > 0 {
		return refuse(missing[0], nil, "missing required field(s): %s (%s)", strings.Join(missing, ", "), spec)
	}
	return nil
}

// report returns the decoded report, its shadowed members filled in.
func (w *wire) report() *Report {
	r := &w.Report
	deref := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	deref(&r.DateTime, w.DateTime)
	deref(&r.Hostname, w.Hostname)
	deref(&r.AppBundleID, w.AppBundleID)
	if w.Port != nil {
		r.Port = *w.Port
	}
	if w.ValidationResult != nil {
		r.ValidationResult = *w.ValidationResult
	}
	return r
}

// check validates a decoded report and normalizes its host names, in the
// order Parse documents.
func (r *Report) check(format Format) error {
	trustKit := format == TrustKit
	for _, step := range []func(trustKit bool) error{r.checkDates, r.checkHosts, r.checkPins, r.checkChains, r.checkMembers} {
		if err := step(trustKit); err != nil {
			return err
		}
	}
	return nil
}

func (r *Report) checkDates(trustKit bool) error {
	for _, d := range []struct {
		name     string
		v        *string
		dateOnly bool
	}{
		{"date-time", &r.DateTime, false},
		{"effective-expiration-date", r.EffectiveExpirationDate, false},
		{"known-pins-expiration-date", r.KnownPinsExpirationDate, true},
	} {
		if d.v == nil || *d.v == "" && trustKit {
			continue
		}
		if _, err := time.Parse(time.RFC3339, *d.v); err != nil {
			if _, derr := time.Parse(time.DateOnly, *d.v); !d.dateOnly || derr != nil {
				return refuse(d.name, err, "%s %q: want an RFC 3339 date and time", d.name, safetext.Truncate(*d.v, 64))
			}
		}
	}
	return nil
}

func (r *Report) checkHosts(bool) error {
	r.Hostname = normalizeHost(r.Hostname)
	if err := safetext.CheckHostname("hostname", r.Hostname); err != nil {
		return refuse("hostname", nil, "%s", err)
	}
	if r.Port < 0 || r.Port > 65535 {
		return refuse("port", nil, "port %d: want 0 to 65535", r.Port)
	}
	if r.NotedHostname == "" {
		r.NotedHostname = r.Hostname
		return nil
	}
	r.NotedHostname = normalizeHost(r.NotedHostname)
	if err := safetext.CheckHostname("noted-hostname", r.NotedHostname); err != nil {
		return refuse("noted-hostname", nil, "%s", err)
	}
	return nil
}

func (r *Report) checkPins(bool) error {
	if err := checkSPKIPins(r.KnownPins); err != nil {
		return err
	}
	if err := checkCertPins(r.KnownCertPins); err != nil {
		return err
	}
	if len(r.KnownCertPins) == 0 {
		r.KnownCertPins = nil // [] and no member are the same
	}
	return nil
}

func (r *Report) checkChains(bool) error {
	for _, ch := range []struct {
		name  string
		certs []string
	}{{"served-certificate-chain", r.ServedCertificateChain}, {"validated-certificate-chain", r.ValidatedCertificateChain}} {
		if len(ch.certs) > maxChain {
			return refuse(ch.name, nil, "%s has %d certificates; at most %d", ch.name, len(ch.certs), maxChain)
		}
		for i, c := range ch.certs {
			if len(c) > maxCert || !strings.HasPrefix(c, "-----BEGIN CERTIFICATE-----") {
				field := fmt.Sprintf("%s[%d]", ch.name, i)
				return refuse(field, nil, "%s: not a PEM certificate", field)
			}
		}
	}
	if _, c := r.Presented(); c == "" {
		return refuse("served-certificate-chain", nil, "served-certificate-chain and validated-certificate-chain are both empty: the report names no certificate")
	}
	return nil
}

// checkMembers checks the members that are neither dates, hosts, pins
// nor certificates.
func (r *Report) checkMembers(trustKit bool) error {
	if trustKit {
		if r.AppBundleID == "" {
			return refuse("app-bundle-id", nil, "app-bundle-id is empty")
		}
		if trustKitReasons[r.ValidationResult] == "" {
			return refuse("validation-result", nil, "validation-result %d: want 1 to 5 (TSKTrustEvaluationResult; 0 is a success, which is not reported)", r.ValidationResult)
		}
	}
	switch pin.Mode(r.Mode) {
	case "", pin.Enforce, pin.ReportOnly:
	default:
		return refuse("rampart-mode", nil, "rampart-mode %q: want enforce or report-only", safetext.Truncate(r.Mode, 64))
	}
	for _, t := range []struct{ name, v string }{
		{"app-bundle-id", r.AppBundleID}, {"app-version", r.AppVersion}, {"app-platform", r.AppPlatform},
		{"app-platform-version", r.AppPlatformVersion}, {"app-vendor-id", r.AppVendorID},
		{"trustkit-version", r.TrustKitVersion}, {"rampart-reason", r.Reason}, {"rampart-library-version", r.LibraryVersion},
	} {
		if len(t.v) > MaxText {
			return refuse(t.name, nil, "%s is longer than %d bytes", t.name, MaxText)
		}
		// Control characters (NUL above all) have no place in these
		// fields, and some databases refuse them; format characters
		// (bidi overrides, zero-width characters) and line separators
		// would let a sender make one value display as another.
		if i := strings.IndexFunc(t.v, safetext.IsControl); i >= 0 {
			c, _ := utf8.DecodeRuneInString(t.v[i:])
			return refuse(t.name, nil, "%s has a %s (U+%04X) at byte %d", t.name, safetext.ControlKind(c), c, i)
		}
	}
	return nil
}

// normalizeHost lowercases h and removes its final dots, once and for
// all: a report read back from what Parse returned reads the same.
func normalizeHost(h string) string { return strings.TrimRight(strings.ToLower(h), ".") }

// checkSPKIPins accepts RFC 7469 pin directives (pin-sha256="base64") and
// TrustKit's form, which is the same.
func checkSPKIPins(pins []string) error {
	if len(pins) > maxPins {
		return refuse("known-pins", nil, "known-pins has %d entries; at most %d", len(pins), maxPins)
	}
	for i, p := range pins {
		field := fmt.Sprintf("known-pins[%d]", i)
		v, ok := strings.CutPrefix(p, `pin-sha256="`)
		if !ok || !strings.HasSuffix(v, `"`) {
			return refuse(field, nil, `%s: want pin-sha256="<base64>"`, field)
		}
		if _, err := pin.Parse("sha256/" + strings.TrimSuffix(v, `"`)); err != nil {
			return refuse(field, err, "%s: %v", field, err)
		}
	}
	return nil
}

// checkCertPins accepts certificate pins in the one form New writes them.
func checkCertPins(pins []string) error {
	const name = "rampart-known-cert-pins"
	if len(pins) > maxPins {
		return refuse(name, nil, "%s has %d entries; at most %d", name, len(pins), maxPins)
	}
	for i, s := range pins {
		field := fmt.Sprintf("%s[%d]", name, i)
		p, err := pin.Parse(s)
		if err != nil {
			return refuse(field, err, "%s: %v", field, err)
		}
		if p.Kind() != pin.Cert || p.String() != s {
			return refuse(field, nil, "%s %q: want cert-sha256: and 64 lowercase hex digits", field, safetext.Truncate(s, 100))
		}
	}
	return nil
}

// trustKitReasons names TrustKit's TSKTrustEvaluationResult values.
var trustKitReasons = map[int]string{
	1: "pin-mismatch",
	2: "invalid-certificate-chain",
	3: "invalid-parameters",
	4: "user-defined-trust-anchor",
	5: "spki-hash-error",
}

// isTrustKit tells the format of a report as Parse returns it.
func (r *Report) isTrustKit() bool { return r.AppBundleID != "" || r.ValidationResult != 0 }

// Outcome returns the mode the client applied the rule in and why
// validation failed, in either format: rampart-mode and rampart-reason,
// or TrustKit's enforce-pinning and validation-result (1 is
// "pin-mismatch"; 2 to 5 are "invalid-certificate-chain",
// "invalid-parameters", "user-defined-trust-anchor" and
// "spki-hash-error"). Either is empty when the report does not say.
func (r *Report) Outcome() (mode pin.Mode, reason string) {
	if !r.isTrustKit() {
		return pin.Mode(r.Mode), r.Reason
	}
	if r.EnforcePinning != nil {
		mode = pin.ReportOnly
		if *r.EnforcePinning {
			mode = pin.Enforce
		}
	}
	return mode, trustKitReasons[r.ValidationResult]
}

// Presented returns the certificate the server presented, whose key the
// client did not expect, as the report holds it (PEM): the first of the
// served chain, or of the validated chain when the served one is empty
// (TrustKit sends only that one). member names where it is
// ("served-certificate-chain[0]"), for messages. cert is "" when both
// chains are empty, which Parse refuses.
func (r *Report) Presented() (member, cert string) {
	switch {
	case len(r.ServedCertificateChain) > 0:
		return "served-certificate-chain[0]", r.ServedCertificateChain[0]
	case len(r.ValidatedCertificateChain) > 0:
		return "validated-certificate-chain[0]", r.ValidatedCertificateChain[0]
	}
	return "", ""
}

// jsonError turns a JSON error into the member at fault and a message
// that names the JSON, not Go types.
func jsonError(body []byte, err error) (field, msg string) {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		ptr := strings.TrimPrefix(string(se.JSONPointer), "/")
		field = pointerField(se.JSONPointer)
		switch {
		case se.GoType != nil && se.JSONKind != 0:
			return field, fmt.Sprintf("field %s: want %s, got %s", ptr, goKindName(se.GoType.Kind()), jsonKindName(se.JSONKind))
		case se.Err != nil:
			return field, fmt.Sprintf("field %s: %v", ptr, se.Err)
		}
		return field, fmt.Sprintf("field %s: not what a report holds", ptr)
	}
	var sy *jsontext.SyntacticError
	if errors.As(err, &sy) {
		field = pointerField(sy.JSONPointer)
		switch {
		case errors.Is(sy.Err, io.ErrUnexpectedEOF):
			return "", "unexpected end of input"
		case oneValue(body):
			// The object is whole: what follows it is the fault.
			return "", fmt.Sprintf("data after the report object (at byte %d)", sy.ByteOffset)
		}
		return field, fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(sy.Err.Error(), "jsontext: "), sy.ByteOffset)
	}
	return "", strings.TrimPrefix(err.Error(), "json: ")
}

// oneValue reports whether body starts with one valid JSON value.
func oneValue(body []byte) bool {
	return jsontext.NewDecoder(bytes.NewReader(body)).SkipValue() == nil
}

// pointerField writes a JSON pointer as a member path: /known-pins/2 is
// known-pins[2].
func pointerField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
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
