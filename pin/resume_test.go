package pin_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// dialLine makes one connection with cfg, reads the server's line (which
// also processes TLS 1.3 session tickets) and reports whether it resumed.
func dialLine(t *testing.T, v *pin.Verifier, addr string, cfg *tls.Config) (resumed bool, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c *tls.Conn
	if v != nil {
		c, err = v.DialContext(ctx, "tcp", addr, cfg)
	} else {
		var nc net.Conn
		nc, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c = nc.(*tls.Conn)
		}
	}
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("reading from server: %v", err)
	}
	return c.ConnectionState().DidResume, nil
}

// The pin check runs in VerifyConnection, which crypto/tls calls on resumed
// sessions too (VerifyPeerCertificate is not). A session resumed after the
// pins changed is refused: RFC 7469 §2.6 — pin validation applies to every
// connection, and a resumed session carries its original verified chain.
func TestResumedSessionRefusedAfterPinChange(t *testing.T) {
	for _, tv := range versions {
		t.Run(tv.name, func(t *testing.T) {
			w := newWorld(t)
			addr := lineServer(t, w.leaf.TLS(), tv.v)
			good := mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}})
			bad := mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}})
			v := pin.NewVerifier(good)
			cfg, err := v.TLSConfig(&tls.Config{RootCAs: w.pool, ServerName: host})
			if err != nil {
				t.Fatal(err)
			}
			// A cache shared behind the verifier's back, so that its
			// invalidation on SetPolicy does not apply and the session
			// really is resumed under the new pins.
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			hook := cfg.VerifyConnection
			var sawResumed []bool
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				sawResumed = append(sawResumed, cs.DidResume)
				return hook(cs)
			}

			if resumed, err := dialLine(t, nil, addr, cfg); err != nil || resumed {
				t.Fatalf("first connection: resumed=%v err=%v, want a full handshake", resumed, err)
			}
			if resumed, err := dialLine(t, nil, addr, cfg); err != nil || !resumed {
				t.Fatalf("second connection: resumed=%v err=%v, want a resumed session", resumed, err)
			}
			v.SetPolicy(bad)
			_, err = dialLine(t, nil, addr, cfg)
			mismatch(t, err)
			if len(sawResumed) != 3 || !sawResumed[2] {
				t.Fatalf("hook calls saw DidResume = %v, want the refused third connection to be a resumption", sawResumed)
			}
		})
	}
}

// SetPolicy invalidates the session cache of configs the verifier made:
// the first connection under a new policy is a full handshake.
func TestSetPolicyInvalidatesSessionCache(t *testing.T) {
	for _, tv := range versions {
		t.Run(tv.name, func(t *testing.T) {
			w := newWorld(t)
			addr := lineServer(t, w.leaf.TLS(), tv.v)
			pins := []pin.Pin{spki(w.leaf), w.backupPin}
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: pins}))
			base := &tls.Config{RootCAs: w.pool, ServerName: host, ClientSessionCache: tls.NewLRUClientSessionCache(8)}

			for i, want := range []bool{false, true} {
				if resumed, err := dialLine(t, v, addr, base); err != nil || resumed != want {
					t.Fatalf("connection %d: resumed=%v err=%v, want resumed=%v", i+1, resumed, err, want)
				}
			}
			// Same pins, new policy: still a full handshake, then resumption.
			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: pins}))
			for i, want := range []bool{false, true} {
				if resumed, err := dialLine(t, v, addr, base); err != nil || resumed != want {
					t.Fatalf("after SetPolicy, connection %d: resumed=%v err=%v, want resumed=%v", i+1, resumed, err, want)
				}
			}
		})
	}
}

// SetPolicy closes the idle keep-alive connections of transports the
// verifier made; otherwise a connection checked under the old pins would
// carry the next request.
func TestSetPolicyClosesIdleConnections(t *testing.T) {
	w := newWorld(t)
	s := serve(t, w.leaf.TLS(), serverOptions{})
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	c, err := v.Client(baseTransport(s.Listener.Addr().String(), w.pool))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() error { return fetchHost(c) }
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
	mismatch(t, fetch())
}

func TestConfigRefusals(t *testing.T) {
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, AllowSinglePin: true, Pins: []pin.Pin{pin.FromSPKI([]byte("k"))}}))
	if _, err := v.TLSConfig(&tls.Config{InsecureSkipVerify: true}); !errors.Is(err, pin.ErrInsecure) {
		t.Errorf("InsecureSkipVerify: err = %v, want ErrInsecure", err)
	}
	hooked := &tls.Config{VerifyConnection: func(tls.ConnectionState) error { return nil }}
	if _, err := v.TLSConfig(hooked); !errors.Is(err, pin.ErrHookSet) {
		t.Errorf("existing hook: err = %v, want ErrHookSet", err)
	}
	if _, err := v.Transport(&http.Transport{TLSClientConfig: hooked}); !errors.Is(err, pin.ErrHookSet) {
		t.Errorf("transport with hooked config: err = %v, want ErrHookSet", err)
	}
	dialer := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return nil, nil }}
	if _, err := v.Transport(dialer); !errors.Is(err, pin.ErrTLSDialer) {
		t.Errorf("own TLS dialer: err = %v, want ErrTLSDialer", err)
	}
	// The caller's config is cloned, never modified.
	base := &tls.Config{ServerName: host}
	if _, err := v.TLSConfig(base); err != nil || base.VerifyConnection != nil {
		t.Errorf("TLSConfig modified its base config (err %v)", err)
	}
}

// A connection whose verification was skipped has no verified chain; a
// verifier reached that way refuses an enforced host rather than check the
// served certificates.
func TestNoVerifiedChain(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	cfg, err := v.TLSConfig(&tls.Config{ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	cfg.InsecureSkipVerify = true // set behind the verifier's back
	s := serve(t, w.leaf.TLS(), serverOptions{})
	if _, err := tls.Dial("tcp", s.Listener.Addr().String(), cfg); !errors.Is(err, pin.ErrNoVerifiedChain) {
		t.Fatalf("err = %v, want ErrNoVerifiedChain", err)
	}
}
