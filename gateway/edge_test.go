package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/rampartsec/rampart/internal/util/httpx/httpxtest"
	"github.com/rampartsec/rampart/ratelimit"
)

// The regression tests of issue 10 for the edge: what the gateway lets
// reach a service, over raw sockets where a Go client would not send the
// request.

// startPlainUpstream is the echo service of testUpstream over plain http
// on loopback (routes may use http to loopback).
func startPlainUpstream(t testing.TB) *testUpstream {
	t.Helper()
	u := &testUpstream{release: make(chan struct{}), peers: map[string]bool{}}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.Start()
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

// dialH1 opens a TLS connection to tg offering HTTP/1.1 only.
func (tg *testGateway) dialH1() (net.Conn, error) {
	return tls.Dial("tcp", tg.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
}

// dialH2 opens a TLS connection to tg offering HTTP/2 only.
func (tg *testGateway) dialH2() (net.Conn, error) {
	return tls.Dial("tcp", tg.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
}

// raw sends one raw HTTP/1.1 request to tg and reads the answer.
func (tg *testGateway) raw(t testing.TB, req string) (*http.Response, []byte) {
	t.Helper()
	conn, err := tg.dialH1()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(req, "\r\n")
	f := strings.Fields(line)
	u, _ := url.Parse(f[1])
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: f[0], URL: u})
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// §1 of issue 10: every ambiguously framed request gets one answer and
// its connection is closed, over TLS and plain http, so that a front
// proxy framing it otherwise cannot have the bytes after it answered as
// another request (RFC 9112 §6.1).
func TestRequestFraming(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)}})
	plain := httptest.NewUnstartedServer(tg.g.Handler())
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	plain.Start()
	t.Cleanup(plain.Close)

	for _, s := range []struct {
		name string
		dial httpxtest.Dialer
	}{
		{"tls", tg.dialH1},
		{"plain", func() (net.Conn, error) { return net.Dial("tcp", plain.Listener.Addr().String()) }},
	} {
		t.Run(s.name, func(t *testing.T) {
			httpxtest.Check(t, s.dial, "/open/a")
			httpxtest.KeepAlive(t, s.dial, "/open/a")
		})
	}
	if n := up.count("/smuggled"); n != 0 {
		t.Errorf("the service got %d smuggled requests", n)
	}
}

// framingUpstream is a raw HTTP/1.1 service: it records the framing
// header lines of each request exactly as they arrived.
type framingUpstream struct {
	addr string
	mu   sync.Mutex
	seen [][]string // per request: its Content-Length and Transfer-Encoding lines
	body []string
}

func startFramingUpstream(t *testing.T) *framingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &framingUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(conn)
		}
	}()
	return u
}

func (u *framingUpstream) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		if _, err := br.ReadString('\n'); err != nil { // the request line
			return
		}
		var framing []string
		length, chunked := int64(0), false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			name, value, _ := strings.Cut(line, ":")
			switch strings.ToLower(name) {
			case "content-length":
				framing = append(framing, line)
				length, _ = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			case "transfer-encoding":
				framing = append(framing, line)
				chunked = true
			}
		}
		var body []byte
		if chunked {
			body, _ = io.ReadAll(httputil.NewChunkedReader(br))
		} else {
			body = make([]byte, length)
			io.ReadFull(br, body)
		}
		u.mu.Lock()
		u.seen = append(u.seen, framing)
		u.body = append(u.body, string(body))
		u.mu.Unlock()
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (u *framingUpstream) last(t *testing.T) ([]string, string) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the service saw no request")
	}
	return u.seen[len(u.seen)-1], u.body[len(u.body)-1]
}

