package cli_test

import (
	"net"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
)

// rampart serve answers every ambiguously framed request once and closes
// the connection (issue 10 §1, RFC 9112 §6.1), over raw sockets, on the
// token endpoint and a bodiless path alike.
func TestServeFraming(t *testing.T) {
	_, base := startServe(t, t.TempDir())
	addr := strings.TrimPrefix(base, "http://")
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
	httpxtest.Check(t, dial, "/oauth2/token")
	httpxtest.KeepAlive(t, dial, "/healthz")
}
