package server

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FuzzParseReport: any input is either refused with a *report.Error (a
// 400 whose text is safe to return) or yields content whose digest
// ignores key order, white space and the date-time, as aggregation needs.
// pin/report's FuzzParse checks the same of report.Parse; this one checks
// the control plane's mapping of what it accepts.
func FuzzParseReport(f *testing.F) {
	rogue, _ := rogueLeaves(f)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Add(rfc7469(f, "api.payments.test", pin.Enforce, rogue, now))
	f.Add(trustKit(f, "api.payments.test", "1.0", "dev", true, rogue))
	f.Add([]byte(`{"hostname":"a.test"}`))
	f.Add([]byte(`{"date-time":"2026-11-25T10:00:00Z","hostname":"a.test","port":443,"known-pins":[],"served-certificate-chain":["-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----"]}`))
	f.Add([]byte("[[[[[["))
	f.Add(trustKit(f, "api.payments.test", "1.0\u202e", "dev\u2066", true, rogue))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, device, err := parseReport(body)
		if err != nil {
			var re *report.Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not a *report.Error", err, err)
			}
			return
		}
		if !hex64.MatchString(c.Digest) || c.Hostname == "" || c.Hostname != strings.ToLower(c.Hostname) ||
			c.Port < 0 || c.Port > 65535 || (c.Format != "rfc7469" && c.Format != "trustkit") {
			t.Fatalf("accepted content is inconsistent: %+v", c)
		}
		if _, err := pin.Parse(c.ServedPin); err != nil {
			t.Fatalf("served pin %q: %v", c.ServedPin, err)
		}
		// Nothing the dashboard shows carries a control or format
		// character (P7: bidi overrides would let one value display
		// as another).
		for name, v := range map[string]string{"subject": c.ServedSubject, "reason": c.Reason, "app version": c.AppVersion,
			"app platform": c.AppPlatform, "bundle id": c.AppBundleID, "device": device, "hostname": c.NotedHostname} {
			if i := strings.IndexFunc(v, isControl); i >= 0 {
				t.Fatalf("accepted %s %q with a control or format character at byte %d", name, v, i)
			}
		}
		// Re-encode with sorted keys, no white space and another date.
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted a body that is not a JSON object: %v", err)
		}
		if _, ok := m["date-time"].(string); ok {
			m["date-time"] = "2030-01-01T00:00:00Z"
		}
		m["app-vendor-id"] = "someone-else"
		again, _ := json.Marshal(m)
		c2, device2, err := parseReport(again)
		if err != nil {
			t.Fatalf("re-encoded report refused: %v\n%s", err, again)
		}
		if c2.Digest != c.Digest {
			t.Fatalf("digest depends on encoding, date-time or device:\n%s\n%s", body, again)
		}
		if device2 != "someone-else" || (device != "" && len(device) > maxField) {
			t.Fatalf("device %q / %q", device, device2)
		}
	})
}

func TestParseReportRefusesOverlongFields(t *testing.T) {
	rogue, _ := rogueLeaves(t)
	b := trustKit(t, "api.payments.test", strings.Repeat("9", 2000), "dev", true, rogue)
	if _, _, err := parseReport(b); err == nil || !strings.Contains(err.Error(), "app-version is longer than 1024 bytes") {
		t.Errorf("err = %v", err)
	}
}

func BenchmarkParseReport(b *testing.B) {
	rogue, _ := rogueLeaves(b)
	body := rfc7469(b, "api.payments.test", pin.Enforce, rogue, time.Now())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseReport(body); err != nil {
			b.Fatal(err)
		}
	}
}
