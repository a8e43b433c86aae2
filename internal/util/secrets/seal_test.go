package secrets

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	m := &Master{key: bytes.Repeat([]byte{7}, 32)}
	kek, other := m.Key(SigningKeyKEK), m.Key(CAKeyKEK)
	secret := []byte("-----BEGIN PRIVATE KEY-----")
	s1, err := Seal(kek, "label", secret)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := Seal(kek, "label", secret)
	if bytes.Equal(s1, s2) || bytes.Contains(s1, secret) {
		t.Fatal("sealing is deterministic or leaks the plaintext")
	}
	if got, err := Open(kek, "label", s1); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := bytes.Clone(s1)
	tampered[len(tampered)/2] ^= 1
	for name, f := range map[string]func() ([]byte, error){
		"other key":   func() ([]byte, error) { return Open(other, "label", s1) },
		"other label": func() ([]byte, error) { return Open(kek, "label2", s1) },
		"tampered":    func() ([]byte, error) { return Open(kek, "label", tampered) },
		"truncated":   func() ([]byte, error) { return Open(kek, "label", s1[:20]) },
		"empty":       func() ([]byte, error) { return Open(kek, "label", nil) },
	} {
		if _, err := f(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
	if _, err := Seal(kek[:16], "label", secret); err == nil {
		t.Error("a 16-byte key was accepted")
	}
}

// Whatever the input, Open never returns plaintext for something Seal did
// not make under that key and label.
func FuzzOpen(f *testing.F) {
	kek := bytes.Repeat([]byte{1}, 32)
	s, _ := Seal(kek, "l", []byte("secret"))
	f.Add(s, "l")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, data []byte, label string) {
		out, err := Open(kek, label, data)
		if err == nil && !(label == "l" && bytes.Equal(data, s) && string(out) == "secret") {
			t.Fatalf("opened a forgery: %q", out)
		}
	})
}
