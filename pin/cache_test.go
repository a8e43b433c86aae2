package pin

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testpki"
)

// BenchmarkSPKIDigest shows what the digest cache saves per certificate of
// a verified chain: an RSA-2048 SubjectPublicKeyInfo is 294 bytes to hash.
func BenchmarkSPKIDigest(b *testing.B) {
	leaf := testpki.NewRoot(b, "r").Issue(b, testpki.LeafOptions{KeyType: testpki.RSA2048})
	b.Run("cache=on", func(b *testing.B) {
		for b.Loop() {
			spkiDigests.get(leaf.Cert)
		}
	})
	b.Run("cache=off", func(b *testing.B) {
		for b.Loop() {
			sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo)
		}
	})
}

// The cache is keyed weakly: it must not keep certificates alive.
func TestDigestCacheReleasesCertificates(t *testing.T) {
	ca := testpki.NewRoot(t, "r")
	count := func() (n int) {
		spkiDigests.m.Range(func(any, any) bool { n++; return true })
		return n
	}
	before := count()
	for range 100 {
		leaf := ca.Issue(t, testpki.LeafOptions{})
		if got, want := *spkiDigests.get(leaf.Cert), sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo); got != want {
			t.Fatal("cached digest differs from the digest")
		}
	}
	if count() < before+100 {
		t.Fatalf("cache holds %d entries, want at least %d", count(), before+100)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count() > before+10 {
		if time.Now().After(deadline) {
			t.Fatalf("cache still holds %d entries after GC; it keeps certificates alive", count()-before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
