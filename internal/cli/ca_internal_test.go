package cli

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/mtls"
)

// The commands that use the issuing CA warn 30 days before it expires,
// and say what to run.
func TestCAExpiryNote(t *testing.T) {
	now := time.Now()
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	for _, tc := range []struct {
		name string
		made time.Time // when the CA was made; its issuing CA lasts a year
		want string
	}{
		{"new", now, ""},
		{"31 days left", now.Add(-mtls.IssuingLifetime + 31*24*time.Hour), ""},
		{"29 days left", now.Add(-mtls.IssuingLifetime + 29*24*time.Hour), "expires on "},
		{"expired", now.Add(-mtls.IssuingLifetime - time.Hour), "expired on "},
	} {
		ca, _, err := mtls.NewCA(td, tc.made)
		if err != nil {
			t.Fatal(err)
		}
		got := caExpiryNote(ca, now)
		if tc.want == "" && got != "" || tc.want != "" && (!strings.Contains(got, tc.want) || !strings.Contains(got, "rampart ca rotate --root-key FILE")) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The renewal URL is the control plane's, over https, at caRenewPath,
// whatever path it was given; anything else is refused.
func TestRenewalURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://cp.pay.internal:8443":                       "https://cp.pay.internal:8443/v1/certificates/renew",
		"https://cp.pay.internal:8443/":                      "https://cp.pay.internal:8443/v1/certificates/renew",
		"https://cp.pay.internal/rampart/":                   "https://cp.pay.internal/rampart/v1/certificates/renew",
		"https://cp.pay.internal:8443/v1/certificates/renew": "https://cp.pay.internal:8443/v1/certificates/renew",
		"https://[::1]:8443":                                 "https://[::1]:8443/v1/certificates/renew",
	} {
		if got, err := renewalURL(in); err != nil || got != want {
			t.Errorf("renewalURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"http://cp:8443", "cp.pay.internal:8443", "https://", "https://u:p@cp", "https://cp/?x=1", "https://cp/#f", "%zz"} {
		if got, err := renewalURL(in); err == nil {
			t.Errorf("renewalURL(%q) = %q, want an error", in, got)
		}
	}
}

func FuzzRenewalURL(f *testing.F) {
	for _, s := range []string{"https://cp.pay.internal:8443", "https://cp/x/", "http://cp", "https://[::1]:1/v1/certificates/renew"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := renewalURL(s)
		if err != nil {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !strings.HasSuffix(u.Path, caRenewPath) {
			t.Fatalf("renewalURL(%q) = %q (%v)", s, got, err)
		}
	})
}
