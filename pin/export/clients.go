package export

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/rampartsec/rampart/pin"
)

const trustKitAndroidHint = `TrustKit-Android can: add <trustkit-config enforcePinning="false"> with a <report-uri> to the domain-config`

// android renders a complete res/xml/network_security_config.xml.
func (x *exporter) android() ([]byte, error) {
	var exempt []pin.Domain
	rules, err := x.enforcedOnly(trustKitAndroidHint, &exempt)
	if err != nil {
		return nil, err
	}
	for _, d := range rules {
		if !d.Expires.IsZero() {
			x.warnf("domain %s: Android reads the expiration date as midnight in the device's time zone, so devices east of UTC stop pinning up to 14 hours before the end of %s UTC, and devices west of it up to 12 hours after", d.Name, d.Expires.Format(time.DateOnly))
		}
	}
	for _, d := range rules {
		if err := x.spkiOnly(d); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	fmt.Fprintf(&b, "<!-- %s -->\n", x.header())
	b.WriteString("<!-- Expiration dates are the day after the policy's inclusive date: Android stops\n")
	b.WriteString("     pinning at midnight, in the device's time zone, at the start of the date it is given. -->\n")
	b.WriteString("<network-security-config>\n")
	for _, d := range rules {
		b.WriteString("    <domain-config>\n")
		fmt.Fprintf(&b, "        <domain includeSubdomains=\"%t\">%s</domain>\n", d.IncludeSubdomains, escape(d.Name))
		if d.Expires.IsZero() {
			b.WriteString("        <pin-set>\n")
		} else {
			fmt.Fprintf(&b, "        <pin-set expiration=\"%s\">\n", startOfDayAfter(d))
		}
		for _, p := range d.Pins {
			fmt.Fprintf(&b, "            <pin digest=\"SHA-256\">%s</pin>\n", p.Base64())
		}
		b.WriteString("        </pin-set>\n")
		b.WriteString("    </domain-config>\n")
	}
	for _, d := range exempt {
		b.WriteString("    <!-- report-only in the policy: not pinned on Android -->\n")
		b.WriteString("    <domain-config>\n")
		fmt.Fprintf(&b, "        <domain includeSubdomains=\"%t\">%s</domain>\n", d.IncludeSubdomains, escape(d.Name))
		b.WriteString("    </domain-config>\n")
	}
	b.WriteString("</network-security-config>\n")
	return b.Bytes(), nil
}

// okhttp renders Kotlin for OkHttp's CertificatePinner.
func (x *exporter) okhttp() ([]byte, error) {
	rules, err := x.enforcedOnly("", nil)
	if err != nil {
		return nil, err
	}
	for _, d := range rules {
		if err := x.spkiOnly(d); err != nil {
			return nil, err
		}
	}
	x.noExpiry(rules)
	x.unionWarnings(rules, "OkHttp")
	deep := false
	type entry struct {
		pattern string
		pins    []pin.Pin
	}
	var entries []entry
	for _, d := range rules {
		switch {
		case !d.IncludeSubdomains:
			entries = append(entries, entry{d.Name, d.Pins})
		case x.opts.OkHTTP3:
			entries = append(entries, entry{d.Name, d.Pins}, entry{"*." + d.Name, d.Pins})
			x.warnf("domain %s: OkHttp 3 patterns pin %s and one level of subdomains (a.%s) only; deeper names such as b.a.%s are NOT pinned", d.Name, d.Name, d.Name, d.Name)
		default:
			entries = append(entries, entry{"**." + d.Name, d.Pins})
			deep = true
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "// %s\n", x.header())
	switch {
	case deep:
		b.WriteString("// Needs OkHttp 4.3.0 or later: OkHttp 3 accepts \"**.\" patterns and never matches them,\n")
		b.WriteString("// leaving those hosts unpinned. Export with --okhttp3 for OkHttp 3 patterns.\n")
	case x.opts.OkHTTP3:
		b.WriteString("// OkHttp 3 compatible patterns (exact names and \"*.\", which covers one level of subdomains).\n")
	default:
		b.WriteString("// Works with OkHttp 3 and later.\n")
	}
	b.WriteString("// OkHttp has no report-only mode and no pin expiry.\n\n")
	b.WriteString("import okhttp3.CertificatePinner\n\n")
	b.WriteString("val certificatePinner: CertificatePinner = CertificatePinner.Builder()\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "    .add(\n        %s,\n", swiftString(e.pattern))
		for _, p := range e.pins {
			fmt.Fprintf(&b, "        %s,\n", swiftString(p.String()))
		}
		b.WriteString("    )\n")
	}
	b.WriteString("    .build()\n")
	return b.Bytes(), nil
}

// unionWarnings warns about overlapping rules on platforms that accept
// the pins of every matching pattern (OkHttp).
func (x *exporter) unionWarnings(rules []pin.Domain, platform string) {
	for _, d := range rules {
		for _, parent := range rules {
			if parent.IncludeSubdomains && parent.Name != d.Name && strings.HasSuffix(d.Name, "."+parent.Name) {
				x.warnf("domain %s: %s also accepts the pins of %s for it (it checks every matching pattern), where the policy uses only the most specific rule", d.Name, platform, parent.Name)
			}
		}
	}
}

// one returns the single rule a one-host format exports.
func (x *exporter) one() (pin.Domain, error) {
	if len(x.rules) != 1 {
		return pin.Domain{}, x.errorf("", "%s pins one host and the policy has %d rules: choose one with --domain", x.format, len(x.rules))
	}
	d := x.rules[0]
	return d, x.spkiOnly(d)
}

// curl renders the --pinnedpubkey value.
func (x *exporter) curl() ([]byte, error) {
	d, err := x.one()
	if err != nil {
		return nil, err
	}
	x.warnf("curl checks only the server's leaf key: a pin of an intermediate or root key never matches there")
	for _, p := range d.Pins {
		if d.Role(p) == pin.RoleCA {
			x.warnf("domain %s: pin %s is a CA key, useless to curl", d.Name, p)
		}
	}
	if d.Mode == pin.ReportOnly {
		x.warnf("domain %s is report-only, but curl has no report-only mode: it refuses a mismatch", d.Name)
	}
	x.noExpiry([]pin.Domain{d})
	parts := make([]string, len(d.Pins))
	for i, p := range d.Pins {
		parts[i] = "sha256//" + p.Base64()
	}
	return []byte(strings.Join(parts, ";") + "\n"), nil
}

// hpkp renders a Public-Key-Pins (RFC 7469) header.
func (x *exporter) hpkp() ([]byte, error) {
	d, err := x.one()
	if err != nil {
		return nil, err
	}
	if len(d.Pins) < 2 {
		return nil, x.errorf(d.Name, "RFC 7469 §4.3 requires a backup pin: add a second pin")
	}
	maxAge := x.opts.MaxAge
	if maxAge <= 0 {
		maxAge = 60 * 24 * time.Hour
	}
	if !d.Expires.IsZero() {
		left := d.ExpiresAt().Sub(x.now())
		if left <= 0 {
			return nil, x.errorf(d.Name, "the pin set expired on %s", d.Expires.Format(time.DateOnly))
		}
		maxAge = min(maxAge, left)
	}
	x.warnf("browsers no longer support HPKP; the header is for clients that still implement RFC 7469")
	name := "Public-Key-Pins"
	if d.Mode == pin.ReportOnly {
		name = "Public-Key-Pins-Report-Only"
	}
	var b strings.Builder
	b.WriteString(name + ": ")
	for _, p := range d.Pins {
		fmt.Fprintf(&b, "pin-sha256=%q; ", p.Base64())
	}
	fmt.Fprintf(&b, "max-age=%d", int64(maxAge/time.Second))
	if d.IncludeSubdomains {
		b.WriteString("; includeSubDomains")
	}
	if d.ReportURI != "" {
		fmt.Fprintf(&b, "; report-uri=%q", d.ReportURI)
	}
	b.WriteByte('\n')
	return []byte(b.String()), nil
}

// reactNative renders the initializeSslPinning options of
// react-native-ssl-public-key-pinning (TrustKit on iOS, OkHttp on Android).
func (x *exporter) reactNative() ([]byte, error) {
	rules, err := x.enforcedOnly("", nil)
	if err != nil {
		return nil, err
	}
	x.unionWarnings(rules, "the library's Android side (OkHttp)")
	for _, d := range rules {
		if !d.Expires.IsZero() {
			x.warnf("domain %s: the library's Android side may ignore expirationDate (releases that do not read it enforce the pins after %s); check the version you ship", d.Name, d.Expires.Format(time.DateOnly))
		}
	}
	for _, d := range rules {
		if err := x.spkiOnly(d); err != nil {
			return nil, err
		}
		if len(d.Pins) < 2 {
			return nil, x.errorf(d.Name, "react-native-ssl-public-key-pinning needs at least two pins per domain on iOS; add a backup pin")
		}
		if isIP(d.Name) {
			return nil, x.errorf(d.Name, "react-native-ssl-public-key-pinning uses TrustKit on iOS, which pins host names only, not IP addresses")
		}
		if d.IncludeSubdomains && isPublicSuffix(d.Name) {
			return nil, x.errorf(d.Name, "react-native-ssl-public-key-pinning uses TrustKit on iOS, which refuses include_subdomains on a public suffix")
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "// %s\n", x.header())
	b.WriteString("// Expiration dates are the day after the policy's inclusive date: TrustKit (iOS) stops\n")
	b.WriteString("// pinning at 00:00 UTC of the date it is given. On Android the library uses OkHttp\n")
	b.WriteString("// (includeSubdomains needs 4.3.0) and some releases ignore expirationDate.\n\n")
	b.WriteString("import { initializeSslPinning } from 'react-native-ssl-public-key-pinning';\n\n")
	b.WriteString("export const pinningOptions = {\n")
	for _, d := range rules {
		fmt.Fprintf(&b, "  %s: {\n", swiftString(d.Name))
		fmt.Fprintf(&b, "    includeSubdomains: %t,\n", d.IncludeSubdomains)
		b.WriteString("    publicKeyHashes: [\n")
		for _, p := range d.Pins {
			fmt.Fprintf(&b, "      %s,\n", swiftString(p.Base64()))
		}
		b.WriteString("    ],\n")
		if !d.Expires.IsZero() {
			fmt.Fprintf(&b, "    expirationDate: %s,\n", swiftString(startOfDayAfter(d)))
		}
		b.WriteString("  },\n")
	}
	b.WriteString("};\n\n")
	b.WriteString("export function initializePinning() {\n  return initializeSslPinning(pinningOptions);\n}\n")
	return b.Bytes(), nil
}
