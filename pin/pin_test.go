package pin_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// RFC 7469 §2.4: the SPKI fingerprint is the base64 of SHA-256 over the DER
// SubjectPublicKeyInfo. openssl is the oracle.
func TestPinMatchesOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	ca := testpki.NewRoot(t, "Oracle Root")
	for _, kt := range []testpki.KeyType{testpki.ECDSAP256, testpki.ECDSAP384, testpki.RSA2048, testpki.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			leaf := ca.Issue(t, testpki.LeafOptions{KeyType: kt})
			file := filepath.Join(dir, string(kt)+".pem")
			if err := os.WriteFile(file, testpki.CertPEM(leaf.Cert), 0o600); err != nil {
				t.Fatal(err)
			}
			pub, err := exec.Command(openssl, "x509", "-in", file, "-pubkey", "-noout").Output()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(openssl, "pkey", "-pubin", "-outform", "der")
			cmd.Stdin = bytes.NewReader(pub)
			der, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(der)
			want := "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
			if got := pin.FromCertificate(leaf.Cert).String(); got != want {
				t.Errorf("FromCertificate = %s, openssl says %s", got, want)
			}
			fromKey, err := pin.FromPrivateKey(leaf.Key)
			if err != nil || fromKey.String() != want {
				t.Errorf("FromPrivateKey = %v (%v), want %s", fromKey, err, want)
			}
			fromPub, err := pin.FromPublicKey(leaf.Key.Public())
			if err != nil || fromPub.String() != want {
				t.Errorf("FromPublicKey = %v (%v), want %s", fromPub, err, want)
			}
			if got := pin.FromCSR(testpki.CSR(t, leaf.Key, "x.test")).String(); got != want {
				t.Errorf("FromCSR = %s, want %s", got, want)
			}
			fp, err := exec.Command(openssl, "x509", "-in", file, "-noout", "-fingerprint", "-sha256").Output()
			if err != nil {
				t.Fatal(err)
			}
			// "sha256 Fingerprint=AB:CD:..." (the prefix's case varies by version)
			colon := strings.TrimSpace(string(fp[bytes.IndexByte(fp, '=')+1:]))
			p, err := pin.Parse("cert-sha256:" + colon)
			if err != nil {
				t.Fatal(err)
			}
			if p != pin.Fingerprint(leaf.Cert) {
				t.Errorf("Fingerprint = %s, openssl says %s", pin.Fingerprint(leaf.Cert), colon)
			}
		})
	}
}

func TestParse(t *testing.T) {
	digest := sha256.Sum256([]byte("key"))
	b64 := base64.StdEncoding.EncodeToString(digest[:])
	hx := hex.EncodeToString(digest[:])
	for _, tc := range []struct {
		in   string
		kind pin.Kind
		err  error
	}{
		{"sha256/" + b64, pin.SPKI, nil},
		{"cert-sha256:" + hx, pin.Cert, nil},
		{"cert-sha256:" + strings.ToUpper(hx), pin.Cert, nil},
		{"cert-sha256:" + colons(strings.ToUpper(hx)), pin.Cert, nil},
		{"", 0, pin.ErrPrefix},
		{b64, 0, pin.ErrPrefix},
		{"sha1/" + b64, 0, pin.ErrPrefix},
		{"SHA256/" + b64, 0, pin.ErrPrefix},
		{`pin-sha256="` + b64 + `"`, 0, pin.ErrPrefix},
		{"sha256/" + b64[:43] + "!", 0, pin.ErrEncoding},
		{"sha256/" + b64[:20] + "\n" + b64[20:], 0, pin.ErrEncoding},
		{"sha256/" + base64.RawStdEncoding.EncodeToString(digest[:]), 0, pin.ErrEncoding},
		{"sha256/" + base64.URLEncoding.EncodeToString(digest[:]), 0, pin.ErrEncoding},
		{"sha256/" + hx, 0, pin.ErrLength},
		{"sha256/" + base64.StdEncoding.EncodeToString(digest[:20]), 0, pin.ErrLength},
		{"sha256/" + base64.StdEncoding.EncodeToString(append(digest[:], 0)), 0, pin.ErrLength},
		{"sha256/", 0, pin.ErrLength},
		{"cert-sha256:" + hx[:62], 0, pin.ErrLength},
		{"cert-sha256:" + hx + "00", 0, pin.ErrLength},
		{"cert-sha256:" + hx[:63] + "g", 0, pin.ErrEncoding},
		{"cert-sha256:" + colons(hx)[1:], 0, pin.ErrEncoding},
		{"cert-sha256:" + b64, 0, pin.ErrEncoding},
	} {
		p, err := pin.Parse(tc.in)
		if tc.err != nil {
			var pe *pin.ParseError
			if !errors.Is(err, tc.err) || !errors.As(err, &pe) {
				t.Errorf("Parse(%q) = %v, %v; want a *ParseError wrapping %v", tc.in, p, err, tc.err)
			}
			continue
		}
		if err != nil || p.Kind() != tc.kind || p.Digest() != digest {
			t.Errorf("Parse(%q) = %v (kind %v), %v; want kind %v", tc.in, p, p.Kind(), err, tc.kind)
		}
	}
}

