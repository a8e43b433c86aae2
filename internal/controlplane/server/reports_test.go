package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
	"github.com/rampartsec/rampart/ratelimit"
)

type groupsResponse = api.ReportGroups

// An RFC 7469 §3 report, as pin/report sends it, is stored with what
// identifies the rogue key; identical reports are counted, not stored
// twice.
func TestRFC7469ReportStoredAndAggregated(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	now := e.clock.Now()
	for i, at := range []time.Time{now, now.Add(time.Minute)} {
		code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, at), "User-Agent", fmt.Sprint("client/", i))
		wantStatus(t, "report", code, http.StatusNoContent, body)
	}
	code, body := e.admin(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "list", code, http.StatusOK, body)
	g := decode[groupsResponse](t, body).Groups
	if len(g) != 1 {
		t.Fatalf("%d groups, want the two reports (they differ only in date-time) in one: %s", len(g), body)
	}
	want := pin.FromCertificate(rogue.Cert).String()
	if g[0].Reports != 2 || g[0].Clients != 1 || g[0].ServedPin != want || g[0].Hostname != "api.payments.test" ||
		g[0].Port != 443 || g[0].Mode != "enforce" || g[0].Reason != "pin-mismatch" || g[0].Format != "rfc7469" ||
		!strings.Contains(g[0].ServedSubject, "api.payments.test") {
		t.Errorf("group = %+v\nwant 2 reports from 1 client (one address), served pin %s", g[0], want)
	}
	if !bytes.Contains(g[0].Report, []byte(`"served-certificate-chain"`)) {
		t.Errorf("the stored report is not the original: %s", g[0].Report)
	}
}

// TrustKit's report (iOS and Android) is accepted too; its vendor ID
// counts clients and its app version and platform are kept.
func TestTrustKitReport(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	for _, vendor := range []string{"device-1", "device-2", "device-1"} {
		code, _, body := e.postReport(t, trustKit(t, "api.payments.test", "4.2.0", vendor, false, rogue))
		wantStatus(t, "report", code, http.StatusNoContent, body)
	}
	code, body := e.admin(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "list", code, http.StatusOK, body)
	g := decode[groupsResponse](t, body).Groups
	if len(g) != 1 || g[0].Reports != 3 || g[0].Clients != 2 || g[0].Format != "trustkit" || g[0].Mode != "report-only" ||
		g[0].AppVersion != "4.2.0" || g[0].AppPlatform != "ios" || g[0].AppBundleID != "com.example.wallet" ||
		g[0].ServedPin != pin.FromCertificate(rogue.Cert).String() {
		t.Errorf("groups = %+v\nwant one TrustKit group, 3 reports from 2 devices, report-only", g)
	}
}

