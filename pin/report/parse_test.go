package report_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/internal/util/safetext"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// The keys of stored reports do not change: these are the digests the
// control plane computed for these bodies before pin/report owned them
// (internal/controlplane/server's reportDigest at b634a1e), and a report received after
// an upgrade must join the group of the same report received before.
// rfc7469-cert-pins is the first report whose key covers
// rampart-known-cert-pins.
func TestKeyStable(t *testing.T) {
	for name, want := range map[string]string{
		"rfc7469-escaped":      "68b0ffc591a1414c52f6929b5a1e8fbde8e13d08c7e9259e0314fed962884cfe",
		"rfc7469-minimal":      "5ec87c1ce9e4b75b566153f5b7717f70fd5d401dc30507cab314ed44f5ec7af4",
		"rfc7469-rampart":      "68b0ffc591a1414c52f6929b5a1e8fbde8e13d08c7e9259e0314fed962884cfe",
		"rfc7469-report-only":  "2209b34098cb480d743c9fd7e3b5b4008fa6cd573bd7840906fb280b5caf403f",
		"trustkit":             "3e7b375828127ca9abee157c6a53b21d933e1073bda9a26b4493f59435385ff8",
		"trustkit-dates":       "a46455832ae621e2a3126bbf9a84ad17e1fd939336ca6972d74d30c90ba30e6f",
		"trustkit-empty-dates": "a3978cff3d4d81e90d7781a48eabac821a27f89c80d1f211e8f36ab6658c3543",
		"trustkit-minimal":     "358f00480e34f8441c1ba24754f76d591ca40921cacc1f5d30e8d4418d1acfb0",
		"rfc7469-cert-pins":    "",
	} {
		body, err := os.ReadFile(filepath.Join("testdata", "key", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := report.Parse(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want == "" {
			continue
		}
		if got := r.Key(); got != want {
			t.Errorf("%s: key %s, want %s", name, got, want)
		}
	}
	withCert, _ := os.ReadFile(filepath.Join("testdata", "key", "rfc7469-cert-pins.json"))
	r, _, _ := report.Parse(withCert)
	if len(r.KnownCertPins) != 1 || r.Key() == "68b0ffc591a1414c52f6929b5a1e8fbde8e13d08c7e9259e0314fed962884cfe" {
		t.Errorf("rampart-known-cert-pins %v is not part of the key", r.KnownCertPins)
	}
}

var (
	pkiOnce sync.Once
	pkiPool []*x509.Certificate // leaf, intermediate, root, another leaf
)

func certs(t testing.TB) []*x509.Certificate {
	pkiOnce.Do(func() {
		root := testpki.NewRoot(t, "Report Root")
		inter := root.NewIntermediate(t, "Report Issuing CA")
		a := inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}})
		b := inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.payments.test"}})
		pkiPool = []*x509.Certificate{a.Cert, inter.Cert, root.Cert, b.Cert}
	})
	return pkiPool
}

// newReport is the JSON of report.New for a mismatch on api.payments.test.
func newReport(t testing.TB, mod func(f *pin.Failure)) []byte {
	t.Helper()
	c := certs(t)
	f := &pin.Failure{
		Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Host: "api.payments.test", Port: 443,
		Domain: &pin.Domain{Name: "payments.test", IncludeSubdomains: true, Mode: pin.Enforce,
			Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.Fingerprint(c[1])}},
		Reason: pin.ReasonMismatch,
		Served: c[:2], Chains: [][]*x509.Certificate{c[:3]},
	}
	if mod != nil {
		mod(f)
	}
	b, err := json.Marshal(report.New(f))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns body with its members changed: a nil value deletes one.
