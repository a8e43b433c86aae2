package payments_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
	"github.com/rampartsec/rampart/mtls"
)

// The payment service answers every ambiguously framed request once and
// closes the connection (issue 10 §1, RFC 9112 §6.1), over raw TLS
// connections from the gateway's certificate: a request smuggled past the
// gateway in a body is never read as a request.
func TestFraming(t *testing.T) {
	e := newEnv(t, nil)
	gw := e.issue(t, gatewayID, time.Now(), time.Hour)
	cfg := mtls.ClientConfig(mtls.NewStatic(gw), e.roots, serviceID)
	cfg.NextProtos = []string{"http/1.1"}
	addr := strings.TrimPrefix(e.srv.url, "https://")
	dial := func() (net.Conn, error) { return tls.Dial("tcp", addr, cfg) }
	httpxtest.Check(t, dial, "/v1/payments")
	httpxtest.KeepAlive(t, dial, "/v1/payments")
}
