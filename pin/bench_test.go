package pin_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// BenchmarkHandshake measures full TLS handshakes (no resumption) against
// one local server with identical client configs, pinned or not. Compare
// the two with:
//
//	go test -run '^$' -bench Handshake -count 10 ./pin | tee h.txt
//	benchstat -filter .name:Handshake -row .name -col .fullname h.txt
func BenchmarkHandshake(b *testing.B) {
	w := newWorld(b)
	addr := tlsServer(b, &tls.Config{Certificates: []tls.Certificate{w.leaf.TLS()}}, func(c *tls.Conn) { c.Handshake() })
	base := &tls.Config{RootCAs: w.pool, ServerName: host}
	v := pin.NewVerifier(mustPolicy(b, pin.Domain{Name: host, Pins: []pin.Pin{w.backupPin, spki(w.leaf)}}))
	ctx := context.Background()

	b.Run("unpinned", func(b *testing.B) {
		b.ReportAllocs()
		d := &tls.Dialer{Config: base}
		for b.Loop() {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("pinned", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := v.DialContext(ctx, "tcp", addr, base)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}

// BenchmarkVerify measures the pin check alone, as crypto/tls calls it,
// for a 3-certificate verified chain (RSA-2048 leaf, ECDSA intermediate
// and root). The pin sits at the given position, so "match=root" and
// "mismatch" look at every certificate.
func BenchmarkVerify(b *testing.B) {
	root := testpki.NewRoot(b, "Bench Root")
	inter := root.NewIntermediate(b, "Bench Intermediate")
	leaf := inter.Issue(b, testpki.LeafOptions{DNSNames: []string{host}, KeyType: testpki.RSA2048})
	chain := []*x509.Certificate{leaf.Cert, inter.Cert, root.Cert}
	cs := tls.ConnectionState{
		ServerName:       host,
		PeerCertificates: chain[:2],
		VerifiedChains:   [][]*x509.Certificate{chain},
	}
	other := pin.FromSPKI([]byte("backup"))
	for _, bc := range []struct {
		name string
		pins []pin.Pin
	}{
		{"match=leaf", []pin.Pin{other, pin.FromCertificate(leaf.Cert)}},
		{"match=root", []pin.Pin{other, pin.FromCertificate(root.Cert)}},
		{"match=root-cert-pin", []pin.Pin{other, pin.Fingerprint(root.Cert)}},
		{"match=none-report-only", []pin.Pin{other, pin.FromSPKI([]byte("x"))}},
	} {
		mode := pin.Enforce
		if bc.name == "match=none-report-only" {
			mode = pin.ReportOnly
		}
		v := pin.NewVerifier(mustPolicy(b, pin.Domain{Name: host, Mode: mode, Pins: bc.pins}))
		v.Now = func() time.Time { return time.Time{} }
		cfg, err := v.TLSConfig(nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := cfg.VerifyConnection(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