// A request the gateway sends upstream has exactly one framing header,
// whatever the client's request was framed by (RFC 9112 §6.3): a length,
// chunks, an ambiguous pair, or HTTP/2 frames with or without
// content-length.
func TestUpstreamFraming(t *testing.T) {
	t.Parallel()
	up := startFramingUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", "http://"+up.addr, anonymous)}})
	head := "POST /open/f HTTP/1.1\r\nHost: x\r\n"
	for _, tc := range []struct {
		name, req, wantFraming string
	}{
		{"content-length", head + "Content-Length: 5\r\n\r\nhello", "Content-Length: 5"},
		{"chunked", head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding: chunked"},
		{"content-length and chunked", head + "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding: chunked"},
		{"two identical content-lengths", head + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "Content-Length: 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tg.raw(t, tc.req)
			wantStatus(t, resp, body, http.StatusOK)
			framing, got := up.last(t)
			if !slices.Equal(framing, []string{tc.wantFraming}) || got != "hello" {
				t.Errorf("the service got framing %q and body %q, want [%s] and hello", framing, got, tc.wantFraming)
			}
		})
	}
	t.Run("http/2 with content-length", func(t *testing.T) {
		resp, body := tg.do(t, http.MethodPost, "/open/f", strings.NewReader("hello"))
		wantStatus(t, resp, body, http.StatusOK)
		if resp.ProtoMajor != 2 {
			t.Fatalf("the client spoke %s", resp.Proto)
		}
		if framing, got := up.last(t); !slices.Equal(framing, []string{"Content-Length: 5"}) || got != "hello" {
			t.Errorf("the service got framing %q and body %q", framing, got)
		}
	})
	t.Run("http/2 without content-length", func(t *testing.T) {
		resp, body := tg.do(t, http.MethodPost, "/open/f", unsized{strings.NewReader("hello")})
		wantStatus(t, resp, body, http.StatusOK)
		if framing, got := up.last(t); !slices.Equal(framing, []string{"Transfer-Encoding: chunked"}) || got != "hello" {
			t.Errorf("the service got framing %q and body %q", framing, got)
		}
	})
}

// E5: Connection may name only hop-by-hop options. Connection: X-API-Key
// made the gateway authenticate the key, then drop it (RFC 9110 §7.6.1),
// so that the service saw only an Authorization nobody had checked.
func TestConnectionNamesNoCheckedHeader(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	forged := "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2aWN0aW0ifQ.c2lnbmF0dXJl"
	for _, tc := range []struct{ name, conn, creds string }{
		{"the key", "X-API-Key", "X-API-Key: " + e.shopKey + "\r\nAuthorization: " + forged + "\r\n"},
		{"the token", "Authorization", "Authorization: Bearer " + e.tokens.mint(t, "shop", time.Now(), time.Minute) + "\r\nX-API-Key: rk_live_victim\r\n"},
		{"a listed credential", "keep-alive, x-api-key", "X-API-Key: " + e.shopKey + "\r\n"},
		{"the client address", "X-Forwarded-For", "X-API-Key: " + e.shopKey + "\r\n"},
		{"the origin", "Origin", "X-API-Key: " + e.shopKey + "\r\nOrigin: https://app.pay.example\r\n"},
		{"the length", "Content-Length", "X-API-Key: " + e.shopKey + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/conn/" + strings.ReplaceAll(tc.name, " ", "-")
			resp, body := e.gw.raw(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: "+tc.conn+"\r\n"+tc.creds+"\r\n")
			wantProblem(t, resp, body, http.StatusBadRequest)
			if n := e.up.count(path); n != 0 {
				t.Errorf("the service saw it %d times", n)
			}
		})
	}
	// The options clients do send pass.
	resp, body := e.gw.raw(t, "GET /v1/conn/ok HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, TE\r\nTE: trailers\r\nX-API-Key: "+e.shopKey+"\r\n\r\n")
	wantStatus(t, resp, body, http.StatusOK)
	if got := echoed(t, body).Header.Get("X-API-Key"); got != e.shopKey {
		t.Errorf("the service got X-API-Key %q", got)
	}
}

