package cli

import (
	"net/url"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/app/controlplane"
)

// The renewal URL is the control plane's, over https, at controlplane.RenewPath,
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
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !strings.HasSuffix(u.Path, controlplane.RenewPath) {
			t.Fatalf("renewalURL(%q) = %q (%v)", s, got, err)
		}
	})
}