func TestParseHints(t *testing.T) {
	digest := sha256.Sum256([]byte("key"))
	_, err := pin.Parse("sha256/" + hex.EncodeToString(digest[:]))
	if err == nil || !strings.Contains(err.Error(), "cert-sha256:") {
		t.Errorf("a hex digest after sha256/ should point to the cert-sha256: form; got %v", err)
	}
	long := "sha256/" + strings.Repeat("A", 10000)
	if _, err := pin.Parse(long); err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a 10 kB pin is %d bytes; it should quote a truncated input", len(err.Error()))
	}
}

func colons(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func TestPinTextRoundTrip(t *testing.T) {
	p := pin.FromSPKI([]byte("spki"))
	text, err := p.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var q pin.Pin
	if err := q.UnmarshalText(text); err != nil || q != p {
		t.Fatalf("round trip: %v, %v", q, err)
	}
	if _, err := (pin.Pin{}).MarshalText(); err == nil {
		t.Error("the zero Pin marshaled")
	}
	if !(pin.Pin{}).IsZero() || p.IsZero() {
		t.Error("IsZero wrong")
	}
}

// FuzzParse: Parse never panics, every error is a *ParseError wrapping one of
// the three sentinels, and every accepted pin round-trips through its
// canonical form.
func FuzzParse(f *testing.F) {
	d := sha256.Sum256(nil)
	f.Add("sha256/" + base64.StdEncoding.EncodeToString(d[:]))
	f.Add("cert-sha256:" + hex.EncodeToString(d[:]))
	f.Add("cert-sha256:" + colons(hex.EncodeToString(d[:])))
	f.Add("sha256/" + hex.EncodeToString(d[:]))
	f.Add("sha256/AAAA\nAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := pin.Parse(s)
		if err != nil {
			var pe *pin.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): error %v is not a *ParseError", s, err)
			}
			if !errors.Is(err, pin.ErrPrefix) && !errors.Is(err, pin.ErrEncoding) && !errors.Is(err, pin.ErrLength) {
				t.Fatalf("Parse(%q): error %v wraps no sentinel", s, err)
			}
			return
		}
		if p.IsZero() {
			t.Fatalf("Parse(%q) returned the zero Pin without error", s)
		}
		q, err := pin.Parse(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip of %q via %q: %v, %v", s, p.String(), q, err)
		}
		if p.Kind() == pin.SPKI && p.String() != s {
			t.Fatalf("SPKI pin %q accepted in non-canonical form (canonical %q)", s, p.String())
		}
	})
}

// A truncated or mistyped base64 pin is not called hex because its few
// characters happen to be hex digits; the hint says what a pin looks like.
func TestParseHintTruncatedBase64(t *testing.T) {
	for _, s := range []string{"sha256/abc", "sha256/ABCDEF12", "sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8", "sha256/ZeNsopu/RkB"} {
		_, err := pin.Parse(s)
		if err == nil || strings.Contains(err.Error(), "hex") || !strings.Contains(err.Error(), "44 characters") {
			t.Errorf("Parse(%q): %v; want a hint about the 44-character base64 form, not hex", s, err)
		}
	}
}
