package ct_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
)

// tileLeaf encodes a static-ct-api TileLeaf for a certificate entry.
func tileLeaf(cert []byte, chain ...[32]byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, 1767225600000)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = append(b, byte(len(cert)>>16), byte(len(cert)>>8), byte(len(cert)))
	b = append(b, cert...)
	b = append(b, 0, 8, 0, 0, 5, 0, 0, 0, 0, 1) // extensions: leaf_index 1
	b = binary.BigEndian.AppendUint16(b, uint16(32*len(chain)))
	for _, fp := range chain {
		b = append(b, fp[:]...)
	}
	return b
}

// FuzzDataTile: a data tile parses into exactly the entries it claims or
// fails with ErrEntry; each entry's certificate lies inside the tile and
// its fingerprints come in whole hashes.
func FuzzDataTile(f *testing.F) {
	ca := testpki.NewRoot(f, "Fuzz CA")
	cert := ca.Issue(f, testpki.LeafOptions{DNSNames: []string{"api.pay.example"}}).Cert.Raw
	one := tileLeaf(cert, sha256.Sum256(ca.Cert.Raw))
	f.Add(one, 1)
	f.Add(append(slices.Clone(one), one...), 2)
	f.Add(one[:len(one)-5], 1)
	f.Fuzz(func(t *testing.T, data []byte, want int) {
		if want < 0 || want > 256 {
			return
		}
		entries, err := ct.ParseDataTile(data, 1000, want)
		if err != nil {
			if !strings.Contains(err.Error(), ct.ErrEntry.Error()) {
				t.Fatalf("error %v does not say the entry is malformed", err)
			}
			return
		}
		if len(entries) != want {
			t.Fatalf("%d entries, want %d", len(entries), want)
		}
		for i, e := range entries {
			if e.Index != 1000+int64(i) || !bytes.Contains(data, e.Cert) || len(e.Cert) == 0 {
				t.Fatalf("entry %d: index %d, certificate of %d bytes not in the tile", i, e.Index, len(e.Cert))
			}
		}
	})
}

// FuzzLeafInput: an RFC 6962 leaf and its extra data parse or fail with
// ErrEntry; the leaf hash is the RFC 6962 §2.1 leaf hash of the input.
func FuzzLeafInput(f *testing.F) {
	leaf := append([]byte{0, 0}, tileLeaf([]byte{0x30, 0x00})[:8+2+3+2+2]...)
	f.Add(leaf, []byte{0, 0, 0})
	f.Add(leaf, []byte{0, 0, 4, 0, 0, 1, 0xaa})
	f.Fuzz(func(t *testing.T, leaf, extra []byte) {
		e, err := ct.ParseLeafInput(leaf, extra)
		if err != nil {
			if !strings.Contains(err.Error(), ct.ErrEntry.Error()) {
				t.Fatalf("error %v does not say the entry is malformed", err)
			}
			return
		}
		if e.LeafHash != sha256.Sum256(append([]byte{0}, leaf...)) {
			t.Fatal("the leaf hash is not SHA-256(0x00 || leaf)")
		}
		if len(e.Chain) != len(e.ChainFingerprints) {
			t.Fatal("chain and fingerprints differ in length")
		}
	})
}

// FuzzLogList: a log list parses or fails with ErrLogList; every log it
// accepts has the ID of its key, a base URL ending in a slash, and the
// URLs of its kind.
func FuzzLogList(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	f.Add(logListDoc([]map[string]any{logEntry(der, nil)}, nil))
	f.Add(logListDoc(nil, []map[string]any{tiledEntry(der, nil)}))
	f.Add([]byte(`{"operators":[{"logs":[{}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		logs, err := ct.ParseLogList(data)
		if err != nil {
			if !strings.Contains(err.Error(), ct.ErrLogList.Error()) {
				t.Fatalf("error %v is not a log list error", err)
			}
			return
		}
		for _, l := range logs {
			pub, err := x509.MarshalPKIXPublicKey(l.Key)
			if err != nil || sha256.Sum256(pub) != l.ID {
				t.Fatalf("log %q: its ID is not its key's", l.Description)
			}
			if !strings.HasSuffix(l.URL, "/") || (l.Tiled != (l.SubmissionURL != "")) {
				t.Fatalf("log %q: URL %q, submission %q", l.Description, l.URL, l.SubmissionURL)
			}
		}
	})
}

// FuzzCheckpoint: whatever a mutated checkpoint says, it verifies only
// with the size and root the log signed.
func FuzzCheckpoint(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	logs, err := ct.ParseLogList(logListDoc(nil, []map[string]any{tiledEntry(der, nil)}))
	if err != nil {
		f.Fatal(err)
	}
	l := &logs[0]
	root := sha256.Sum256([]byte("root"))
	f.Add(ctlog.SignCheckpoint(f, key, l.Origin(), 42, root))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := l.VerifyCheckpoint(data)
		if err != nil {
			return
		}
		if h.Size != 42 || h.Root != root {
			t.Fatalf("a checkpoint verified with size %d and root %x", h.Size, h.Root)
		}
	})
}

// FuzzCertificate: the lenient walker reads every certificate
// crypto/x509 reads, with the same key and at least its DNS names; on
// anything else it fails with ErrCertificate or reads what it can.
func FuzzCertificate(f *testing.F) {
	ca := testpki.NewRoot(f, "Fuzz CA")
	f.Add(ca.Issue(f, testpki.LeafOptions{DNSNames: []string{"api.pay.example", "*.pay.example"}}).Cert.Raw)
	f.Add(ca.Cert.Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ct.ParseCertificate(der)
		if err != nil && !strings.Contains(err.Error(), ct.ErrCertificate.Error()) {
			t.Fatalf("error %v is not ErrCertificate", err)
		}
		x, xerr := x509.ParseCertificate(der)
		if xerr != nil {
			return
		}
		if c == nil {
			t.Fatalf("crypto/x509 reads it, the walker does not: %v", err)
		}
		if !bytes.Equal(c.SPKI, x.RawSubjectPublicKeyInfo) {
			t.Fatal("a different key")
		}
		for _, n := range x.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if n != "" && !slices.Contains(c.DNSNames, n) {
				t.Fatalf("name %q missed (read %q)", n, c.DNSNames)
			}
		}
	})
}
