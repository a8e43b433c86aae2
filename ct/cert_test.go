package ct_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/pin"
)

// rawName is a DER Name with one common name of the given string type.
func rawName(tag cbasn1.Tag, cn []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{2, 5, 4, 3})
				b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(cn) })
			})
		})
	})
	return b.BytesOrPanic()
}

func sanExt(entries func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{2, 5, 29, 17})
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, entries)
		})
	})
	return b.BytesOrPanic()
}

// rawTBS builds a TBSCertificate by hand, to say what crypto/x509 would not.
func rawTBS(serial, subject, spki []byte, exts ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(serial) })
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
		})
		b.AddBytes(rawName(cbasn1.PrintableString, []byte("Some CA")))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1UTCTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			b.AddASN1GeneralizedTime(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		if len(exts) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range exts {
						b.AddBytes(e)
					}
				})
			})
		}
	})
	return b.BytesOrPanic()
}

func wrapCert(tbs []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
		})
		b.AddASN1BitString([]byte{0x30, 0x00})
	})
	return b.BytesOrPanic()
}

// TestLenientCertificates: certificates crypto/x509 refuses, or reads
// differently, are still read for their names and key — a monitor must
// not miss them.
func TestLenientCertificates(t *testing.T) {
	spki := keyDER(t, elliptic.P256())
	bmp := func(s string) []byte {
		var out []byte
		for _, u := range utf16.Encode([]rune(s)) {
			out = append(out, byte(u>>8), byte(u))
		}
		return out
	}
	for _, c := range []struct {
		name      string
		tbs       []byte
		names     []string
		ips       []netip.Addr
		wantErr   bool
		x509Fails bool
	}{
		{"negative serial", rawTBS([]byte{0xff, 0x01}, rawName(cbasn1.UTF8String, []byte("x")), spki,
			sanExt(func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("api.pay.example")) })
			})),
			[]string{"api.pay.example"}, nil, false, true},
		{"upper case and a trailing dot", rawTBS([]byte{1}, rawName(cbasn1.UTF8String, []byte("x")), spki,
			sanExt(func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("API.Pay.Example.")) })
			})),
			[]string{"api.pay.example"}, nil, false, false},
		{"common name only", rawTBS([]byte{1}, rawName(cbasn1.PrintableString, []byte("api.pay.example")), spki),
			[]string{"api.pay.example"}, nil, false, false},
		{"BMPString common name", rawTBS([]byte{1}, rawName(cbasn1.Tag(30), bmp("shop.pay.example")), spki),
			[]string{"shop.pay.example"}, nil, false, false},
		{"a person's common name", rawTBS([]byte{1}, rawName(cbasn1.UTF8String, []byte("Jane Doe")), spki), nil, nil, false, false},
		{"two common names: the last, as crypto/x509", rawTBS([]byte{1}, twoCNs("shop.pay.example", "api.pay.example"), spki),
			[]string{"api.pay.example"}, nil, false, false},
		{"IP address", rawTBS([]byte{1}, rawName(cbasn1.UTF8String, []byte("x")), spki,
			sanExt(func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{192, 0, 2, 7}) })
			})),
			nil, []netip.Addr{netip.MustParseAddr("192.0.2.7")}, false, false},
		{"malformed SAN, name in the common name", rawTBS([]byte{1}, rawName(cbasn1.UTF8String, []byte("api.pay.example")), spki,
			sanExt(func(b *cryptobyte.Builder) { b.AddBytes([]byte{0xff, 0xff}) })),
			[]string{"api.pay.example"}, nil, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, xerr := x509.ParseCertificate(wrapCert(c.tbs))
			if c.x509Fails && xerr == nil {
				t.Error("crypto/x509 reads it: the case shows nothing")
			}
			got, err := ct.ParseTBS(c.tbs)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v", err)
			}
			if err != nil && !errors.Is(err, ct.ErrCertificate) {
				t.Errorf("err %v is not ErrCertificate", err)
			}
			if got == nil {
				t.Fatal("nothing read")
			}
			if !slices.Equal(got.DNSNames, c.names) || !slices.Equal(got.IPAddresses, c.ips) {
				t.Errorf("names %q, IPs %v", got.DNSNames, got.IPAddresses)
			}
			if pin.FromSPKI(got.SPKI) != pin.FromSPKI(spki) {
				t.Error("the key was not read")
			}
			if got.NotBefore.Year() != 2026 || got.NotAfter.Month() != time.April || got.Issuer != "CN=Some CA" {
				t.Errorf("validity %v-%v, issuer %q", got.NotBefore, got.NotAfter, got.Issuer)
			}
			whole, err2 := ct.ParseCertificate(wrapCert(c.tbs))
			if (err2 != nil) != c.wantErr || whole == nil || whole.TBSHash != got.TBSHash {
				t.Errorf("the certificate reads differently from its TBS: %v", err2)
			}
		})
	}
	if _, err := ct.ParseTBS([]byte{0x30, 0x03, 0x02, 0x01}); !errors.Is(err, ct.ErrCertificate) {
		t.Errorf("a truncated TBS: %v", err)
	}
}

// TestValidityOutOfRange: a GeneralizedTime with an offset can fall in
// year 10000 once in UTC, which nothing can store or write as JSON: it
// reads as zero rather than stopping the monitor on that entry.
func TestValidityOutOfRange(t *testing.T) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes([]byte{1}) })
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
		})
		b.AddBytes(rawName(cbasn1.PrintableString, []byte("Some CA")))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1UTCTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte("99991231235959-2359")) })
		})
		b.AddBytes(rawName(cbasn1.UTF8String, []byte("api.pay.example")))
		b.AddBytes(keyDER(t, elliptic.P256()))
	})
	c, err := ct.ParseTBS(b.BytesOrPanic())
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.IsZero() || c.NotBefore.Year() != 2026 {
		t.Errorf("validity %v – %v", c.NotBefore, c.NotAfter)
	}
	f := &ct.Finding{Log: &ct.Log{}, Certificate: c, Timestamp: time.UnixMilli(1 << 62)}
	if _, err := f.MarshalJSON(); err != nil {
		t.Errorf("the finding cannot be written: %v", err)
	}
}

// twoCNs is a DER Name with two common names, in two RDNs.
func twoCNs(a, b string) []byte {
	var bl cryptobyte.Builder
	bl.AddASN1(cbasn1.SEQUENCE, func(bl *cryptobyte.Builder) {
		for _, cn := range []string{a, b} {
			bl.AddASN1(cbasn1.SET, func(bl *cryptobyte.Builder) {
				bl.AddASN1(cbasn1.SEQUENCE, func(bl *cryptobyte.Builder) {
					bl.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{2, 5, 4, 3})
					bl.AddASN1(cbasn1.UTF8String, func(bl *cryptobyte.Builder) { bl.AddBytes([]byte(cn)) })
				})
			})
		}
	})
	return bl.BytesOrPanic()
}
