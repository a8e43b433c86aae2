package export_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/export"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func loadPolicy(t *testing.T) *pin.Policy {
	t.Helper()
	p, err := pin.LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every format from the same policy, compared with testdata/NAME.golden:
// the output, then the warnings. go test ./pin/export -update rewrites them.
func TestGolden(t *testing.T) {
	p := loadPolicy(t)
	base := export.Options{Source: "policy.yaml", Now: now}
	for _, tc := range []struct {
		name   string
		format export.Format
		opts   func(*export.Options)
	}{
		{"android", export.Android, nil},
		{"trustkit", export.TrustKit, nil},
		{"trustkit-swift", export.TrustKitSwift, nil},
		{"ios", export.IOS, nil},
		{"okhttp", export.OkHTTP, nil},
		{"okhttp3", export.OkHTTP, func(o *export.Options) { o.OkHTTP3 = true }},
		{"curl", export.Curl, func(o *export.Options) { o.Domain = "api.example.com" }},
		{"dotnet", export.DotNet, nil},
		{"react-native", export.ReactNative, nil},
		{"hpkp", export.HPKP, func(o *export.Options) { o.Domain = "api.example.com" }},
		{"hpkp-subdomains", export.HPKP, func(o *export.Options) { o.Domain = "payments.example.org"; o.MaxAge = time.Hour }},
		{"json", export.JSON, nil},
		{"json-one-domain", export.JSON, func(o *export.Options) { o.Domain = "beta.example.com" }},
		{"rampart-client", export.RampartClient, func(o *export.Options) {
			o.BundleKeys = []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U","alg":"ES256","use":"sig"}]}`)
			o.BundleURL, o.BundleName, o.MinVersion = "https://api.example.com/v1/bundles/mobile", "mobile", 7
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.opts != nil {
				tc.opts(&o)
			}
			r, err := export.Export(p, tc.format, o)
			if err != nil {
				t.Fatal(err)
			}
			got := append([]byte(nil), r.Output...)
			got = append(got, "-- warnings --\n"...)
			for _, w := range r.Warnings {
				got = append(got, w+"\n"...)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), got)
		})
	}
}

// The Android output is a network security config: parse it as XML and
// check what Android will read.
func TestAndroidParses(t *testing.T) {
	r, err := export.Export(loadPolicy(t), export.Android, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		XMLName xml.Name `xml:"network-security-config"`
		Domains []struct {
			Domain struct {
				Include bool   `xml:"includeSubdomains,attr"`
				Name    string `xml:",chardata"`
			} `xml:"domain"`
			PinSet struct {
				Expiration string `xml:"expiration,attr"`
				Pins       []struct {
					Digest string `xml:"digest,attr"`
					Value  string `xml:",chardata"`
				} `xml:"pin"`
			} `xml:"pin-set"`
		} `xml:"domain-config"`
	}
	if err := xml.Unmarshal(r.Output, &cfg); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if len(cfg.Domains) != 2 {
		t.Fatalf("%d domain-configs, want 2 (the report-only rule is left out)", len(cfg.Domains))
	}
	api, org := cfg.Domains[0], cfg.Domains[1]
	if api.Domain.Name != "api.example.com" || api.Domain.Include || api.PinSet.Expiration != "2027-07-01" ||
		len(api.PinSet.Pins) != 2 || api.PinSet.Pins[0].Digest != "SHA-256" ||
		api.PinSet.Pins[0].Value != "ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=" {
		t.Errorf("api.example.com: %+v", api)
	}
	if org.Domain.Name != "payments.example.org" || !org.Domain.Include || org.PinSet.Expiration != "" {
		t.Errorf("payments.example.org: %+v", org)
	}
	if len(r.Warnings) != 2 ||
		!strings.Contains(r.Warnings[0], "beta.example.com is report-only") || !strings.Contains(r.Warnings[0], "trustkit-config") ||
		!strings.Contains(r.Warnings[1], "api.example.com: Android reads the expiration date as midnight in the device's time zone") {
		t.Errorf("warnings = %q, want one pointing to TrustKit-Android and one on the time zone of the expiry", r.Warnings)
	}
}