// Bad input gets a precise 4xx and the server keeps serving.
func TestReportBadInput(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	good := rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now())
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	manyPins := `{"date-time":"2026-11-25T10:00:00Z","hostname":"a.test","port":443,"served-certificate-chain":[],"known-pins":[` +
		strings.TrimSuffix(strings.Repeat(`"x",`, 5000), ",") + `]}`
	chain := string(bytes.TrimSpace(testpki.CertPEM(rogue.Cert)))
	longChain := `{"date-time":"2026-11-25T10:00:00Z","hostname":"a.test","port":443,"known-pins":[],"served-certificate-chain":[` +
		strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%q,", chain), 17), ",") + `]}`
	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		code        int
		msg         string
	}{
		{"truncated JSON", good[:len(good)/2], "", 400, "malformed JSON: unexpected end of input"},
		{"10 MB body", bytes.Repeat([]byte("a"), 10<<20), "", 413, "larger than 64 KiB"},
		{"wrong content type", good, "text/plain", 415, "Content-Type must be application/json"},
		{"no content type", good, "-", 415, "Content-Type must be application/json"},
		{"invalid UTF-8", append(append([]byte(`{"hostname":"`), 0xff, 0xfe), `"}`...), "", 400, "not valid UTF-8"},
		{"huge array", []byte(manyPins), "", 400, "known-pins has 5000 entries; at most 64"},
		{"too many certificates", []byte(longChain), "", 400, "served-certificate-chain has 17 certificates; at most 16"},
		{"deep nesting", []byte(deep), "", 400, "malformed JSON"},
		{"not an object", []byte(`[1,2]`), "", 400, "malformed JSON"},
		{"duplicate member", bytes.Replace(good, []byte(`"hostname":"api.payments.test"`), []byte(`"hostname":"a.test","hostname":"api.payments.test"`), 1), "", 400, "duplicate object member name"},
		{"data after the object", append(append([]byte(nil), good...), `{}`...), "", 400, "data after the report object"},
		{"missing fields", []byte(`{"hostname":"a.test"}`), "", 400, "missing required field(s): port, known-pins, date-time, served-certificate-chain (RFC 7469 §3)"},
		{"missing TrustKit fields", []byte(`{"app-bundle-id":"x","hostname":"a.test","port":1,"known-pins":[]}`), "", 400, "validated-certificate-chain, validation-result (TrustKit"},
		{"wrong type", []byte(`{"date-time":"2026-11-25T10:00:00Z","hostname":7}`), "", 400, "field hostname: want a string, got a JSON number"},
		{"bad date", bytes.Replace(good, []byte(`"date-time":"`), []byte(`"date-time":"yesterday`), 1), "", 400, "want an RFC 3339 date and time"},
		{"bad host name", bytes.Replace(good, []byte(`"hostname":"api`), []byte(`"hostname":"<script>api`), 1), "", 400, "not a host name"},
		{"bad port", bytes.Replace(good, []byte(`"port":443`), []byte(`"port":70000`), 1), "", 400, "port 70000"},
		{"not a certificate", bytes.Replace(good, []byte("MII"), []byte("AAA"), 1), "", 400, "served-certificate-chain[0]: not a valid certificate"},
		{"bad known pin", bytes.Replace(good, []byte(`pin-sha256=\"`), []byte(`pin-md5=\"`), 1), "", 400, "known-pins[0]"},
		{"empty chains", []byte(`{"date-time":"2026-11-25T10:00:00Z","hostname":"a.test","port":443,"known-pins":[],"served-certificate-chain":[]}`), "", 400, "both empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := "application/json"
			switch tc.contentType {
			case "":
			case "-":
				ct = ""
			default:
				ct = tc.contentType
			}
			code, _, body := e.do(t, "POST", "/v1/reports", tc.body, "Content-Type", ct)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q, want it to contain %q", msg, tc.msg)
			}
		})
	}
	code, _, body := e.postReport(t, good)
	wantStatus(t, "a good report after the bad ones", code, http.StatusNoContent, body)
	if n, _ := e.store.Reports().Total(context.Background(), store.ReportFilter{}); n != 1 {
		t.Errorf("%d reports stored, want only the good one", n)
	}
}

// Reports are limited per client address; behind a trusted proxy the
// address is the one X-Forwarded-For names, never what an untrusted peer
// claims.
func TestReportRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ReportLimit = ratelimit.PerSecond(1, 2)
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	rogue, _ := rogueLeaves(t)
	body := rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now())
	from := func(ip string) int {
		code, h, b := e.postReport(t, body, "X-Forwarded-For", "6.6.6.6, "+ip)
		if code == http.StatusTooManyRequests && (h.Get("Retry-After") != "1" || !strings.Contains(errorMessage(t, b), "too many reports")) {
			t.Errorf("429 without Retry-After: 1 or message: %v %s", h, b)
		}
		return code
	}
	if a, b, c := from("203.0.113.1"), from("203.0.113.1"), from("203.0.113.1"); a != 204 || b != 204 || c != 429 {
		t.Errorf("burst of 2: statuses %d %d %d, want 204 204 429", a, b, c)
	}
	if c := from("203.0.113.2"); c != 204 {
		t.Errorf("another client: %d, want 204", c)
	}
	e.clock.Add(time.Second)
	if c := from("203.0.113.1"); c != 204 {
		t.Errorf("after a second: %d, want 204", c)
	}
	// The leftmost address, which the client writes, does not matter.
	code, _, _ := e.postReport(t, body, "X-Forwarded-For", "198.51.100.9, 203.0.113.1")
	if code != 429 {
		t.Errorf("spoofed leftmost X-Forwarded-For: %d, want 429 (same client)", code)
	}
}