func edit(t testing.TB, body []byte, members map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range members {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func trustKitReport(t testing.TB) []byte {
	t.Helper()
	c := certs(t)
	return edit(t, newReport(t, nil), map[string]any{
		"app-bundle-id": "com.example.wallet", "app-version": "4.2.0", "app-platform": "IOS",
		"app-vendor-id": "device-1", "trustkit-version": "3.0.4", "enforce-pinning": true, "validation-result": 1,
		"served-certificate-chain": nil, "validated-certificate-chain": []string{string(testpki.CertPEM(c[0]))},
		"rampart-mode": nil, "rampart-reason": nil, "rampart-library-version": nil, "rampart-known-cert-pins": nil,
	})
}

func TestParse(t *testing.T) {
	body := newReport(t, func(f *pin.Failure) { f.Host = "API.Payments.Test." })
	r, format, err := report.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if format != report.RFC7469 || r.Hostname != "api.payments.test" || r.NotedHostname != "payments.test" ||
		len(r.KnownCertPins) != 1 || r.KnownCertPins[0] != pin.Fingerprint(certs(t)[1]).String() {
		t.Errorf("Parse = %+v, %s", r, format)
	}
	if mode, reason := r.Outcome(); mode != pin.Enforce || reason != "pin-mismatch" {
		t.Errorf("Outcome = %s, %s", mode, reason)
	}
	if member, cert := r.Presented(); member != "served-certificate-chain[0]" || cert != string(testpki.CertPEM(certs(t)[0])) {
		t.Errorf("Presented = %s, %.40q", member, cert)
	}

	r, format, err = report.Parse(trustKitReport(t))
	if err != nil {
		t.Fatal(err)
	}
	if format != report.TrustKit || r.AppPlatform != "IOS" || r.AppVendorID != "device-1" || r.ValidationResult != 1 {
		t.Errorf("Parse = %+v, %s", r, format)
	}
	if mode, reason := r.Outcome(); mode != pin.Enforce || reason != "pin-mismatch" {
		t.Errorf("TrustKit Outcome = %s, %s", mode, reason)
	}
	if member, _ := r.Presented(); member != "validated-certificate-chain[0]" {
		t.Errorf("TrustKit Presented = %s", member)
	}
}

// Every refusal is an *Error naming the member at fault.
func TestParseRefusals(t *testing.T) {
	good := newReport(t, nil)
	tk := trustKitReport(t)
	for _, tc := range []struct {
		name, field, msg string
		body             []byte
	}{
		{"too large", "", "larger than 64 KiB", bytes.Repeat([]byte(" "), report.MaxSize+1)},
		{"not UTF-8", "", "not valid UTF-8", []byte("{\"hostname\":\"\xff\"}")},
		{"truncated", "", "malformed JSON: unexpected end of input", good[:len(good)/2]},
		{"two objects", "", "data after the report object", append(append([]byte(nil), good...), "{}"...)},
		{"duplicate", "hostname", "duplicate object member name", bytes.Replace(good, []byte(`"hostname":"`), []byte(`"hostname":"a.test","hostname":"`), 1)},
		{"wrong type", "port", "field port: want a number, got a JSON string", edit(t, good, map[string]any{"port": "443"})},
		{"wrong element type", "known-pins[0]", "field known-pins/0: want a string, got a JSON number", edit(t, good, map[string]any{"known-pins": []any{1}})},
		{"missing", "port", "missing required field(s): port, known-pins, date-time, served-certificate-chain (RFC 7469 §3)", []byte(`{"hostname":"a.test"}`)},
		{"null is missing", "hostname", "missing required field(s): hostname", edit(t, good, map[string]any{"hostname": json.RawMessage("null")})},
		{"missing TrustKit", "validated-certificate-chain", "validated-certificate-chain (TrustKit's report format)", edit(t, tk, map[string]any{"validated-certificate-chain": nil})},
		{"bad date", "date-time", `date-time "yesterday": want an RFC 3339 date and time`, edit(t, good, map[string]any{"date-time": "yesterday"})},
		{"bad expiry", "effective-expiration-date", "effective-expiration-date", edit(t, good, map[string]any{"effective-expiration-date": "2027-07-01"})},
		{"bad host", "hostname", `hostname "<script>": not a host name`, edit(t, good, map[string]any{"hostname": "<script>"})},
		{"empty host", "hostname", "hostname: want a host name of 1 to 253 characters", edit(t, good, map[string]any{"hostname": "."})},
		{"bad noted host", "noted-hostname", "not a host name", edit(t, good, map[string]any{"noted-hostname": "a b"})},
		{"bad port", "port", "port 70000: want 0 to 65535", edit(t, good, map[string]any{"port": 70000})},
		{"many pins", "known-pins", "known-pins has 65 entries; at most 64", edit(t, good, map[string]any{"known-pins": make([]string, 65)})},
		{"bad pin", "known-pins[0]", `known-pins[0]: want pin-sha256="<base64>"`, edit(t, good, map[string]any{"known-pins": []string{`pin-md5="x"`}})},
		{"short pin", "known-pins[1]", "known-pins[1]: pin: invalid pin", edit(t, good, map[string]any{"known-pins": []string{`pin-sha256="` + pin.FromSPKI(nil).Base64() + `"`, `pin-sha256="AAAA"`}})},
		{"bad cert pin", "rampart-known-cert-pins[0]", "rampart-known-cert-pins[0]: pin: invalid pin", edit(t, good, map[string]any{"rampart-known-cert-pins": []string{"cert-sha256:00"}})},
		{"SPKI pin as cert pin", "rampart-known-cert-pins[0]", "want cert-sha256: and 64 lowercase hex digits", edit(t, good, map[string]any{"rampart-known-cert-pins": []string{pin.FromSPKI(nil).String()}})},
		{"uppercase cert pin", "rampart-known-cert-pins[0]", "want cert-sha256: and 64 lowercase hex digits", edit(t, good, map[string]any{"rampart-known-cert-pins": []string{"cert-sha256:" + strings.ToUpper(pin.Fingerprint(certs(t)[0]).String()[12:])}})},
		{"many cert pins", "rampart-known-cert-pins", "rampart-known-cert-pins has 65 entries; at most 64", edit(t, good, map[string]any{"rampart-known-cert-pins": make([]string, 65)})},
		{"long chain", "served-certificate-chain", "served-certificate-chain has 17 certificates; at most 16", edit(t, good, map[string]any{"served-certificate-chain": slicesRepeat(string(testpki.CertPEM(certs(t)[0])), 17)})},
		{"not PEM", "validated-certificate-chain[1]", "validated-certificate-chain[1]: not a PEM certificate", edit(t, good, map[string]any{"validated-certificate-chain": []string{string(testpki.CertPEM(certs(t)[0])), "MIIB"}})},
		{"no certificate", "served-certificate-chain", "both empty", edit(t, good, map[string]any{"served-certificate-chain": []string{}, "validated-certificate-chain": []string{}})},
		{"empty bundle", "app-bundle-id", "app-bundle-id is empty", edit(t, tk, map[string]any{"app-bundle-id": ""})},
		{"bad validation result", "validation-result", "validation-result 0: want 1 to 5", edit(t, tk, map[string]any{"validation-result": 0})},
		{"bad mode", "rampart-mode", `rampart-mode "always": want enforce or report-only`, edit(t, good, map[string]any{"rampart-mode": "always"})},
		{"long text", "app-version", "app-version is longer than 1024 bytes", edit(t, tk, map[string]any{"app-version": strings.Repeat("9", 1025)})},
		{"NUL", "rampart-reason", "rampart-reason has a control character (U+0000) at byte 3", edit(t, good, map[string]any{"rampart-reason": "pin\x00"})},
		{"bidi override", "app-vendor-id", "app-vendor-id has a format character (U+202E) at byte 1", edit(t, tk, map[string]any{"app-vendor-id": "a\u202eb"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, err := report.Parse(tc.body)
			var re *report.Error
			if !errors.As(err, &re) {
				t.Fatalf("Parse = %+v, %v; want an *Error", r, err)
			}
			if re.Field != tc.field || !strings.Contains(re.Msg, tc.msg) || re.Error() != "pin/report: "+re.Msg {
				t.Errorf("Field %q, Msg %q; want %q and a message with %q", re.Field, re.Msg, tc.field, tc.msg)
			}
		})
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// FuzzParse: any body is either refused with an *Error whose message is
// safe to return to its sender, or gives a report that is safe to store
// and show, that reads back the same after encoding/json writes it, and
// whose key ignores the encoding, the date-time and the device.
func FuzzParse(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "key"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "key", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(newReport(f, nil))
	f.Add(trustKitReport(f))
	f.Add([]byte(`{"hostname":"a.test"}`))
	f.Add([]byte(`{"date-time":"2026-11-25T10:00:00Z","hostname":"a.test","port":443,"known-pins":[],"served-certificate-chain":["-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----"]}`))
	f.Add([]byte(`{"app-bundle-id":"x","validation-result":2,"hostname":"A.TEST..","port":0,"known-pins":[],"validated-certificate-chain":["-----BEGIN CERTIFICATE-----"],"known-pins-expiration-date":""}`))
	f.Add([]byte("[[[[[["))
	f.Add([]byte(`{"\u202e":1,"\u202e":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, format, err := report.Parse(body)
		if err != nil {
			var re *report.Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if re.Msg == "" || !utf8.ValidString(re.Msg) || strings.IndexFunc(re.Msg, safetext.IsControl) >= 0 {
				t.Fatalf("message %q is not fit to return", re.Msg)
			}
			return
		}
		checkAccepted(t, body, r, format)
	})
}

func checkAccepted(t *testing.T, body []byte, r *report.Report, format report.Format) {
	t.Helper()
	if r.Hostname == "" || r.Hostname != strings.ToLower(r.Hostname) || strings.HasSuffix(r.Hostname, ".") || r.NotedHostname == "" ||
		r.Port < 0 || r.Port > 65535 || (format != report.RFC7469 && format != report.TrustKit) {
		t.Fatalf("accepted report is inconsistent: %+v, %s", r, format)
	}
	if _, c := r.Presented(); !strings.HasPrefix(c, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("accepted a report without a certificate: %+v", r)
	}
	switch mode, _ := r.Outcome(); mode {
	case "", pin.Enforce, pin.ReportOnly:
	default:
		t.Fatalf("accepted mode %q", mode)
	}
	for _, p := range r.KnownCertPins {
		if q, err := pin.Parse(p); err != nil || q.Kind() != pin.Cert {
			t.Fatalf("accepted certificate pin %q: %v", p, err)
		}
	}
	// Nothing a collector shows carries a control or format character
	// (bidi overrides would let one value display as another).
	for name, v := range map[string]string{"reason": r.Reason, "app version": r.AppVersion, "app platform": r.AppPlatform,
		"bundle id": r.AppBundleID, "device": r.AppVendorID, "hostname": r.NotedHostname, "version": r.LibraryVersion,
		"platform version": r.AppPlatformVersion, "trustkit version": r.TrustKitVersion} {
		if i := strings.IndexFunc(v, safetext.IsControl); i >= 0 || len(v) > report.MaxText {
			t.Fatalf("accepted %s %q (%d bytes) with a control or format character at byte %d", name, v, len(v), i)
		}
	}
	key := r.Key()
	if !hex64.MatchString(key) {
		t.Fatalf("key %q", key)
	}
	// What encoding/json writes of it reads back the same.
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	r2, format2, err := report.Parse(out)
	if err != nil {
		t.Fatalf("Parse of what encoding/json wrote: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(r, r2) || format2 != format || r2.Key() != key {
		t.Fatalf("does not read back:\n%+v\n%+v\n%s", r, r2, out)
	}
	// Re-encode with sorted keys, no white space, another date and
	// another device: the same failure.
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("accepted a body that is not a JSON object: %v", err)
	}
	if _, ok := m["date-time"].(string); ok {
		m["date-time"] = "2030-01-01T00:00:00Z"
	}
	m["app-vendor-id"] = "someone-else"
	again, _ := json.Marshal(m)
	r3, _, err := report.Parse(again)
	if err != nil {
		t.Fatalf("re-encoded report refused: %v\n%s", err, again)
	}
	if r3.Key() != key {
		t.Fatalf("key depends on encoding, date-time or device:\n%s\n%s", body, again)
	}
}

// FuzzRoundTrip: what report.New makes of a failure, written by
// encoding/json, Parse reads back as the same report, with the key of
// every failure with the same pin.Failure.Key. The failures are those a
// verifier makes: a valid host name, a rule with pins, a served chain, a
// time and an expiry within years 1 to 9999.
func FuzzRoundTrip(f *testing.F) {
	f.Add("api", uint16(443), uint8(0), []byte{0, 1}, uint16(0x12), int64(1795608000), uint16(0))
	f.Add("cdn-1", uint16(0), uint8(0xff), []byte{7, 8, 9, 10, 11}, uint16(0xffff), int64(-1), uint16(400))
	f.Add("", uint16(8443), uint8(0x15), []byte{}, uint16(1), int64(253402300799), uint16(65535))
	f.Fuzz(func(t *testing.T, label string, port uint16, flags uint8, pinBytes []byte, chains uint16, unix int64, expDays uint16) {
		fail := roundTripFailure(t, label, port, flags, pinBytes, chains, unix, expDays)
		r := report.New(fail)
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, format, err := report.Parse(body)
		if err != nil {
			t.Fatalf("Parse refused what New made: %v\n%s", err, body)
		}
		if format != report.RFC7469 || !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip changed the report:\n%+v\n%+v", r, got)
		}
		checkAccepted(t, body, got, format)
		// The same failure at another time, with other verified chains
		// after the first: the same failure key and the same report key.
		same := *fail
		same.Time = same.Time.Add(-time.Hour)
		if len(same.Chains) > 0 {
			same.Chains = append(append([][]*x509.Certificate(nil), same.Chains...), certs(t)[3:])
		}
		if same.Key() != fail.Key() || report.New(&same).Key() != got.Key() {
			t.Fatal("the key changed with the time or the chains after the first")
		}
	})
}

func roundTripFailure(t *testing.T, label string, port uint16, flags uint8, pinBytes []byte, chains uint16, unix int64, expDays uint16) *pin.Failure {
	var host strings.Builder
	for _, c := range []byte(label) {
		if host.Len() == 63 {
			break
		}
		host.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789-"[int(c)%37])
	}
	if host.Len() == 0 {
		host.WriteString("api")
	}
	name := host.String() + ".payments.test"
	d := &pin.Domain{Name: name, Mode: pin.Enforce, IncludeSubdomains: flags&2 != 0}
	if flags&1 != 0 {
		d.Mode = pin.ReportOnly
	}
	if flags&16 != 0 {
		d.Name = "payments.test"
	}
	if expDays != 0 {
		d.Expires = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(expDays))
	}
	if len(pinBytes) > 64 {
		pinBytes = pinBytes[:64]
	}
	for i, b := range pinBytes {
		sum := sha256.Sum256([]byte(fmt.Sprint(i, b)))
		if b&1 == 0 {
			d.Pins = append(d.Pins, pin.FromSPKI(sum[:]))
		} else {
			var c x509.Certificate
			c.Raw = sum[:]
			d.Pins = append(d.Pins, pin.Fingerprint(&c))
		}
	}
	pool := certs(t)
	served := pool[:1+int(chains&3)]
	var verified [][]*x509.Certificate
	if n := int(chains>>2) & 3; n > 0 {
		verified = append(verified, pool[:n])
	}
	if chains&16 != 0 {
		verified = append(verified, pool[3:])
	}
	const maxUnix = 253402300799 // 9999-12-31T23:59:59Z
	at := time.Unix(unix%maxUnix, 0)
	if at.Year() < 1 {
		at = at.AddDate(2000, 0, 0)
	}
	return &pin.Failure{Time: at, Host: name, Port: int(port), Domain: d,
		Reason: []pin.Reason{pin.ReasonMismatch, pin.ReasonExpired, pin.ReasonNoVerifiedChain}[int(flags>>2)%3],
		Served: served, Chains: verified}
}

func BenchmarkParse(b *testing.B) {
	body := newReport(b, nil)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, _, err := report.Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Key()
	}
}