// A report-only rule under an enforced parent that includes subdomains
// cannot just be left out: the parent's pins would be enforced there.
// Android exempts it with a domain-config of its own that has no pin-set
// (the most specific domain-config wins, and siblings inherit nothing);
// formats that cannot exempt a name refuse.
func TestReportOnlyUnderEnforcedParent(t *testing.T) {
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	p := policy(t,
		pin.Domain{Name: "example.com", IncludeSubdomains: true, Pins: []pin.Pin{a, b}},
		pin.Domain{Name: "beta.example.com", Mode: pin.ReportOnly, Pins: []pin.Pin{a}},
	)
	r, err := export.Export(p, export.Android, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Domains []struct {
			Domain string    `xml:"domain"`
			PinSet *struct{} `xml:"pin-set"`
		} `xml:"domain-config"`
	}
	if err := xml.Unmarshal(r.Output, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Domains) != 2 || cfg.Domains[0].Domain != "example.com" || cfg.Domains[0].PinSet == nil ||
		cfg.Domains[1].Domain != "beta.example.com" || cfg.Domains[1].PinSet != nil {
		t.Errorf("domain-configs = %+v, want example.com pinned and beta.example.com without a pin-set:\n%s", cfg.Domains, r.Output)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "exported without pins, so that rule example.com does not enforce its pins there") {
		t.Errorf("warnings = %q", r.Warnings)
	}
	for _, f := range []export.Format{export.OkHTTP, export.IOS, export.ReactNative} {
		_, err := export.Export(p, f, export.Options{Identities: export.IdentitiesLeaf})
		var ee *export.Error
		if !errors.As(err, &ee) || ee.Domain != "beta.example.com" || !strings.Contains(err.Error(), "would enforce its pins here") {
			t.Errorf("%s: err = %v, want a refusal naming beta.example.com", f, err)
		}
	}
	// The nearest parent decides: under a report-only parent that includes
	// subdomains, nothing is enforced, so the rule is simply left out.
	p = policy(t,
		pin.Domain{Name: "example.com", IncludeSubdomains: true, Pins: []pin.Pin{a, b}},
		pin.Domain{Name: "eu.example.com", IncludeSubdomains: true, Mode: pin.ReportOnly, Pins: []pin.Pin{a}},
		pin.Domain{Name: "beta.eu.example.com", Mode: pin.ReportOnly, Pins: []pin.Pin{a}},
	)
	if _, err := export.Export(p, export.OkHTTP, export.Options{}); err == nil {
		t.Error("okhttp: eu.example.com sits under an enforced parent and must be refused")
	}
}