// E14: the service receives the credential the gateway authenticated and
// no other, so that it cannot act on one nobody checked. A second
// credential next to the first is refused outright (RFC 6750 §2: one
// method per request; auth.ParseCredential); a Cookie next to a
// credential is dropped unless the route asks for it.
func TestOnlyTheCheckedCredentialIsForwarded(t *testing.T) {
	t.Parallel()
	e := newE2E(t, standard)
	tok := e.tokens.mint(t, "shop", time.Now(), time.Minute)
	const forged = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2aWN0aW0ifQ.c2lnbmF0dXJl"
	for _, tc := range []struct {
		name    string
		path    string
		hdr     []string
		want    map[string]string // the credential headers the service must see, exactly
		refused bool              // 400 invalid_request, and the service sees nothing
	}{
		{"key and a forged token", "/v1/c/1", []string{"X-API-Key", e.shopKey, "Authorization", forged}, nil, true},
		{"key and basic credentials", "/v1/c/2", []string{"X-API-Key", e.shopKey, "Authorization", "Basic dmljdGltOnB3"}, nil, true},
		{"key and a cookie", "/v1/c/3", []string{"X-API-Key", e.shopKey, "Cookie", "session=victim"}, map[string]string{"X-Api-Key": e.shopKey}, false},
		{"token and a cookie", "/v1/c/4", []string{"Authorization", "Bearer " + tok, "Cookie", "session=victim"}, map[string]string{"Authorization": "Bearer " + tok}, false},
		{"key as bearer, then a token", "/v1/c/5", []string{"Authorization", "Bearer " + e.shopKey, "Authorization", "Bearer " + tok}, nil, true},
		{"two keys", "/v1/c/6", []string{"X-API-Key", e.shopKey, "X-API-Key", "rk_live_victim"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.gw.get(t, tc.path, tc.hdr...)
			if tc.refused {
				wantStatus(t, resp, body, http.StatusBadRequest)
				if !strings.Contains(string(body), `"invalid_request"`) {
					t.Errorf("body %s, want invalid_request", body)
				}
				if n := e.up.count(tc.path); n != 0 {
					t.Errorf("refused, but the service saw it %d times", n)
				}
				return
			}
			wantStatus(t, resp, body, http.StatusOK)
			s := echoed(t, body)
			for _, h := range []string{"X-Api-Key", "Authorization", "Cookie"} {
				want, ok := tc.want[h]
				if got := s.Header.Values(h); ok && !slices.Equal(got, []string{want}) || !ok && got != nil {
					t.Errorf("the service got %s %q, want %q", h, got, want)
				}
			}
		})
	}
	// On a route without authentication the gateway vouches for nothing
	// and changes nothing.
	resp, body := e.gw.get(t, "/open/c", "Authorization", forged, "Cookie", "session=x")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body); s.Header.Get("Authorization") != forged || s.Header.Get("Cookie") != "session=x" {
		t.Errorf("auth: none route: the service got %v", s.Header)
	}
}

// A route with forward_cookies passes the client's Cookie on, next to the
// checked credential.
func TestForwardCookies(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: append(standardRoutes(up), routeTo("/web/", up, func(r *Route) { r.ForwardCookies = true }))}
	})
	resp, body := e.gw.get(t, "/web/c", "X-API-Key", e.shopKey, "Cookie", "session=mine")
	wantStatus(t, resp, body, http.StatusOK)
	if h := echoed(t, body).Header; h.Get("Cookie") != "session=mine" || h.Get("X-Api-Key") != e.shopKey || h.Get("Authorization") != "" {
		t.Errorf("the service got %v", h)
	}
}

// upgrader answers 101 to every Upgrade and then echoes what the client
// sends; /unasked answers 101 (h2c) to a plain request.
type upgrader struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func startUpgrader(t *testing.T) *upgrader {
	t.Helper()
	u := &upgrader{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		proto := r.Header.Get("Upgrade")
		if strings.HasSuffix(r.URL.Path, "/unasked") {
			proto = "h2c"
		}
		if proto == "" {
			io.WriteString(w, "plain\n")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
		brw.Flush()
		io.Copy(conn, brw)
	}))
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upgrader) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// E6: after a service's 101 the connection is a raw tunnel that no route,
// authentication or limit sees again. A route takes an upgrade only with
// websocket: true, and only to websocket; an h2c offer is served as
// HTTP/1.1 and never forwarded (RFC 9113 §3.1, RFC 9110 §7.8).
func TestUpgrades(t *testing.T) {
	t.Parallel()
	up := startUpgrader(t)
	keys := newKeyStore(t)
	key := keys.key(t, "shop")
	tg := startGateway(t, Options{Routes: []Route{routeTo("/pub/", up.srv.URL, anonymous), routeTo("/ws/", up.srv.URL)}, APIKeys: keys.v})

	t.Run("h2c is ignored", func(t *testing.T) {
		resp, body := tg.raw(t, "GET /pub/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
		wantStatus(t, resp, body, http.StatusOK)
		if string(body) != "plain\n" {
			t.Errorf("body %q, want the service's plain answer", body)
		}
		if h := up.last(); h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" || h.Get("Connection") != "" {
			t.Errorf("the service got %v", h)
		}
	})
	for _, tc := range []struct{ name, req string }{
		{"websocket on a route without it", "GET /pub/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"websocket with a valid key", "GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-API-Key: " + key + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.seen)
			resp, body := tg.raw(t, tc.req)
			wantProblem(t, resp, body, http.StatusBadRequest)
			if len(up.seen) != before {
				t.Errorf("the service saw it")
			}
		})
	}
	t.Run("a 101 nobody asked for", func(t *testing.T) {
		resp, body := tg.raw(t, "GET /pub/unasked HTTP/1.1\r\nHost: x\r\n\r\n")
		wantProblem(t, resp, body, http.StatusBadGateway)
	})
}

