package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// rampart pin check --parallel N connects to at most N servers at once,
// and does use the concurrency it is given.
func TestCheckParallelBound(t *testing.T) {
	const host = "api.payments.test"
	root := testpki.NewRoot(t, "Bound Root")
	leaf := root.NewIntermediate(t, "Bound Issuing CA").Issue(t, testpki.LeafOptions{DNSNames: []string{host}, NotAfter: time.Now().AddDate(1, 0, 0)})
	backup := pin.FromSPKI([]byte("backup"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var inFlight, peak atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(150 * time.Millisecond) // a slow server keeps the slot busy
				inFlight.Add(-1)
				tls.Server(c, &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}).Handshake()
			}()
		}
	}()

	dir := t.TempDir()
	roots := filepath.Join(dir, "roots.pem")
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(roots, testpki.CertPEM(root.Cert), 0o600)
	os.WriteFile(policy, fmt.Appendf(nil, "version: 1\ndomains:\n  - domain: %s\n    pins: [%s, %s]\n", host, pin.FromCertificate(leaf.Cert), backup), 0o600)

	for _, parallel := range []int{1, 3} {
		peak.Store(0)
		args := []string{"pin", "check", "--policy", policy, "--ca", roots, "--connect", ln.Addr().String(), "--parallel", fmt.Sprint(parallel)}
		for port := 1000; port < 1009; port++ {
			args = append(args, fmt.Sprintf("%s:%d", host, port))
		}
		var out, errOut bytes.Buffer
		if code := cli.Run(context.Background(), args, cli.Stdio{Out: &out, Err: &errOut}); code != cli.ExitOK {
			t.Fatalf("--parallel %d: exit %d\n%s%s", parallel, code, out.String(), errOut.String())
		}
		if got := peak.Load(); got != int32(parallel) {
			t.Errorf("--parallel %d: at most %d connections at once, want exactly %d", parallel, got, parallel)
		}
	}
}
