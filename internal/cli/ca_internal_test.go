package cli

import (
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
