package pin_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// recordProxy is a TCP proxy in front of a TLS server that reads the
// server's bytes as TLS records (RFC 8446 §5.1) and, on the first
// connection only, holds back the record that hold picks until release is
// closed: an attacker stretching the window between the client's
// certificate check and the end of its handshake.
type recordProxy struct {
	addr    string
	held    chan struct{} // closed when the record is held
	release chan struct{}
	once    sync.Once
}

// unhold lets the held record through.
func (p *recordProxy) unhold() { p.once.Do(func() { close(p.release) }) }

// holdTLS13Finished picks the server's Finished in a TLS 1.3 full
// handshake without client authentication: the fourth encrypted record,
// after EncryptedExtensions, Certificate and CertificateVerify.
func holdTLS13Finished() func(typ byte) bool {
	n := 0
	return func(typ byte) bool {
		if typ == 23 { // application_data: an encrypted record
			n++
		}
		return typ == 23 && n == 4
	}
}

// holdTLS12Finished picks the server's ChangeCipherSpec in a TLS 1.2 full
// handshake: its Finished follows, after the client's.
func holdTLS12Finished() func(typ byte) bool {
	return func(typ byte) bool { return typ == 20 }
}

func newRecordProxy(t *testing.T, backend string, hold func(typ byte) bool) *recordProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordProxy{addr: ln.Addr().String(), held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() {
		p.unhold()
		ln.Close()
	})
	var first atomic.Bool
	first.Store(true)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			pick := func(byte) bool { return false }
			if first.Swap(false) {
				pick = hold
			}
			go p.relay(c, backend, pick)
		}
	}()
	return p
}

func (p *recordProxy) relay(c net.Conn, backend string, pick func(byte) bool) {
	defer c.Close()
	up, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { io.Copy(up, c); up.Close() }()
	br := bufio.NewReader(up)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if pick(hdr[0]) {
			close(p.held)
			<-p.release
		}
		if _, err := c.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// signalNow returns a clock for Verifier.Now that closes ran the first
// time it is read: the verifier reads it in the handshake's certificate
// check, after it has taken the policy to check against.
func signalNow() (now func() time.Time, ran chan struct{}) {
	ran = make(chan struct{})
	var once sync.Once
	return func() time.Time {
		once.Do(func() { close(ran) })
		return time.Now()
	}, ran
}

// P14: a handshake whose certificate was checked under the old pins but
// that finishes after SetPolicy must not come out as a working connection
// under the new pins, whichever TLS version.
func TestHandshakeStraddlingSetPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
		hold    func() func(byte) bool
	}{
		{"TLS 1.3", tls.VersionTLS13, holdTLS13Finished},
		{"TLS 1.2", tls.VersionTLS12, holdTLS12Finished},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cfg := &tls.Config{Certificates: []tls.Certificate{w.leaf.TLS()}, MinVersion: tc.version, MaxVersion: tc.version}
			server := tlsServer(t, cfg, func(c *tls.Conn) {
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					io.WriteString(c, line)
				}
			})
			rp := newRecordProxy(t, server, tc.hold())
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
			now, hookRan := signalNow()
			v.Now = now

			type result struct {
				conn *tls.Conn
				err  error
			}
			done := make(chan result, 1)
			go func() {
				c, err := v.DialContext(context.Background(), "tcp", rp.addr,
					&tls.Config{RootCAs: w.pool, ServerName: host, MinVersion: tc.version, MaxVersion: tc.version})
				done <- result{c, err}
			}()
			<-rp.held
			<-hookRan // the chain was checked under the old pins
			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
			rp.unhold()
			r := <-done
			if r.err == nil {
				defer r.conn.Close()
				io.WriteString(r.conn, "ping\n")
				echo, _ := bufio.NewReader(r.conn).ReadString('\n')
				t.Fatalf("DialContext returned a working connection (echo %q) checked only under the replaced pins", echo)
			}
			mismatch(t, r.err)
		})
	}
}

// The same through http.Client, direct and through a CONNECT proxy: the
// request in flight fails, and no later request reuses the connection.
func TestClientHandshakeStraddlingSetPolicy(t *testing.T) {
	for _, proxied := range []bool{false, true} {
		name := "direct"
		if proxied {
			name = "via CONNECT proxy"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			var served atomic.Int32
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				served.Add(1)
				io.WriteString(rw, "secret-data")
			}))
			s.TLS = &tls.Config{Certificates: []tls.Certificate{w.leaf.TLS()}, MinVersion: tls.VersionTLS13}
			s.EnableHTTP2 = true
			s.StartTLS()
			defer s.Close()
			rp := newRecordProxy(t, s.Listener.Addr().String(), holdTLS13Finished())
			var base *http.Transport
			if proxied {
				base = proxiedTransport(newTunnelProxy(t, rp.addr).URL, w, true)
			} else {
				base = baseTransport(rp.addr, w.pool)
			}
			v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
			now, hookRan := signalNow()
			v.Now = now
			c, err := v.Client(base)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()

			done := make(chan error, 1)
			go func() {
				resp, err := c.Get("https://" + host + "/first")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				done <- err
			}()
			<-rp.held
			<-hookRan
			v.SetPolicy(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.rogueLeaf), w.backupPin}}))
			rp.unhold()
			if err := <-done; err == nil {
				t.Error("the request in flight was answered over a connection checked only under the replaced pins")
			} else {
				mismatch(t, err)
			}
			mismatch(t, fetchHost(c))
			if n := served.Load(); n != 0 {
				t.Fatalf("the server answered %d requests under pins that refuse it", n)
			}
		})
	}
}

// A server that accepts the TCP connection and never answers the
// ClientHello (or stalls before its Finished) is bounded by the base
// transport's TLSHandshakeTimeout, as net/http bounds its own handshakes,
// and the error says that the TCP connection was made.
func TestTLSHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-stop; c.Close() }()
		}
	}()
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	base := baseTransport(ln.Addr().String(), w.pool)
	base.TLSHandshakeTimeout = 50 * time.Millisecond
	c, err := v.Client(base)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 30 * time.Second // bounds a transport that ignores TLSHandshakeTimeout
	err = fetchHost(c)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connected to "+host+":443, but the TLS handshake did not finish within 50ms") {
		t.Fatalf("err = %v, want the handshake timeout", err)
	}
}
