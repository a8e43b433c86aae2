package export

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/rampartsec/rampart/pin"
)

// plist writes an XML property list with tab indentation.
type plist struct {
	b     bytes.Buffer
	depth int
}

func newPlist(comment string) *plist {
	p := &plist{}
	p.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p.b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	p.comment(comment)
	p.b.WriteString(`<plist version="1.0">` + "\n")
	return p
}

func (p *plist) line(s string) {
	p.b.WriteString(strings.Repeat("\t", p.depth))
	p.b.WriteString(s)
	p.b.WriteByte('\n')
}

func (p *plist) comment(s string) {
	// "--" may not appear in an XML comment.
	p.line("<!-- " + strings.ReplaceAll(s, "--", "- -") + " -->")
}

func (p *plist) open(tag string)  { p.line("<" + tag + ">"); p.depth++ }
func (p *plist) close(tag string) { p.depth--; p.line("</" + tag + ">") }
func (p *plist) key(k string)     { p.line("<key>" + escape(k) + "</key>") }
func (p *plist) str(s string)     { p.line("<string>" + escape(s) + "</string>") }
func (p *plist) boolean(v bool) {
	if v {
		p.line("<true/>")
	} else {
		p.line("<false/>")
	}
}

func (p *plist) done() []byte {
	p.b.WriteString("</plist>\n")
	return p.b.Bytes()
}

