// Package safetext holds the rules for untrusted text that Rampart keeps
// and shows (pin failure reports above all, which anyone may send): which
// characters are refused, how text is made fit to store and display, and
// what a host name from a report may hold. Package pin/report refuses
// reports that break these rules; the control plane cleans what it shows
// with the same rules, so that the two cannot disagree.
package safetext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// IsControl reports whether r has no place in text the dashboard shows:
// the C0 and C1 control characters and DEL; the format characters
// (Unicode category Cf: the bidi marks, embeddings, overrides and
// isolates U+200E-F, U+202A-E, U+2066-9, U+061C, the zero-width
// characters, U+FEFF, soft hyphens), which change how the text around
// them is displayed, so that a sender could make one certificate subject
// or app version display as another (CVE-2021-42574, "Trojan Source");
// and the line and paragraph separators U+2028-9, which do the same.
func IsControl(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
		return true
	case r < 0xad:
		return false
	}
	return unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// ControlKind names the kind of a rune [IsControl] refuses, for messages:
// "control character" or "format character".
func ControlKind(r rune) string {
	if r < 0xa0 {
		return "control character"
	}
	return "format character"
}

// Clean makes s fit to store and show: valid UTF-8, no character
// [IsControl] refuses (each becomes U+FFFD, visibly), at most n bytes. It
// is for values kept without being refused over (a User-Agent, a
// certificate subject), and for stored text as a page shows it.
func Clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, IsControl) >= 0 {
		s = strings.Map(func(r rune) rune {
			if IsControl(r) {
				return '\uFFFD'
			}
			return r
		}, s)
	}
	return Truncate(s, n)
}

// Truncate returns s cut to at most n bytes, at a rune boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// CheckHostname returns nil when h may be a host name of a report (its
// hostname or noted-hostname) or a filter on them: 1 to 253 bytes of
// lowercase letters, digits and - . _ * (wildcards and underscores occur
// in rules and in the wild) and : [ ] (IPv6 addresses). It is a syntax
// check, not a test that the name exists. The error's text starts with
// field, the name of what holds h, and is fit to show to whoever sent h.
func CheckHostname(field, h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%s: want a host name of 1 to 253 characters", field)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']' || c == '_' || c == '*') {
			return fmt.Errorf("%s %q: not a host name", field, h)
		}
	}
	return nil
}