// websocket: true lets a GET with Upgrade: websocket through, after
// authentication, and nothing else.
func TestWebsocketRoute(t *testing.T) {
	t.Parallel()
	up := startUpgrader(t)
	keys := newKeyStore(t)
	key := keys.key(t, "shop")
	tg := startGateway(t, Options{Routes: []Route{routeTo("/ws/", up.srv.URL, func(r *Route) { r.Websocket = true })}, APIKeys: keys.v})
	for _, tc := range []struct{ name, req string }{
		{"another protocol", "GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\nX-API-Key: " + key + "\r\n\r\n"},
		{"websocket with POST", "POST /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\nX-API-Key: " + key + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tg.raw(t, tc.req)
			wantProblem(t, resp, body, http.StatusBadRequest)
		})
	}
	t.Run("websocket needs authentication", func(t *testing.T) {
		resp, body := tg.raw(t, "GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		wantStatus(t, resp, body, http.StatusUnauthorized)
	})
	t.Run("websocket where the route takes it", func(t *testing.T) {
		conn, err := tg.dialH1()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-API-Key: %s\r\n\r\n", key)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		io.WriteString(conn, "ping")
		got := make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
			t.Errorf("through the tunnel: %q %v", got, err)
		}
		if h := up.last(); h.Get("Upgrade") != "websocket" || h.Get("X-Api-Key") != key {
			t.Errorf("the service got %v", h)
		}
	})
}

// E7: headers that name the client or another URL, host or method are the
// client's word; the service gets none of them, and X-Forwarded-Host only
// for a host the gateway was told it serves.
func TestClientSuppliedHeaders(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)}})
	var hdr []string
	for _, h := range append(slices.Clone(clientSupplied), "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Forwarded-Ssl", "X-Forwarded-Uri") {
		hdr = append(hdr, h, "6.6.6.6")
	}
	hdr = append(hdr, "X_Api_Key", "rk_live_victim", "X_Forwarded_For", "6.6.6.6")
	resp, body := tg.get(t, "/open/h", hdr...)
	wantStatus(t, resp, body, http.StatusOK)
	s := echoed(t, body)
	for name, v := range s.Header {
		if slices.Contains(v, "6.6.6.6") || slices.Contains(v, "rk_live_victim") || strings.ContainsRune(name, '_') {
			t.Errorf("the service got %s: %q", name, v)
		}
	}
	if got := s.Header.Get("X-Forwarded-Host"); got != "" {
		t.Errorf("X-Forwarded-Host %q without hosts: the client's word", got)
	}
	// An absolute request target names the host (RFC 9112 §3.2.2).
	resp, body = tg.raw(t, "GET https://evil.example/open/abs HTTP/1.1\r\nHost: x\r\n\r\n")
	wantStatus(t, resp, body, http.StatusOK)
	if got := echoed(t, body).Header.Get("X-Forwarded-Host"); got != "" {
		t.Errorf("X-Forwarded-Host %q from an absolute target", got)
	}

	// With hosts, only those are answered, and vouched for.
	tg2 := startGateway(t, Options{Hosts: []string{"api.pay.example", "admin.pay.example:8443"}, Routes: []Route{routeTo("/open/", up.URL, anonymous)}})
	for _, tc := range []struct {
		host string
		want int
	}{
		{"api.pay.example", http.StatusOK},
		{"API.pay.example:443", http.StatusOK},
		{"admin.pay.example:8443", http.StatusOK},
		{"admin.pay.example:9443", http.StatusMisdirectedRequest},
		{"evil.example", http.StatusMisdirectedRequest},
		{"api.pay.example.", http.StatusMisdirectedRequest},
	} {
		resp, body := tg2.raw(t, "GET /open/host HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
		if resp.StatusCode != tc.want {
			t.Errorf("Host %s: %d, want %d", tc.host, resp.StatusCode, tc.want)
		} else if tc.want == http.StatusOK {
			if got := echoed(t, body).Header.Get("X-Forwarded-Host"); got != tc.host {
				t.Errorf("Host %s: X-Forwarded-Host %q", tc.host, got)
			}
		}
	}
	resp, _ = tg2.raw(t, "GET https://evil.example/open/abs HTTP/1.1\r\nHost: api.pay.example\r\n\r\n")
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("absolute target of another host: %d, want 421", resp.StatusCode)
	}
	if resp, _ := tg2.raw(t, "GET /healthz HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz by address: %d; load balancers must get an answer", resp.StatusCode)
	}
}

