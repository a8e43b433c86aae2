package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

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
)

// wireReport is the union of an RFC 7469 §3 report (with Rampart's
// rampart-* extensions) and TrustKit's report (iOS and Android), which
// extends the same fields. Pointers tell a missing field from a zero one.
type wireReport struct {
	DateTime                  *string   `json:"date-time"`
	Hostname                  *string   `json:"hostname"`
	Port                      *int      `json:"port"`
	EffectiveExpirationDate   *string   `json:"effective-expiration-date"`
	IncludeSubdomains         *bool     `json:"include-subdomains"`
	NotedHostname             *string   `json:"noted-hostname"`
	ServedCertificateChain    *[]string `json:"served-certificate-chain"`
	ValidatedCertificateChain *[]string `json:"validated-certificate-chain"`
	KnownPins                 *[]string `json:"known-pins"`

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
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return c, "", badReport("malformed JSON: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, "", badReport("malformed JSON: data after the report object")
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

	if !trustKit && *w.DateTime != "" {
		if _, err := time.Parse(time.RFC3339, *w.DateTime); err != nil {
			return c, "", badReport("date-time %q: want an RFC 3339 date and time", truncate(*w.DateTime, 64))
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

	var served []string
	if w.ServedCertificateChain != nil {
		served = *w.ServedCertificateChain
	}
	var validated []string
	if w.ValidatedCertificateChain != nil {
		validated = *w.ValidatedCertificateChain
	}
	for name, chain := range map[string][]string{"served-certificate-chain": served, "validated-certificate-chain": validated} {
		if len(chain) > maxChain {
			return c, "", badReport("%s has %d certificates; at most %d", name, len(chain), maxChain)
		}
	}
	// The unexpected key: the certificate the server presented.
	first, firstName := served, "served-certificate-chain"
	if len(first) == 0 {
		first, firstName = validated, "validated-certificate-chain"
	}
	if len(first) == 0 {
		return c, "", badReport("served-certificate-chain and validated-certificate-chain are both empty: the report names no certificate")
	}
	cert, err := parsePEMCertificate(first[0])
	if err != nil {
		return c, "", badReport("%s[0]: %v", firstName, err)
	}
	c.ServedPin = pin.FromCertificate(cert).String()
	c.ServedSubject = truncate(cert.Subject.String(), maxField)
	// The other entries need only be PEM certificates; parsing every one
	// would cost more than the report is worth.
	for name, chain := range map[string][]string{"served-certificate-chain": served, "validated-certificate-chain": validated} {
		for i, s := range chain {
			if b, rest := pem.Decode([]byte(s)); b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
				return c, "", badReport("%s[%d]: not one PEM certificate", name, i)
			}
		}
	}

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
		"rampart-reason": c.Reason, "app-vendor-id": w.AppVendorID, "app-platform-version": w.AppPlatformVersion, "trustkit-version": w.TrustKitVersion} {
		if len(v) > maxField {
			return c, "", badReport("%s is longer than %d bytes", name, maxField)
		}
	}

	// Identical reports differ only in when they were made and by which
	// device; the digest leaves those out.
	device := w.AppVendorID
	w.DateTime, w.AppVendorID = nil, ""
	canon, err := json.Marshal(w)
	if err != nil {
		return c, "", fmt.Errorf("server: canonical report: %w", err)
	}
	sum := sha256.Sum256(canon)
	c.Digest = hex.EncodeToString(sum[:])
	c.Body = body
	return c, device, nil
}

func parsePEMCertificate(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
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

func checkHostname(field, h string) error {
	if h == "" || len(h) > 253 {
		return badReport("%s: want a host name of 1 to 253 characters", field)
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':' || r == '[' || r == ']' || r == '_' || r == '*') {
			return badReport("%s %q: not a host name", field, h)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// jsonErrorText turns encoding/json errors into messages that name the
// JSON, not Go types.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s: want %s, got a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "ptr":
		return "a value"
	}
	return goKind
}