// Only what the store acknowledged is acknowledged: when the database
// fails, the client is told to retry.
func TestReportNotAcknowledgedWhenStoreFails(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	e.store.Close()
	code, h, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || strings.Contains(string(body), "sql") {
		t.Errorf("status %d, Retry-After %q, body %s; want 503 with Retry-After and no internal detail", code, h.Get("Retry-After"), body)
	}
}

// rampart-known-cert-pins, which pin/report sends for a rule with
// certificate pins, is validated, stored with the group, part of what
// makes reports identical, and shown on the group page.
func TestKnownCertPins(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	certPin := pin.Fingerprint(rogue.Chain[1])
	withCert := func(pins ...pin.Pin) []byte {
		d := &pin.Domain{Name: "api.payments.test", Mode: pin.Enforce, Pins: pins}
		b, err := json.Marshal(report.New(&pin.Failure{Time: e.clock.Now(), Host: "api.payments.test", Port: 443, Domain: d,
			Reason: pin.ReasonMismatch, Served: rogue.Chain, Chains: [][]*x509.Certificate{rogue.Chain}}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	spkiPin := pin.FromSPKI([]byte("a"))
	for _, b := range [][]byte{withCert(spkiPin, certPin), withCert(spkiPin, certPin), withCert(spkiPin)} {
		code, _, body := e.postReport(t, b)
		wantStatus(t, "report", code, http.StatusNoContent, body)
	}
	bad := bytes.Replace(withCert(spkiPin, certPin), []byte(`"cert-sha256:`), []byte(`"cert-sha256:zz`), 1)
	code, _, body := e.postReport(t, bad)
	if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), "rampart-known-cert-pins[0]") {
		t.Errorf("a bad certificate pin: %d %s, want 400 naming it", code, body)
	}

	gs, err := e.store.Reports().Groups(context.Background(), store.ReportFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("%d groups, want 2: the certificate pins tell the reports apart", len(gs))
	}
	var with store.ReportGroup
	for _, g := range gs {
		if g.Content.KnownCertPins != nil {
			with = g
		}
	}
	if with.Reports != 2 || !reflect.DeepEqual(with.Content.KnownCertPins, []string{certPin.String()}) {
		t.Fatalf("group with the certificate pin: %+v", with)
	}
	code, _, page := e.page(t, fmt.Sprintf("/reports/%d", with.ID))
	wantStatus(t, "group page", code, http.StatusOK, []byte(page))
	m := regexp.MustCompile(`(?s)id="known-pins">(.*?)</ul>`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(m[1], spkiPin.String()) || !strings.Contains(m[1], certPin.String()) {
		t.Errorf("the group page's expected pins: %v", m)
	}
	// The admin API names them too, and omits the member for a group
	// without.
	code, listing := e.admin(t, "GET", "/v1/admin/reports", nil)
	wantStatus(t, "admin reports", code, http.StatusOK, listing)
	var named, without int
	for _, g := range decode[groupsResponse](t, listing).Groups {
		switch {
		case reflect.DeepEqual(g.KnownCertPins, []string{certPin.String()}) && g.ID == with.ID:
			named++
		case g.KnownCertPins == nil:
			without++
		}
	}
	if named != 1 || without != 1 || bytes.Count(listing, []byte(`"known_cert_pins"`)) != 1 {
		t.Errorf("admin API known_cert_pins: %s", listing)
	}
}