// E8: a client's own framing errors are answered 400 (RFC 9112 §7.1,
// RFC 9113 §8.1.1), not 502: no upstream-error metric, no error log.
func TestClientBodyErrors(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	logs := &syncBuffer{}
	lg := slog.New(slog.NewJSONHandler(logs, nil))
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)}, Logger: lg, AccessLog: lg})
	head := "POST /open/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct{ name, body string }{
		{"chunk size with LF only", "3\nabc\r\n0\r\n\r\n"},
		{"chunk size 0x", "0x3\r\nabc\r\n0\r\n\r\n"},
		{"chunk size not hex", "zz\r\nabc\r\n0\r\n\r\n"},
		{"chunk shorter than its size", "5\r\nabc\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tg.raw(t, head+tc.body)
			wantProblem(t, resp, body, http.StatusBadRequest)
		})
	}
	t.Run("http/2 DATA shorter than content-length", func(t *testing.T) {
		status, err := httpxtest.H2(tg.dialH2, [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/open/body"}, {"content-length", "5"}}, []byte("abc"))
		// Refusing the stream is as good (RFC 9113 §8.1.1).
		if err == nil && status != http.StatusBadRequest || err != nil && !strings.Contains(err.Error(), "PROTOCOL_ERROR") {
			t.Errorf("status %d, %v; want 400 or a stream PROTOCOL_ERROR", status, err)
		}
	})
	eventually(t, "the access lines", func() bool { return len(accessLines(t, logs)) >= 4 })
	m := scrape(t, tg.g)
	if strings.Contains(m, "rampart_gateway_upstream_errors_total{") {
		t.Errorf("counted as upstream errors:\n%s", m)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("logged as errors:\n%s", logs)
	}
}

// E10: a path that a decoder or normaliser could read as another path is
// refused: overlong UTF-8, characters NFKC folds into ASCII (full-width
// dots, letters), encoded control characters.
func TestPathsThatNormaliseOtherwise(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous), routeTo("/", up.URL, anonymous)}})
	for _, p := range []string{
		"/open/%c0%ae%c0%ae/v1/a",              // overlong '.'
		"/open/%e0%80%ae/v1/a",                 // overlong '.', three bytes
		"/open/%ff/v1/a",                       // not UTF-8
		"/open/%ef%bc%8e%ef%bc%8e/v1/a",        // U+FF0E FULLWIDTH FULL STOP
		"/open/%e2%80%a4%e2%80%a4/v1/a",        // U+2024 ONE DOT LEADER
		"/open/..%ef%bc%8fv1/a",                // U+FF0F FULLWIDTH SOLIDUS
		"/open/..%ef%bc%bcv1/a",                // U+FF3C FULLWIDTH REVERSE SOLIDUS
		"/%ef%bd%961/payments",                 // U+FF56: /v1/ once normalised
		"/open/%ef%bc%85%32%65%ef%bc%85%32%65", // U+FF05 FULLWIDTH PERCENT SIGN
		"/open/a%0d%0aX-Injected:%20x",
		"/open/a%09b",
		"/open/a%7f",
		"/open/a%c2%85", // U+0085, a C1 control
	} {
		req, _ := http.NewRequest(http.MethodGet, tg.URL+"/", nil)
		req.URL.Opaque = p
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", p, resp.StatusCode)
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the service saw %d of them: %+v", n, up.requests())
	}
	// Paths with other characters are fine.
	for _, p := range []string{"/open/caf%c3%a9", "/open/%e2%82%ac", "/open/a%20b", "/open/~user"} {
		req, _ := http.NewRequest(http.MethodGet, tg.URL+"/", nil)
		req.URL.Opaque = p
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", p, resp.StatusCode)
		}
	}
}

