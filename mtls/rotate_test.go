package mtls

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// TestRotate: a new issuing CA under the same root, made with the root
// key alone; certificates of the old and the new one verify side by side,
// so services renew onto the new one at their own pace.
func TestRotate(t *testing.T) {
	now := time.Now().Truncate(time.Second) // X.509 times are whole seconds
	// The issuing CA made a year ago expires in five days.
	ca, rootKey, err := NewCA(td, now.Add(-IssuingLifetime+5*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(newKey(t), now); !errors.Is(err, ErrNotRootKey) {
		t.Errorf("another key: %v, want ErrNotRootKey", err)
	}
	if _, err := ca.Rotate(ca.Key, now); !errors.Is(err, ErrNotRootKey) {
		t.Errorf("the issuing key: %v, want ErrNotRootKey", err)
	}
	if _, err := ca.Rotate(nil, now); !errors.Is(err, ErrNotRootKey) {
		t.Errorf("no key: %v, want ErrNotRootKey", err)
	}

	oldIssuing := ca.Issuing
	next, err := ca.Rotate(rootKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Issuing != oldIssuing {
		t.Error("Rotate changed the CA it was called on")
	}
	i := next.Issuing
	if next.Root != ca.Root || next.TrustDomain != td || next.Key == ca.Key || i.Equal(oldIssuing) {
		t.Fatalf("the rotated CA: %+v", next)
	}
	if err := i.CheckSignatureFrom(ca.Root); err != nil {
		t.Errorf("the new issuing certificate is not signed by the root: %v", err)
	}
	if !i.IsCA || i.MaxPathLen != 0 || !i.MaxPathLenZero || len(i.PermittedURIDomains) != 1 || i.PermittedURIDomains[0] != td.Name() || !i.PermittedDNSDomainsCritical {
		t.Errorf("the new issuing certificate lost its constraints: IsCA=%v MaxPathLen=%d permitted URIs %v", i.IsCA, i.MaxPathLen, i.PermittedURIDomains)
	}
	if got := i.NotAfter.Sub(now); got != IssuingLifetime {
		t.Errorf("new issuing lifetime %v, want %v", got, IssuingLifetime)
	}

	// The old CA caps what it issues at its own expiry; the new one does
	// not, and both chains verify under the one root.
	oldChain, err := ca.Issue(ledger, nil, 30*24*time.Hour, newKey(t).Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if !oldChain[0].NotAfter.Equal(oldIssuing.NotAfter) {
		t.Errorf("the old CA issued until %v, past its own expiry %v", oldChain[0].NotAfter, oldIssuing.NotAfter)
	}
	newChain, err := next.Issue(ledger, nil, 30*24*time.Hour, newKey(t).Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if got := newChain[0].NotAfter.Sub(now); got != 30*24*time.Hour {
		t.Errorf("the new CA issued for %v, want 30 days", got)
	}
	for name, chain := range map[string][]*x509.Certificate{"old": oldChain, "new": newChain} {
		if err := verifyAt(t, ca, chain, now); err != nil {
			t.Errorf("%s chain: %v", name, err)
		}
	}
	// Past the old one's expiry only the new one issues.
	later := now.Add(6 * 24 * time.Hour)
	if _, err := ca.Issue(ledger, nil, time.Hour, newKey(t).Public(), later); !errors.Is(err, ErrCANotValid) {
		t.Errorf("the old CA after its expiry: %v, want ErrCANotValid", err)
	}
	if _, err := next.Issue(ledger, nil, time.Hour, newKey(t).Public(), later); err != nil {
		t.Errorf("the new CA: %v", err)
	}

	// Over mutual TLS, a server on the old CA's certificate and a client on
	// the new one's accept each other, with the root as their only trust.
	roots := mustBundle(t, td, ca.Root)
	srv := NewStatic(issue(t, ca, ledger, time.Hour, now))
	cli := NewStatic(issue(t, next, gateway, time.Hour, now))
	addr := lineServer(t, ServerConfig(srv, roots, gateway))
	if _, err := dialLine(addr, ClientConfig(cli, roots, ledger)); err != nil {
		t.Errorf("old server, new client: %v", err)
	}

	// Near the root's end, the issuing CA ends with it; after, there is
	// nothing to rotate.
	end := ca.Root.NotAfter
	last, err := ca.Rotate(rootKey, end.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !last.Issuing.NotAfter.Equal(end) {
		t.Errorf("an issuing CA made 30 days before the root expires ends %v, want with the root at %v", last.Issuing.NotAfter, end)
	}
	if _, err := ca.Rotate(rootKey, end.Add(time.Second)); err == nil {
		t.Error("rotated under an expired root")
	}
}
