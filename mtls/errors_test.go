package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The package's errors are *Error: a program shows their Description
// under its own name, and a server to its client, without cutting the
// package's prefix out of a message; errors.Is still sees what they wrap.
func TestErrorDescription(t *testing.T) {
	now := time.Now()
	ca, _, err := NewCA(spiffeid.RequireTrustDomainFromString("pay.internal"), now)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err = ca.Issue(spiffeid.RequireFromString("spiffe://pay.internal"), nil, time.Hour, key.Public(), now)
	e, ok := err.(*Error)
	if !ok || e.Description != "spiffe://pay.internal names the trust domain, not a workload" || err.Error() != "mtls: "+e.Description {
		t.Fatalf("Issue for the trust domain: %#v", err)
	}
	_, err = ca.Issue(spiffeid.RequireFromString("spiffe://bank.internal/x"), nil, time.Hour, key.Public(), now)
	if !errors.Is(err, ErrOutsideTrustDomain) {
		t.Fatalf("Issue outside the trust domain: %v, want ErrOutsideTrustDomain", err)
	}
	_, err = LoadBundles("/nonexistent/roots.pem")
	if e, ok := err.(*Error); !ok || !errors.Is(err, os.ErrNotExist) || describe(err) != e.Description {
		t.Fatalf("LoadBundles of no file: %#v, want an *Error wrapping fs.ErrNotExist", err)
	}
	if d := describe(errors.New("x509: bad")); d != "x509: bad" {
		t.Fatalf("describe of a foreign error: %q", d)
	}
}