// FuzzCheckPath: whatever checkPath accepts decodes to valid UTF-8 without
// control characters, and NFKC normalisation of it adds no '.', '/', '\',
// ';' or '%': the dot segments a normalising service sees are those
// ServeMux saw (and redirected away).
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{
		"/open/x", "/open/%c0%ae%c0%ae/v1/a", "/open/%ef%bc%8e/v1", "/open/%2e%2e/", "/a/../b", "/open/%0d%0a",
		"/caf%c3%a9", "/%ef%bd%961/", "/a;b", `/a\b`, "/%25", "/%e2%80%a4", "/%c2%a0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != "" {
			return
		}
		d, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", p, err)
		}
		if !utf8.ValidString(d) {
			t.Fatalf("accepted %q: not UTF-8 once decoded", p)
		}
		n := norm.NFKC.String(d)
		for _, c := range n {
			if c < 0x20 || c == 0x7f || 0x80 <= c && c < 0xa0 {
				t.Fatalf("accepted %q: control character %U", p, c)
			}
		}
		for _, c := range `\;%` {
			if strings.ContainsRune(n, c) {
				t.Fatalf("accepted %q: %q once normalised", p, c)
			}
		}
		if dots(n) != dots(d) || strings.Count(n, "/") != strings.Count(d, "/") {
			t.Fatalf("accepted %q: normalised %q has other segments than decoded %q", p, n, d)
		}
	})
}

// dots lists the indexes of the "." and ".." segments of p.
func dots(p string) string {
	var b strings.Builder
	for i, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			fmt.Fprintf(&b, "%d,", i)
		}
	}
	return b.String()
}

// E15: methods are case-sensitive (RFC 9110 §9.1). post is refused
// before the limits (a rule for POST does not match it, and a service
// that upper-cases methods would run it as POST), and so is a method that
// is not a token, which Go's HTTP/2 server lets through.
func TestMethods(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)},
		Limits: []ratelimit.Rule{rule("posts", 1, time.Hour, byAddr, "POST /open/")}})
	resp, body := tg.do(t, http.MethodPost, "/open/m", nil)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = tg.do(t, http.MethodPost, "/open/m", nil)
	wantRateLimited(t, resp, body, "posts")
	for _, m := range []string{"post", "Post", "pOST", "PROPFIND"} {
		resp, body := tg.do(t, m, "/open/m", nil)
		wantProblem(t, resp, body, http.StatusNotImplemented)
	}
	status, err := httpxtest.H2(tg.dialH2, [][2]string{{":method", "get"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/open/m"}}, nil)
	if err != nil || status != http.StatusNotImplemented {
		t.Errorf("HTTP/2 :method get: %d %v, want 501", status, err)
	}
	status, err = httpxtest.H2(tg.dialH2, [][2]string{{":method", "GET /open/x"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/open/m"}}, nil)
	if err == nil && status != http.StatusBadRequest {
		t.Errorf("HTTP/2 :method \"GET /open/x\": %d, want 400 (or a reset stream)", status)
	}
	for _, s := range up.requests() {
		if s.Method != http.MethodPost {
			t.Errorf("the service saw %s %s", s.Method, s.Path)
		}
	}
}

// A route's own set of methods: others are 405 with Allow; HEAD comes
// with GET.
func TestRouteMethods(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/read/", up.URL, anonymous, func(r *Route) { r.Methods = []string{"GET"} })}})
	resp, body := tg.do(t, http.MethodDelete, "/read/x", nil)
	wantProblem(t, resp, body, http.StatusMethodNotAllowed)
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("Allow %q", got)
	}
	resp, body = tg.do(t, http.MethodHead, "/read/x", nil)
	wantStatus(t, resp, body, http.StatusOK)
}

// E19: preflights are requests like any other: the edge limits count
// them too, and still answer them with the CORS headers.
func TestPreflightsAreLimited(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	const origin = "https://app.pay.example"
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)},
		CORS: &CORS{AllowedOrigins: []string{origin}}, Limits: []ratelimit.Rule{rule("per-addr", 3, time.Hour, byAddr)}})
	var got []int
	for range 4 {
		resp, body := tg.do(t, http.MethodOptions, "/open/p", nil, "Origin", origin, "Access-Control-Request-Method", "POST")
		got = append(got, resp.StatusCode)
		if resp.StatusCode == http.StatusNoContent && resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("preflight answer without its CORS headers: %v %s", resp.Header, body)
		}
	}
	if fmt.Sprint(got) != "[204 204 204 429]" {
		t.Errorf("four preflights: %v, want [204 204 204 429]", got)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the service saw %d preflights", n)
	}
}

