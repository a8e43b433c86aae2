package server

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// formatChars are characters that change how the text around them is
// displayed (CVE-2021-42574): bidi marks, embeddings, overrides and
// isolates, the Arabic letter mark, zero-width characters, the BOM, and
// the line and paragraph separators.
var formatChars = []rune{'\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e',
	'\u2066', '\u2067', '\u2068', '\u2069', '\u061c', '\u200b', '\u200d', '\ufeff', '\u00ad', '\u2028', '\u2029'}

func hasFormatChar(s string) (rune, bool) {
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return r, true
		}
	}
	return 0, false
}

// A certificate subject with a right-to-left override reaches the
// dashboard only with the override made visible (U+FFFD), so that a
// sender cannot make one served subject display as another; the same
// characters in the report's own text fields are refused, as control
// characters are.
func TestFormatCharactersDoNotReachTheDashboard(t *testing.T) {
	e := newEnv(t, nil)
	root := testpki.NewRoot(t, "Spoof Root")
	subject, err := asn1.Marshal(pkix.Name{
		Organization:       []string{"Evil\u200f Corp"},
		OrganizationalUnit: []string{"a\u202eRTLO\u2066x\u2069"},
		CommonName:         "api.payments.test",
	}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	leaf := root.NewIntermediate(t, "Spoof Issuing CA").Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}, Subject: subject})
	if _, ok := hasFormatChar(leaf.Cert.Subject.String()); !ok {
		t.Fatalf("the test certificate's subject %q has no format character", leaf.Cert.Subject)
	}
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, leaf, e.clock.Now()))
	wantStatus(t, "report with a spoofing subject", code, http.StatusNoContent, body)

	// Each character, in each text field of a report: 400 naming the
	// field and the character.
	for _, r := range formatChars {
		for _, field := range []string{"app-version", "app-platform", "app-vendor-id"} {
			var m map[string]any
			if err := json.Unmarshal(trustKit(t, "api.payments.test", "5.1.0", "dev-1", true, leaf), &m); err != nil {
				t.Fatal(err)
			}
			m[field] = "5.1" + string(r) + "0"
			b, _ := json.Marshal(m)
			code, _, body := e.postReport(t, b)
			if code != http.StatusBadRequest || !strings.Contains(string(body), field) || !strings.Contains(string(body), "U+") {
				t.Errorf("%s with U+%04X: %d %s, want 400 naming the field and the character", field, r, code, body)
			}
		}
		var m map[string]any
		json.Unmarshal(rfc7469(t, "api.payments.test", pin.Enforce, leaf, e.clock.Now()), &m)
		m["rampart-reason"] = "pin-" + string(r) + "mismatch"
		b, _ := json.Marshal(m)
		if code, _, body := e.postReport(t, b); code != http.StatusBadRequest || !strings.Contains(string(body), "rampart-reason") {
			t.Errorf("rampart-reason with U+%04X: %d %s, want 400", r, code, body)
		}
	}

	// Data stored before these were refused is shown safe too.
	c, _, err := parseReport(trustKit(t, "cdn.payments.test", "6.0.0", "dev-2", true, leaf))
	if err != nil {
		t.Fatal(err)
	}
	c.Digest = strings.Repeat("ab", 32)
	c.ServedSubject = "O=Good\u202e Corp"
	c.AppVersion = "6.0\u2067.0"
	c.Reason = "pin\u200b-mismatch"
	if err := e.store.Reports().AddReports(context.Background(), []store.Report{{Received: e.clock.Now(), Source: "192.0.2.7", Content: c}}); err != nil {
		t.Fatal(err)
	}

	code, _, page := e.do(t, "GET", "/", nil, "Cookie", sessionCookie+"="+e.srv.newSession())
	wantStatus(t, "dashboard", code, http.StatusOK, page)
	if r, ok := hasFormatChar(string(page)); ok {
		t.Errorf("the dashboard shows U+%04X", r)
	}
	if !strings.Contains(string(page), "a\uFFFDRTLO\uFFFDx\uFFFD") {
		t.Errorf("the dashboard does not show the subject with its overrides made visible")
	}
}