// The policy's file name goes into a comment of every output: it cannot
// end the comment or start a new line.
func TestSourceNameCannotEscapeComment(t *testing.T) {
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	p := policy(t, pin.Domain{Name: "a.test", Pins: []pin.Pin{a, b}})
	for _, f := range []export.Format{export.Android, export.TrustKitSwift, export.OkHTTP, export.DotNet} {
		r, err := export.Export(p, f, export.Options{Source: "x*/ -->\nevil();/*.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(r.Output), "evil")
		if strings.Contains(first, "*/") || strings.Contains(first, "-->") || strings.Contains(first, "\n"+"evil") {
			t.Errorf("%s: the source name escaped its comment:\n%s", f, r.Output)
		}
		if !strings.Contains(string(r.Output), "x___-___evil_____.yaml") {
			t.Errorf("%s: source name not kept in a safe form:\n%s", f, r.Output)
		}
	}
}

// parsePlist decodes an XML property list into Go values: map[string]any,
// []any, string, bool.
func parsePlist(t *testing.T, data []byte) any {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var next func() (any, bool)
	text := func() string {
		var s strings.Builder
		for {
			tok, err := d.Token()
			if err != nil {
				t.Fatal(err)
			}
			switch tok := tok.(type) {
			case xml.CharData:
				s.Write(tok)
			case xml.EndElement:
				return s.String()
			default:
				t.Fatalf("unexpected %T in a text element", tok)
			}
		}
	}
	next = func() (any, bool) {
		for {
			tok, err := d.Token()
			if err == io.EOF {
				return nil, false
			}
			if err != nil {
				t.Fatalf("not XML: %v", err)
			}
			switch tok := tok.(type) {
			case xml.EndElement:
				return nil, false
			case xml.StartElement:
				switch tok.Name.Local {
				case "plist":
					v, _ := next()
					return v, true
				case "dict":
					m := map[string]any{}
					for {
						k, ok := next()
						if !ok {
							return m, true
						}
						key, isKey := k.(plistKey)
						if !isKey {
							t.Fatalf("dict entry without key: %v", k)
						}
						v, ok := next()
						if !ok {
							t.Fatalf("key %q without value", key)
						}
						m[string(key)] = v
					}
				case "array":
					var a []any
					for {
						v, ok := next()
						if !ok {
							return a, true
						}
						a = append(a, v)
					}
				case "key":
					return plistKey(text()), true
				case "string":
					return text(), true
				case "true", "false":
					text()
					return tok.Name.Local == "true", true
				default:
					t.Fatalf("unexpected plist element %q", tok.Name.Local)
				}
			}
		}
	}
	v, _ := next()
	return v
}

type plistKey string

func TestTrustKitParses(t *testing.T) {
	r, err := export.Export(loadPolicy(t), export.TrustKit, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := parsePlist(t, r.Output).(map[string]any)
	tsk := root["TSKConfiguration"].(map[string]any)
	domains := tsk["TSKPinnedDomains"].(map[string]any)
	want := map[string]any{
		"TSKIncludeSubdomains":       false,
		"TSKEnforcePinning":          true,
		"TSKExpirationDate":          "2027-07-01",
		"TSKPublicKeyHashes":         []any{"ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=", "ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="},
		"TSKReportUris":              []any{"https://reports.example.net/pins"},
		"TSKDisableDefaultReportUri": true,
	}
	if got := domains["api.example.com"]; !reflect.DeepEqual(got, want) {
		t.Errorf("api.example.com = %v\nwant %v", got, want)
	}
	beta := domains["beta.example.com"].(map[string]any)
	if beta["TSKEnforcePinning"] != false || !reflect.DeepEqual(beta["TSKReportUris"], []any{"https://reports.example.net/beta"}) {
		t.Errorf("report-only rule = %v, want TSKEnforcePinning false with its report URI", beta)
	}
	if org := domains["payments.example.org"].(map[string]any); org["TSKIncludeSubdomains"] != true {
		t.Errorf("payments.example.org = %v", org)
	}
}

func TestIOSParses(t *testing.T) {
	r, err := export.Export(loadPolicy(t), export.IOS, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := parsePlist(t, r.Output).(map[string]any)
	pinned := root["NSAppTransportSecurity"].(map[string]any)["NSPinnedDomains"].(map[string]any)
	api := pinned["api.example.com"].(map[string]any)
	leaf := api["NSPinnedLeafIdentities"].([]any)
	if len(leaf) != 2 || leaf[1].(map[string]any)["SPKI-SHA256-BASE64"] != "ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA=" || api["NSPinnedCAIdentities"] != nil {
		t.Errorf("api.example.com = %v, want its leaf and backup as leaf identities", api)
	}
	org := pinned["payments.example.org"].(map[string]any)
	if org["NSIncludesSubdomains"] != true || len(org["NSPinnedCAIdentities"].([]any)) != 2 {
		t.Errorf("payments.example.org = %v, want two CA identities", org)
	}
	if _, ok := pinned["beta.example.com"]; ok {
		t.Error("the report-only rule was exported to ATS, which would enforce it")
	}
}

func policy(t *testing.T, domains ...pin.Domain) *pin.Policy {
	t.Helper()
	p, err := pin.NewPolicy("", domains...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// What a format cannot express fails, saying what to change; it never
// guesses.
func TestRefusals(t *testing.T) {
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	certPin := pin.Fingerprint(&x509Stub)
	for _, tc := range []struct {
		name   string
		format export.Format
		opts   export.Options
		rules  []pin.Domain
		want   string
	}{
		{"certificate pin on android", export.Android, export.Options{}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, certPin}}}, "certificate fingerprint, which android cannot express"},
		{"IP address in trustkit", export.TrustKit, export.Options{}, []pin.Domain{{Name: "10.0.0.1", Pins: []pin.Pin{a, b}}}, "host names only, not IP addresses"},
		{"one pin enforced in trustkit", export.TrustKitSwift, export.Options{}, []pin.Domain{{Name: "a.test", AllowSinglePin: true, Pins: []pin.Pin{a}}}, "at least two pins when enforcing"},
		{"public suffix in trustkit", export.TrustKit, export.Options{}, []pin.Domain{{Name: "github.io", IncludeSubdomains: true, Pins: []pin.Pin{a, b}}}, "public suffix"},
		{"ios without roles", export.IOS, export.Options{}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}}}, "pin #1 (" + a.String() + ") does not say: write it as {pin: " + a.String() + ", role: leaf|backup|ca}"},
		{"ios with leaf and CA pins", export.IOS, export.Options{}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}, Roles: map[pin.Pin]pin.Role{a: pin.RoleLeaf, b: pin.RoleCA}}}, "choose with --ios-identities"},
		{"ios identities with none of that kind", export.IOS, export.Options{Identities: export.IdentitiesCA}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}, Roles: map[pin.Pin]pin.Role{a: pin.RoleLeaf, b: pin.RoleBackup}}}, "no ca pins to export"},
		{"curl with two rules", export.Curl, export.Options{}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}}, {Name: "b.test", Pins: []pin.Pin{a, b}}}, "choose one with --domain"},
		{"hpkp without backup", export.HPKP, export.Options{}, []pin.Domain{{Name: "a.test", AllowSinglePin: true, Pins: []pin.Pin{a}}}, "RFC 7469 §4.3 requires a backup pin"},
		{"hpkp expired", export.HPKP, export.Options{Now: now}, []pin.Domain{{Name: "a.test", Expires: now.AddDate(0, 0, -1), Pins: []pin.Pin{a, b}}}, "the pin set expired"},
		{"react-native one pin", export.ReactNative, export.Options{}, []pin.Domain{{Name: "a.test", AllowSinglePin: true, Pins: []pin.Pin{a}}}, "at least two pins per domain on iOS"},
		{"unknown domain", export.JSON, export.Options{Domain: "x.test"}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}}}, `no rule for domain "x.test"`},
		{"subdomain is not a rule", export.JSON, export.Options{Domain: "x.a.test"}, []pin.Domain{{Name: "a.test", IncludeSubdomains: true, Pins: []pin.Pin{a, b}}}, `no rule for domain "x.a.test"`},
		{"unknown format", "pkcs12", export.Options{}, []pin.Domain{{Name: "a.test", Pins: []pin.Pin{a, b}}}, "unknown format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := export.Export(policy(t, tc.rules...), tc.format, tc.opts)
			var ee *export.Error
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want an *export.Error containing %q", err, tc.want)
			}
		})
	}
}