// E11: every response carries the RateLimit fields of every rule that
// applied, the edge rules before authentication and after it.
func TestRateLimitFieldsOfEveryRule(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(up string) Options {
		return Options{Routes: standardRoutes(up), Limits: []ratelimit.Rule{
			rule("per-address", 50, time.Second, byAddr), rule("per-client", 100, time.Minute, byClient)}}
	})
	resp, body := e.gw.get(t, "/v1/payments", "X-API-Key", e.shopKey)
	wantStatus(t, resp, body, http.StatusOK)
	for _, f := range []string{"RateLimit", "RateLimit-Policy"} {
		v := strings.Join(resp.Header.Values(f), ", ")
		if !strings.Contains(v, `"per-address";`) || !strings.Contains(v, `"per-client";`) {
			t.Errorf("%s %q, want both rules", f, v)
		}
	}
}

// /healthz always answers (usability 13): no edge limit applies to it,
// and no route takes it, whatever the method.
func TestHealthzIsNotLimited(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{routeTo("/", up.URL, anonymous)}, Limits: []ratelimit.Rule{rule("per-addr", 2, time.Hour, byAddr)}})
	for i := range 5 {
		resp, body := tg.get(t, "/healthz")
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
			t.Fatalf("/healthz #%d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := tg.do(t, http.MethodPost, "/healthz", nil)
	wantProblem(t, resp, body, http.StatusMethodNotAllowed)
	if n := len(up.requests()); n != 0 {
		t.Errorf("the service saw %d requests for /healthz", n)
	}
	// The limit still applies elsewhere.
	codes := []int{}
	for range 3 {
		resp, _ := tg.get(t, "/x")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("/x: %v", codes)
	}
}

func stripping(r *Route) { r.StripPrefix = true }

// strip_prefix (usability 14): the service sees the path under the
// prefix, and the prefix in X-Forwarded-Prefix; without it, the path as
// sent.
func TestStripPrefix(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{
		routeTo("/api/", up.URL+"/base", anonymous, stripping),
		routeTo("/exact", up.URL, anonymous, stripping),
		routeTo("/keep/", up.URL, anonymous),
	}})
	for _, tc := range []struct{ path, want, prefix string }{
		{"/api/v1/payments?x=1", "/base/v1/payments", "/api"},
		{"/api/", "/base/", "/api"},
		{"/api/caf%C3%A9", "/base/café", "/api"},
		{"/exact", "/", "/exact"},
		{"/keep/v1/x", "/keep/v1/x", ""},
	} {
		resp, body := tg.get(t, tc.path, "X-Forwarded-Prefix", "/evil")
		wantStatus(t, resp, body, http.StatusOK)
		s := echoed(t, body)
		if s.Path != tc.want || s.Header.Get("X-Forwarded-Prefix") != tc.prefix {
			t.Errorf("%s: the service saw %s with X-Forwarded-Prefix %q, want %s and %q", tc.path, s.Path, s.Header.Get("X-Forwarded-Prefix"), tc.want, tc.prefix)
		}
	}
}

