package signedct_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/internal/util/signedct"
)

func ds(hash, alg byte, sig []byte) []byte {
	return append([]byte{hash, alg, byte(len(sig) >> 8), byte(len(sig))}, sig...)
}

// TestVerify: RFC 6962 §2.1.4's two algorithms verify; anything else in
// the DigitallySigned struct (RFC 5246 §4.7) is refused.
func TestVerify(t *testing.T) {
	msg := []byte("tree head")
	d := sha256.Sum256(msg)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSig, _ := ecdsa.SignASN1(rand.Reader, ec, d[:])
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaSig, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, d[:])
	if err := signedct.Verify(&ec.PublicKey, msg, ds(4, 3, ecSig)); err != nil {
		t.Errorf("ECDSA: %v", err)
	}
	if err := signedct.Verify(&rk.PublicKey, msg, ds(4, 1, rsaSig)); err != nil {
		t.Errorf("RSA: %v", err)
	}
	for name, c := range map[string]struct {
		key crypto.PublicKey
		msg []byte
		ds  []byte
	}{
		"other message":            {&ec.PublicKey, []byte("tree head!"), ds(4, 3, ecSig)},
		"SHA-1":                    {&ec.PublicKey, msg, ds(2, 3, ecSig)},
		"RSA algorithm, EC key":    {&ec.PublicKey, msg, ds(4, 1, ecSig)},
		"ECDSA algorithm, RSA key": {&rk.PublicKey, msg, ds(4, 3, rsaSig)},
		"truncated":                {&ec.PublicKey, msg, ds(4, 3, ecSig)[:10]},
		"trailing byte":            {&ec.PublicKey, msg, append(ds(4, 3, ecSig), 0)},
		"empty":                    {&ec.PublicKey, msg, nil},
	} {
		if err := signedct.Verify(c.key, c.msg, c.ds); !errors.Is(err, signedct.ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der := func(k crypto.PublicKey) []byte { b, _ := x509.MarshalPKIXPublicKey(k); return b }
	if _, err := signedct.ParseKey(der(&p256.PublicKey)); err != nil {
		t.Error(err)
	}
	for name, b := range map[string][]byte{"P-384": der(&p384.PublicKey), "RSA 1024": der(&small.PublicKey), "junk": []byte("x")} {
		if _, err := signedct.ParseKey(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// FuzzSCTList: an SCT list parses into SCTs whose signatures are whole
// DigitallySigned structs of the input, or fails with ErrSCT.
func FuzzSCTList(f *testing.F) {
	one := append([]byte{0}, make([]byte, 32+8)...)
	one = append(one, 0, 0, 4, 3, 0, 2, 0xaa, 0xbb)
	f.Add(append([]byte{0, byte(len(one) + 2), 0, byte(len(one))}, one...))
	f.Fuzz(func(t *testing.T, b []byte) {
		scts, err := signedct.ParseSCTList(b)
		if err != nil {
			if !errors.Is(err, signedct.ErrSCT) {
				t.Fatalf("%v is not ErrSCT", err)
			}
			return
		}
		for _, s := range scts {
			if len(s.Signature) < 4 || int(s.Signature[2])<<8|int(s.Signature[3]) != len(s.Signature)-4 {
				t.Fatalf("signature %x is not one DigitallySigned", s.Signature)
			}
		}
	})
}

// TestRemoveExtension: only the named extension goes; bytes hidden after
// the extensions are refused rather than dropped from what SCTs cover.
func TestRemoveExtension(t *testing.T) {
	ext := func(oid asn1.ObjectIdentifier) []byte {
		b, _ := asn1.Marshal(struct {
			ID    asn1.ObjectIdentifier
			Value []byte
		}{oid, []byte{0x05, 0x00}})
		return b
	}
	keep := ext(asn1.ObjectIdentifier{2, 5, 29, 17})
	sct := ext(signedct.OIDSCTList)
	tbs := func(extsContent []byte, extra ...byte) []byte {
		seq, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, Class: asn1.ClassUniversal, IsCompound: true, Bytes: extsContent})
		wrapped, _ := asn1.Marshal(asn1.RawValue{Tag: 3, Class: asn1.ClassContextSpecific, IsCompound: true, Bytes: append(seq, extra...)})
		body := append([]byte{0x02, 0x01, 0x01}, wrapped...)
		out, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, Class: asn1.ClassUniversal, IsCompound: true, Bytes: body})
		return out
	}
	got, err := signedct.RemoveExtension(tbs(append(append([]byte{}, keep...), sct...)), signedct.OIDSCTList)
	if err != nil || string(got) != string(tbs(keep)) {
		t.Errorf("removing the SCT list: %x, %v", got, err)
	}
	if got, _ := signedct.RemoveExtension(tbs(sct), signedct.OIDSCTList); string(got) != string([]byte{0x30, 0x03, 0x02, 0x01, 0x01}) {
		t.Errorf("the last extension removed: %x", got)
	}
	if _, err := signedct.RemoveExtension(tbs(keep, 0x00), signedct.OIDSCTList); err == nil {
		t.Error("bytes after the extensions were accepted")
	}
}