// isPublicSuffix reports whether name is on the public suffix list (an
// ICANN suffix such as co.uk, or a private one such as github.io), not
// merely a single label the list's default rule matches (corp).
func isPublicSuffix(name string) bool {
	ps, icann := publicsuffix.PublicSuffix(name)
	return ps == name && (icann || strings.Contains(ps, "."))
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// trustKitRules checks TrustKit's own rules and returns the rules to
// export: TrustKit refuses IP addresses, fewer than two pins when enforcing,
// and includeSubdomains on a public suffix.
func (x *exporter) trustKitRules() ([]pin.Domain, error) {
	for _, d := range x.rules {
		if err := x.spkiOnly(d); err != nil {
			return nil, err
		}
		if isIP(d.Name) {
			return nil, x.errorf(d.Name, "TrustKit pins host names only, not IP addresses; remove the rule or give the server a name")
		}
		if d.Mode == pin.Enforce && len(d.Pins) < 2 {
			return nil, x.errorf(d.Name, "TrustKit needs at least two pins when enforcing (one a backup key); add a backup pin")
		}
		if d.IncludeSubdomains && isPublicSuffix(d.Name) {
			return nil, x.errorf(d.Name, "TrustKit refuses include_subdomains on a public suffix")
		}
	}
	return x.rules, nil
}

func (x *exporter) trustKitPlist() ([]byte, error) {
	rules, err := x.trustKitRules()
	if err != nil {
		return nil, err
	}
	p := newPlist(x.header() + " Merge the TSKConfiguration key into Info.plist. Expiration dates are the day after the policy's inclusive date: TrustKit stops pinning at 00:00 UTC of the date it is given.")
	p.open("dict")
	p.key("TSKConfiguration")
	p.open("dict")
	p.comment("true lets TrustKit swizzle NSURLSession delegates; false means calling TSKPinningValidator yourself.")
	p.key("TSKSwizzleNetworkDelegates")
	p.boolean(false)
	p.key("TSKPinnedDomains")
	p.open("dict")
	for _, d := range rules {
		p.key(d.Name)
		p.open("dict")
		p.key("TSKIncludeSubdomains")
		p.boolean(d.IncludeSubdomains)
		p.key("TSKEnforcePinning")
		p.boolean(d.Mode == pin.Enforce)
		if !d.Expires.IsZero() {
			p.key("TSKExpirationDate")
			p.str(startOfDayAfter(d))
		}
		p.key("TSKPublicKeyHashes")
		p.open("array")
		for _, pn := range d.Pins {
			p.str(pn.Base64())
		}
		p.close("array")
		if d.ReportURI != "" {
			p.key("TSKReportUris")
			p.open("array")
			p.str(d.ReportURI)
			p.close("array")
		}
		p.key("TSKDisableDefaultReportUri")
		p.boolean(true)
		p.close("dict")
	}
	p.close("dict")
	p.close("dict")
	x.plistBundleKeys(p)
	p.close("dict")
	return p.done(), nil
}

func (x *exporter) trustKitSwift() ([]byte, error) {
	rules, err := x.trustKitRules()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "// %s\n", x.header())
	b.WriteString("// Expiration dates are the day after the policy's inclusive date: TrustKit\n")
	b.WriteString("// stops pinning at 00:00 UTC of the date it is given.\n\n")
	b.WriteString("import TrustKit\n\n")
	b.WriteString("let trustKitConfig: [String: Any] = [\n")
	b.WriteString("    // true lets TrustKit swizzle NSURLSession delegates; false means calling TSKPinningValidator yourself.\n")
	b.WriteString("    kTSKSwizzleNetworkDelegates: false,\n")
	b.WriteString("    kTSKPinnedDomains: [\n")
	for _, d := range rules {
		fmt.Fprintf(&b, "        %s: [\n", swiftString(d.Name))
		fmt.Fprintf(&b, "            kTSKIncludeSubdomains: %t,\n", d.IncludeSubdomains)
		fmt.Fprintf(&b, "            kTSKEnforcePinning: %t,\n", d.Mode == pin.Enforce)
		if !d.Expires.IsZero() {
			fmt.Fprintf(&b, "            kTSKExpirationDate: %s,\n", swiftString(startOfDayAfter(d)))
		}
		b.WriteString("            kTSKPublicKeyHashes: [\n")
		for _, pn := range d.Pins {
			fmt.Fprintf(&b, "                %s,\n", swiftString(pn.Base64()))
		}
		b.WriteString("            ],\n")
		if d.ReportURI != "" {
			fmt.Fprintf(&b, "            kTSKReportUris: [%s],\n", swiftString(d.ReportURI))
		}
		b.WriteString("            kTSKDisableDefaultReportUri: true,\n")
		b.WriteString("        ],\n")
	}
	b.WriteString("    ],\n]\n\n")
	b.WriteString("// Call once, early: from application(_:didFinishLaunchingWithOptions:) or your App's init.\n")
	b.WriteString("func initializeTrustKit() {\n")
	b.WriteString("    TrustKit.initSharedInstance(withConfiguration: trustKitConfig)\n")
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// swiftString quotes s as a Swift (and JavaScript, C#, Kotlin) string
// literal; policy values are host names, base64 and URLs, so escaping
// backslash and quote is enough.
func swiftString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// ios renders App Transport Security NSPinnedDomains (iOS 14+), which
// tells leaf identities from CA identities and, when both are listed,
// requires a match of each.
func (x *exporter) ios() ([]byte, error) {
	rules, err := x.enforcedOnly("", nil)
	if err != nil {
		return nil, err
	}
	type idents struct{ leaf, ca []string }
	chosen := make([]idents, len(rules))
	for i, d := range rules {
		if err := x.spkiOnly(d); err != nil {
			return nil, err
		}
		var id idents
		for j, pn := range d.Pins {
			switch d.Role(pn) {
			case pin.RoleLeaf, pin.RoleBackup:
				id.leaf = append(id.leaf, pn.Base64())
			case pin.RoleCA:
				id.ca = append(id.ca, pn.Base64())
			default:
				return nil, x.errorf(d.Name, "App Transport Security needs to know whether each pin is a leaf or a CA key, and pin #%d (%s) does not say: write it as {pin: %s, role: leaf|backup|ca}", j+1, pn, pn)
			}
		}
		switch x.opts.Identities {
		case IdentitiesAuto:
			if len(id.leaf) > 0 && len(id.ca) > 0 {
				return nil, x.errorf(d.Name, "the rule has leaf and CA pins; App Transport Security would require a leaf match AND a CA match, where the policy accepts any one pin: choose with --ios-identities leaf|ca (or both, to accept the stricter rule)")
			}
		case IdentitiesLeaf:
			if len(id.ca) > 0 {
				x.warnf("domain %s: --ios-identities leaf leaves out %d CA pin(s)", d.Name, len(id.ca))
			}
			id.ca = nil
		case IdentitiesCA:
			if len(id.leaf) > 0 {
				x.warnf("domain %s: --ios-identities ca leaves out %d leaf or backup pin(s)", d.Name, len(id.leaf))
			}
			id.leaf = nil
		case IdentitiesBoth:
		default:
			return nil, x.errorf("", "identities %q: want leaf, ca or both", x.opts.Identities)
		}
		if len(id.leaf) == 0 && len(id.ca) == 0 {
			return nil, x.errorf(d.Name, "no %s pins to export", x.opts.Identities)
		}
		if len(id.leaf)+len(id.ca) < 2 && len(d.Pins) >= 2 {
			x.warnf("domain %s: one pin left in App Transport Security, with no backup", d.Name)
		}
		if x.opts.Identities == IdentitiesBoth && len(id.leaf) > 0 && len(id.ca) > 0 {
			x.warnf("domain %s: App Transport Security requires both a leaf and a CA pin to match", d.Name)
		}
		if d.IncludeSubdomains {
			x.warnf("domain %s: App Transport Security's NSIncludesSubdomains covers one level of subdomains only (a.%s, not b.a.%s)", d.Name, d.Name, d.Name)
		}
		chosen[i] = id
	}
	x.noExpiry(rules)

	p := newPlist(x.header() + " Merge the NSAppTransportSecurity key into Info.plist (iOS 14 and later). App Transport Security has no report-only mode and no pin expiry.")
	p.open("dict")
	p.key("NSAppTransportSecurity")
	p.open("dict")
	p.key("NSPinnedDomains")
	p.open("dict")
	for i, d := range rules {
		p.key(d.Name)
		p.open("dict")
		p.key("NSIncludesSubdomains")
		p.boolean(d.IncludeSubdomains)
		for _, list := range []struct {
			key    string
			hashes []string
		}{{"NSPinnedCAIdentities", chosen[i].ca}, {"NSPinnedLeafIdentities", chosen[i].leaf}} {
			if len(list.hashes) == 0 {
				continue
			}
			p.key(list.key)
			p.open("array")
			for _, h := range list.hashes {
				p.open("dict")
				p.key("SPKI-SHA256-BASE64")
				p.str(h)
				p.close("dict")
			}
			p.close("array")
		}
		p.close("dict")
	}
	p.close("dict")
	p.close("dict")
	x.plistBundleKeys(p)
	p.close("dict")
	return p.done(), nil
}

// plistBundleKeys adds the bundle keys as a key of Info.plist's root
// dictionary, beside the pinning configuration, which rejects unknown keys.
func (x *exporter) plistBundleKeys(p *plist) {
	if x.jwks == "" {
		return
	}
	p.comment(bundleKeysComment)
	p.key("RampartPinBundleKeys")
	p.str(x.jwks)
}