// An independent review of issue 10's fixes: a path the front accepts
// reaches the service as the client encoded it, strip_prefix included
// (re-encoding the decoded path turned %3b into the literal ';' that
// Tomcat reads as a path parameter: /payments/..;/manager/html); an
// encoded ';' is refused like a literal one; and a target with a
// character the URL parser re-encodes ('{') is still checked as sent.
func TestPathAsTheClientEncodedIt(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{
		routeTo("/v1/", up.URL+"/payments", anonymous, stripping),
		routeTo("/open/", up.URL, anonymous),
	}})
	raw := func(p string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tg.URL+"/", nil)
		req.URL.Opaque = p
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/v1/..%3b/manager/html", "/v1/a%3B/b", "/open/%2e%2e/v1/{x}", "/open/%2E%2E/x|y"} {
		if resp := raw(p); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", p, resp.StatusCode)
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("the service saw %d of them: %+v", n, up.requests())
	}
	// An escape the front accepts goes on as written.
	resp, body := tg.get(t, "/v1/a%20b/caf%C3%A9")
	wantStatus(t, resp, body, http.StatusOK)
	if s := echoed(t, body); s.RequestURI != "/payments/a%20b/caf%C3%A9" {
		t.Errorf("the service got %q, want /payments/a%%20b/caf%%C3%%A9", s.RequestURI)
	}
}

// A path that takes another route in another case is refused: with /v1/
// authenticated and / open, /V1/withdrawals takes the open route here,
// and a service that routes without regard to case (Express, ASP.NET
// Core) runs it as /v1/withdrawals. Unicode case maps count: U+0131
// (dotless i) upper-cases to I, U+017F (long s) to S.
func TestRouteInAnotherCase(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	tg := startGateway(t, Options{Routes: []Route{
		routeTo("/admin/", up.URL, anonymous, func(r *Route) { r.Methods = []string{http.MethodGet} }),
		routeTo("/Mixed/", up.URL, anonymous),
		routeTo("/", up.URL, anonymous),
	}})
	for _, p := range []string{"/ADMIN/x", "/Admin/x", "/adm%C4%B1n/x", "/admin%C5%BF/x"} {
		resp, body := tg.get(t, p)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", p, resp.StatusCode, body)
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("the service saw %d of them: %+v", n, up.requests())
	}
	// Paths whose case changes no route pass: a prefix in mixed case
	// takes its own path, other paths in any case take /.
	for _, p := range []string{"/admin/x", "/Mixed/x", "/mixed/x", "/Other/Path", "/caf%C3%A9"} {
		resp, body := tg.get(t, p)
		if p == "/mixed/x" {
			// /mixed/x takes / here, /Mixed/ in another case.
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", p, resp.StatusCode)
			}
			continue
		}
		wantStatus(t, resp, body, http.StatusOK)
	}
}

// The access log's duration has its unit in its name, and the path is
// logged as sent: a refused encoded path is not decoded into the path it
// is not (second walkthrough 12).
func TestAccessLogFields(t *testing.T) {
	t.Parallel()
	up := startPlainUpstream(t)
	logs := &syncBuffer{}
	lg := slog.New(slog.NewJSONHandler(logs, nil))
	tg := startGateway(t, Options{Routes: []Route{routeTo("/open/", up.URL, anonymous)}, Logger: lg, AccessLog: lg})
	req, _ := http.NewRequest(http.MethodGet, tg.URL+"/", nil)
	req.URL.Opaque = "/open/%2e%2e/v1/payments"
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, "the access line", func() bool { return len(accessLines(t, logs)) == 1 })
	l := accessLines(t, logs)[0]
	if l["path"] != "/open/%2e%2e/v1/payments" || l["status"] != float64(400) {
		t.Errorf("access line %v, want the path as sent and 400", l)
	}
	if d, ok := l["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms %v", l["duration_ms"])
	}
	if _, ok := l["duration"]; ok {
		t.Errorf("a duration without its unit: %v", l)
	}
}
