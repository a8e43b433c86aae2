package httpx_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
)

// echo reads the body and answers 200 with its length.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Body", strings.Repeat("b", int(min(n, 64))))
	io.WriteString(w, "ok\n")
})

func quiet(s *httptest.Server) *httptest.Server {
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	return s
}

// Over plain HTTP/1.1 and over TLS (with HTTP/2 on offer, spoken as
// HTTP/1.1): every ambiguously framed request gets one answer, then the
// connection is closed, so the request after it is never read (RFC 9112
// §6.1). The requests net/http refuses by itself still are.
func TestFramingHTTP1(t *testing.T) {
	t.Parallel()
	plain := quiet(httptest.NewUnstartedServer(httpx.Framing(echo)))
	plain.Start()
	defer plain.Close()
	tlsSrv := quiet(httptest.NewUnstartedServer(httpx.Framing(echo)))
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()

	for _, s := range []struct {
		name string
		dial httpxtest.Dialer
	}{
		{"plain", func() (net.Conn, error) { return net.Dial("tcp", plain.Listener.Addr().String()) }},
		{"tls", func() (net.Conn, error) {
			return tls.Dial("tcp", tlsSrv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		}},
	} {
		t.Run(s.name, func(t *testing.T) {
			got := httpxtest.Check(t, s.dial, "/pay")
			// Answered, not refused: net/http gave the handler a
			// well-formed request, which it serves before closing.
			for _, c := range httpxtest.Cases("/pay") {
				if s, ok := got[c.Name]; ok && !c.ByGo && s != http.StatusOK {
					t.Errorf("%s: status %d, want 200 (answered, then closed)", c.Name, s)
				}
			}
			httpxtest.KeepAlive(t, s.dial, "/pay")
		})
	}
}

// HTTP/2 frames each message itself: a request is served and its
// connection kept, unless it declares several lengths, which Go's HTTP/2
// server passes on (RFC 9113 §8.1.1: malformed).
func TestFramingHTTP2(t *testing.T) {
	t.Parallel()
	srv := quiet(httptest.NewUnstartedServer(httpx.Framing(echo)))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	dial := func() (net.Conn, error) {
		return tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	}
	head := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/pay"}}
	with := func(fields ...[2]string) [][2]string { return append(append([][2]string(nil), head...), fields...) }
	for _, tc := range []struct {
		name   string
		fields [][2]string
		want   int
	}{
		{"one content-length", with([2]string{"content-length", "3"}), http.StatusOK},
		{"no content-length", head, http.StatusOK},
		{"two equal content-lengths", with([2]string{"content-length", "3"}, [2]string{"content-length", "3"}), http.StatusBadRequest},
		{"two content-lengths", with([2]string{"content-length", "3"}, [2]string{"content-length", "5"}), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := httpxtest.H2(dial, tc.fields, []byte("abc"))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	req := func(proto string, edit func(*http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/pay", nil)
		r.Proto = proto
		r.ProtoMajor, r.ProtoMinor, _ = http.ParseHTTPVersion(proto)
		r.ContentLength = 0
		if edit != nil {
			edit(r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want httpx.Verdict
	}{
		{"http/1.1 without a body", req("HTTP/1.1", nil), httpx.Keep},
		{"http/1.1 with a length", req("HTTP/1.1", func(r *http.Request) { r.ContentLength = 3; r.Header.Set("Content-Length", "3") }), httpx.Close},
		{"http/1.1 chunked", req("HTTP/1.1", func(r *http.Request) { r.ContentLength = -1; r.TransferEncoding = []string{"chunked"} }), httpx.Close},
		{"http/1.0", req("HTTP/1.0", nil), httpx.Close},
		{"http/2 with a length", req("HTTP/2.0", func(r *http.Request) { r.ContentLength = 3; r.Header.Set("Content-Length", "3") }), httpx.Keep},
		{"http/2 streamed", req("HTTP/2.0", func(r *http.Request) { r.ContentLength = -1 }), httpx.Keep},
		{"two lengths", req("HTTP/2.0", func(r *http.Request) { r.Header["Content-Length"] = []string{"3", "3"} }), httpx.Refuse},
		{"length not a number", req("HTTP/2.0", func(r *http.Request) { r.Header.Set("Content-Length", "3, 3") }), httpx.Refuse},
		{"transfer-encoding left in the header", req("HTTP/1.1", func(r *http.Request) { r.Header.Set("Transfer-Encoding", "chunked") }), httpx.Refuse},
		{"chunked and a length", req("HTTP/1.1", func(r *http.Request) {
			r.TransferEncoding = []string{"chunked"}
			r.Header.Set("Content-Length", "40")
		}), httpx.Refuse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := httpx.Check(tc.r); got != tc.want || (got == httpx.Keep) != (why == "") {
				t.Errorf("Check = %v %q, want %v (and a reason unless Keep)", got, why, tc.want)
			}
		})
	}
}

// connLog records the requests a server's handler saw on one connection.
type connLog struct {
	mu   sync.Mutex
	reqs []string // path and verdict
	v    []httpx.Verdict
}

// FuzzFraming sends arbitrary request heads, then a second request, on
// one connection to a net/http server behind Framing. Invariant: the
// second request is served only after a first request Check keeps: a
// request the guard closes or refuses is the last one read from its
// connection, whatever net/http made of its head.
func FuzzFraming(f *testing.F) {
	for _, c := range httpxtest.Cases("/pay") {
		f.Add(strings.TrimSuffix(c.Raw, httpxtest.Smuggled))
	}
	f.Add("GET /pay HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")

	var logs sync.Map // remote address -> *connLog
	srv := quiet(httptest.NewUnstartedServer(httpx.Framing(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l, ok := logs.Load(r.RemoteAddr); ok {
			l := l.(*connLog)
			v, _ := httpx.Check(r)
			l.mu.Lock()
			l.reqs, l.v = append(l.reqs, r.URL.Path), append(l.v, v)
			l.mu.Unlock()
		}
		io.Copy(io.Discard, r.Body)
	}))))
	// Bounds an input that declares more body than it sends.
	srv.Config.ReadTimeout = time.Second
	srv.Start()
	f.Cleanup(srv.Close)

	f.Fuzz(func(t *testing.T, head string) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		l := &connLog{}
		logs.Store(conn.LocalAddr().String(), l)
		defer logs.Delete(conn.LocalAddr().String())
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		// The second request closes the connection itself, so that the
		// read below ends as soon as the server is done.
		io.WriteString(conn, head+"GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		io.Copy(io.Discard, bufio.NewReader(conn))
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, p := range l.reqs {
			if i > 0 && l.v[i-1] != httpx.Keep {
				t.Fatalf("%q was served on the connection after %q, which the guard closes (%v); head %q", p, l.reqs[i-1], l.v[i-1], head)
			}
		}
	})
}

// The guard adds nothing to a kept request's answer.
func TestFramingKeepsAnswersAlone(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/pay", nil)
	httpx.Framing(echo).ServeHTTP(w, r.WithContext(context.Background()))
	if w.Code != http.StatusOK || w.Header().Get("Connection") != "" {
		t.Errorf("%d, Connection %q", w.Code, w.Header().Get("Connection"))
	}
}
