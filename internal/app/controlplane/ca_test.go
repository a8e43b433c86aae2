package controlplane

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/internal/util/secrets"
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
		got := CAExpiryNote(ca, now)
		if tc.want == "" && got != "" || tc.want != "" && (!strings.Contains(got, tc.want) || !strings.Contains(got, "rampart ca rotate --root-key FILE")) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The CA of testdata/ca-v1, made by rampart ca init of an earlier
// release under the master key 00 01 ... 1f, opens: its issuing key is
// sealed under that key's CA key KEK (internal/util/secrets' TestVectors).
func TestOpenCAOfAnEarlierRelease(t *testing.T) {
	t.Setenv(secrets.Env, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	m, err := secrets.Load(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := OpenCA(filepath.Join("testdata", "ca-v1", CADirName), m)
	if err != nil {
		t.Fatal(err)
	}
	if ca.TrustDomain.Name() != "pay.internal" {
		t.Errorf("trust domain %s", ca.TrustDomain)
	}
	id := spiffeid.RequireFromString("spiffe://pay.internal/ledger")
	chain, err := ca.Issue(id, nil, time.Hour, ca.Key.Public(), ca.Issuing.NotBefore.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)
	inter := x509.NewCertPool()
	inter.AddCert(ca.Issuing)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: chain[0].NotBefore.Add(time.Minute)}); err != nil {
		t.Errorf("a certificate issued with the unsealed key does not verify: %v", err)
	}
}

// InitCA writes a CA that OpenCA opens with the same master key and no
// other; a second InitCA overwrites nothing; RotateCA replaces the issuing
// CA, keeping the old certificate.
func TestInitOpenRotateCA(t *testing.T) {
	t.Setenv(secrets.Env, "")
	data := t.TempDir()
	m, err := secrets.Load(data, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, CADirName)
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	ca, rootKey, err := mtls.NewCA(td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := InitCA(dir, m, ca, rootKey); err != nil {
		t.Fatal(err)
	}
	if err := InitCA(dir, m, ca, rootKey); err == nil || !strings.Contains(err.Error(), "a CA exists already") {
		t.Errorf("second InitCA: %v", err)
	}
	got, err := OpenCA(dir, m)
	if err != nil || !got.Issuing.Equal(ca.Issuing) {
		t.Fatalf("OpenCA: %v", err)
	}
	other, err := secrets.Load(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCA(dir, other); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Errorf("OpenCA with another master key: %v", err)
	}
	next, err := ca.Rotate(rootKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	retired, err := RotateCA(dir, m, ca, next)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(retired); err != nil || string(data) != string(CertPEM(ca.Issuing)) {
		t.Errorf("retired certificate %s: %v", retired, err)
	}
	if got, err := OpenCA(dir, m); err != nil || !got.Issuing.Equal(next.Issuing) {
		t.Errorf("OpenCA after RotateCA: %v", err)
	}
}
