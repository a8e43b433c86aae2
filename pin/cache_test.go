package pin

import (
	"crypto/sha256"
	"crypto/x509"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/rampartsec/rampart/internal/testing/testpki"
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
	cached := func(certs []*x509.Certificate) (n int) {
		for _, c := range certs {
			if _, ok := spkiDigests.m.Load(weak.Make(c)); ok {
				n++
			}
		}
		return n
	}
	// While the certificates are alive, each has its entry (a collection
	// now may drop entries of other tests' certificates, never these).
	leaves := make([]*x509.Certificate, 100)
	for i := range leaves {
		leaves[i] = ca.Issue(t, testpki.LeafOptions{}).Cert
		if got, want := *spkiDigests.get(leaves[i]), sha256.Sum256(leaves[i].RawSubjectPublicKeyInfo); got != want {
			t.Fatal("cached digest differs from the digest")
		}
	}
	runtime.GC()
	if n := cached(leaves); n != len(leaves) {
		t.Fatalf("%d of %d live certificates have their entry", n, len(leaves))
	}
	// Once they are unreachable, their entries go: count the entries
	// left of the weak pointers, which do not keep them alive.
	keys := make([]weak.Pointer[x509.Certificate], len(leaves))
	for i, c := range leaves {
		keys[i] = weak.Make(c)
	}
	leaves = nil
	left := func() (n int) {
		for _, k := range keys {
			if _, ok := spkiDigests.m.Load(k); ok {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for left() > 10 {
		if time.Now().After(deadline) {
			t.Fatalf("cache still holds %d of 100 entries after GC; it keeps certificates alive", left())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