// The dotnet output keeps certificate pins, which it can check.
func TestDotNetCertificatePins(t *testing.T) {
	certPin := pin.Fingerprint(&x509Stub)
	r, err := export.Export(policy(t, pin.Domain{Name: "a.test", Pins: []pin.Pin{pin.FromSPKI([]byte("a")), certPin}}), export.DotNet, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(certPin.String(), "cert-sha256:")
	if !strings.Contains(string(r.Output), fmt.Sprintf(`CertSha256: new[] { "%s" }`, hex)) {
		t.Errorf("certificate pin missing:\n%s", r.Output)
	}
}

func TestOkHTTPOverlapWarning(t *testing.T) {
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	r, err := export.Export(policy(t,
		pin.Domain{Name: "example.com", IncludeSubdomains: true, Pins: []pin.Pin{a, b}},
		pin.Domain{Name: "api.example.com", Pins: []pin.Pin{b, a}},
	), export.OkHTTP, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "OkHttp also accepts the pins of example.com") {
		t.Errorf("warnings = %q", r.Warnings)
	}
}

func TestHPKPReportOnly(t *testing.T) {
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	r, err := export.Export(policy(t, pin.Domain{Name: "a.test", Mode: pin.ReportOnly, Pins: []pin.Pin{a, b}}), export.HPKP, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(r.Output), "Public-Key-Pins-Report-Only: pin-sha256=") {
		t.Errorf("output = %s", r.Output)
	}
}

// The public keys of signed pin bundles go into the formats that can
// carry them; the others refuse, pointing to the jwks format.
func TestBundleKeys(t *testing.T) {
	jwks := []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U","alg":"ES256","use":"sig"}]}`)
	compact := string(jwks)
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	p := policy(t, pin.Domain{Name: "a.test", Pins: []pin.Pin{a, b}, Roles: map[pin.Pin]pin.Role{a: pin.RoleLeaf, b: pin.RoleBackup}})
	for _, tc := range []struct {
		format export.Format
		want   string
	}{
		{export.TrustKitSwift, "let pinBundleKeys = \"{\\\"keys\\\":"},
		{export.OkHTTP, "const val PIN_BUNDLE_KEYS: String = \"{\\\"keys\\\":"},
		{export.ReactNative, "export const pinBundleKeys = " + compact + ";"},
		{export.DotNet, "public const string Jwks = \"{\\\"keys\\\":"},
		{export.JWKS, `"kid": "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"`},
	} {
		r, err := export.Export(p, tc.format, export.Options{BundleKeys: jwks})
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if !strings.Contains(string(r.Output), tc.want) {
			t.Errorf("%s lacks %q:\n%s", tc.format, tc.want, r.Output)
		}
	}
	// A key the clients would refuse is refused here: a kid that is not
	// the RFC 7638 thumbprint, or a private key.
	for _, bad := range []string{
		strings.Replace(compact, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U", "k1", 1),
		strings.Replace(compact, `"use":"sig"`, `"use":"sig","d":"AAAA"`, 1),
	} {
		if _, err := export.Export(p, export.JWKS, export.Options{BundleKeys: []byte(bad)}); err == nil || !strings.Contains(err.Error(), "bundle") {
			t.Errorf("bundle keys %s: want a refusal, got %v", bad, err)
		}
	}
	for _, f := range []export.Format{export.TrustKit, export.IOS} {
		r, err := export.Export(p, f, export.Options{BundleKeys: jwks})
		if err != nil {
			t.Fatal(err)
		}
		root := parsePlist(t, r.Output).(map[string]any)
		if root["RampartPinBundleKeys"] != compact {
			t.Errorf("%s: RampartPinBundleKeys = %v", f, root["RampartPinBundleKeys"])
		}
	}
	for _, f := range []export.Format{export.Android, export.Curl, export.HPKP, export.JSON} {
		_, err := export.Export(p, f, export.Options{BundleKeys: jwks, Domain: "a.test"})
		if err == nil || !strings.Contains(err.Error(), "cannot carry bundle keys; export them with --format jwks") {
			t.Errorf("%s: err = %v", f, err)
		}
	}
	if _, err := export.Export(p, export.JWKS, export.Options{}); err == nil {
		t.Error("jwks without keys succeeded")
	}
	if _, err := export.Export(p, export.OkHTTP, export.Options{BundleKeys: []byte(`{"keys":[]}`)}); err == nil {
		t.Error("an empty JWKS was accepted")
	}
}

// The rampart-client file carries the whole policy, and refuses what its
// clients would refuse: a bundle URL that the policy does not enforce
// (the updater never fetches over an unpinned connection), a URL without
// keys or name, and rules that require SCTs.
func TestRampartClient(t *testing.T) {
	jwks := []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U","alg":"ES256","use":"sig"}]}`)
	p := loadPolicy(t)
	ok := export.Options{BundleKeys: jwks, BundleURL: "https://api.example.com/v1/bundles/mobile", BundleName: "mobile", Now: now}
	r, err := export.Export(p, export.RampartClient, ok)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Format     string          `json:"format"`
		Policy     json.RawMessage `json:"policy"`
		BundleURL  string          `json:"bundle_url"`
		BundleKeys json.RawMessage `json:"bundle_keys"`
	}
	if err := json.Unmarshal(r.Output, &doc); err != nil {
		t.Fatal(err)
	}
	back, err := pin.ParsePolicy(doc.Policy)
	if err != nil {
		t.Fatalf("the exported policy does not parse: %v", err)
	}
	if len(back.Domains()) != len(p.Domains()) || doc.Format != "rampart-client/1" || doc.BundleURL != ok.BundleURL || len(doc.BundleKeys) == 0 {
		t.Errorf("export lost something: %s", r.Output)
	}
	for name, tc := range map[string]struct {
		o    func(*export.Options)
		want string
	}{
		"unpinned host":     {func(o *export.Options) { o.BundleURL = "https://cp.example.net/v1/bundles/mobile" }, "has no rule for cp.example.net"},
		"report-only host":  {func(o *export.Options) { o.BundleURL = "https://beta.example.com/b" }, "is report-only"},
		"expired host rule": {func(o *export.Options) { o.Now = time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC) }, "has expired"},
		"http":              {func(o *export.Options) { o.BundleURL = "http://api.example.com/b" }, "want an https URL"},
		"no keys":           {func(o *export.Options) { o.BundleKeys = nil }, "--bundle-key"},
		"no name":           {func(o *export.Options) { o.BundleName = "" }, "--bundle-name"},
		"name without url":  {func(o *export.Options) { o.BundleURL = "" }, "need the bundle URL"},
		"negative version":  {func(o *export.Options) { o.MinVersion = -1 }, "want 0 or more"},
	} {
		o := ok
		tc.o(&o)
		if _, err := export.Export(p, export.RampartClient, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", name, err, tc.want)
		}
	}
	if _, err := export.Export(p, export.OkHTTP, export.Options{BundleURL: ok.BundleURL}); err == nil {
		t.Error("okhttp took a bundle URL")
	}
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	var logs []pin.CTLog
	for _, op := range []string{"A", "B"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, pin.CTLog{KeyDER: der, Operator: op})
	}
	sct, err := pin.NewPolicyWithCTLogs("", logs, pin.Domain{Name: "a.test", Pins: []pin.Pin{a, b}, RequireSCTs: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export.Export(sct, export.RampartClient, export.Options{}); err == nil || !strings.Contains(err.Error(), "require_scts") {
		t.Errorf("require_scts: err = %v", err)
	}
}
