package demo

import (
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
	"github.com/rampartsec/rampart/mtls"
)

// The demo's payment API answers ambiguously framed requests once and
// closes the connection (issue 10 §1, RFC 9112 §6.1), before mutual TLS
// and credentials are looked at, over raw sockets; a request without a
// body keeps its connection.
func TestPaymentAPIFraming(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	ca, _, err := mtls.NewCA(td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := mtls.NewBundle(td, ca.Root)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newPaymentAPI(spiffeid.RequireFromPath(td, "/gateway"), bundle)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dial := func() (net.Conn, error) { return net.Dial("tcp", srv.Listener.Addr().String()) }
	httpxtest.Check(t, dial, "/v1/payments")
	httpxtest.KeepAlive(t, dial, "/v1/payments")
}
