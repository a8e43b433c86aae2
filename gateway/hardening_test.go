package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"github.com/rampartsec/rampart/ratelimit"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// accessLines returns the access log's request lines.
func accessLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["msg"] == "request" {
			out = append(out, l)
		}
	}
	return out
}

// An answer that breaks off mid-body (the route's timeout cuts a slow
// service; the client hangs up) is logged and counted all the same: a
// caller cannot read most of a response and leave no trace.
func TestAbortedAnswersAreLogged(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s/big" {
			chunk := []byte(strings.Repeat("y", 64<<10))
			for range 2000 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		io.WriteString(w, "first chunk\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer up.Close()
	logs := &syncBuffer{}
	lg := slog.New(slog.NewJSONHandler(logs, nil))
	tg := startGateway(t, Options{Routes: []Route{routeTo("/s/", up.URL, anonymous, timeout300ms)}, Logger: lg, AccessLog: lg})

	resp, err := tg.client.Get(tg.URL + "/s/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "first chunk\n" || err == nil {
		t.Fatalf("the cut answer: %d %q, read error %v", resp.StatusCode, body, err)
	}
	eventually(t, "the access line", func() bool { return len(accessLines(t, logs)) == 1 })
	l := accessLines(t, logs)[0]
	if l["path"] != "/s/stream" || l["status"] != float64(200) || l["aborted"] != true {
		t.Errorf("access line %v, want /s/stream 200 aborted", l)
	}

	// The client reads 1 KB of a large download and hangs up.
	resp, err = tg.client.Get(tg.URL + "/s/big")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1000))
	resp.Body.Close()
	eventually(t, "the second access line", func() bool { return len(accessLines(t, logs)) == 2 })
	if l := accessLines(t, logs)[1]; l["path"] != "/s/big" || l["status"] != float64(statusClientClosed) || l["aborted"] != true {
		t.Errorf("access line %v, want /s/big 499 aborted", l)
	}
	m := scrape(t, tg.g)
	for _, want := range []string{
		`rampart_gateway_requests_total{code="200",route="/s/"} 1`,
		`rampart_gateway_requests_total{code="499",route="/s/"} 1`,
		`rampart_gateway_upstream_errors_total{kind="aborted"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A service's interim answers (100 Continue, 103 Early Hints) never reach
// the client, and the final answer keeps the headers the gateway set
// (httputil.ReverseProxy clears the header map after a 1xx). The
// client's Expect is not forwarded: the gateway's own server answers it.
func TestInterimAnswersKeepGatewayHeaders(t *testing.T) {
	t.Parallel()
	sawExpect := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawExpect <- r.Header.Get("Expect")
		io.ReadAll(r.Body)
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer up.Close()
	logs := &syncBuffer{}
	lg := slog.New(slog.NewJSONHandler(logs, nil))
	const origin = "https://app.pay.example"
	tg := startGateway(t, Options{Routes: []Route{routeTo("/s/", up.URL, anonymous)}, CORS: &CORS{AllowedOrigins: []string{origin}},
		Limits: []ratelimit.Rule{rule("per-addr", 100, time.Second, byAddr)}, Logger: lg, AccessLog: lg})

	body := strings.Repeat("x", 2000)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(tg.URL, "https://"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /s/pay HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", origin, len(body))
	br := bufio.NewReader(conn)
	// Go's server answers 100 Continue itself once the proxy reads the
	// body; the body goes after it.
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusContinue {
		io.WriteString(conn, body)
		if resp, err = http.ReadResponse(br, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Fatalf("first answer %d, want the gateway's 100 Continue", resp.StatusCode)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("final answer %d, want the service's 500 (the 103 is not the client's)", resp.StatusCode)
	}
	for _, h := range []string{"Access-Control-Allow-Origin", "Vary", "Ratelimit", "Ratelimit-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("the final answer lost %s: %v", h, resp.Header)
		}
	}
	if got := <-sawExpect; got != "" {
		t.Errorf("the service saw Expect: %q", got)
	}
	eventually(t, "the access line", func() bool { return len(accessLines(t, logs)) == 1 })
	if l := accessLines(t, logs)[0]; l["status"] != float64(500) {
		t.Errorf("access line %v, want status 500", l)
	}
}

// A reload (SIGHUP, sent on every log rotation) gives nobody a fresh
// budget: the in-memory limits outlive it.
func TestReloadKeepsLimits(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	o := Options{Routes: []Route{routeTo("/s/", up.URL, anonymous)}, Limits: []ratelimit.Rule{rule("per-addr", 3, time.Hour, byAddr)}}
	tg := startGateway(t, o)
	codes := func(n int) []int {
		var c []int
		for range n {
			resp, _ := tg.get(t, "/s/x")
			c = append(c, resp.StatusCode)
		}
		return c
	}
	if got := fmt.Sprint(codes(4)); got != "[200 200 200 429]" {
		t.Fatalf("before the reload: %s", got)
	}
	if err := tg.g.Reload(o); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(codes(1)); got != "[429]" {
		t.Errorf("after a reload of the same configuration: %s, want [429]", got)
	}
}

// A client that declares a body and never sends it is answered, and its
// connection closed, once the route's timeout has passed: a slow or
// missing body holds nothing for long.
func TestMissingBodyIsBounded(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body) }))
	defer up.Close()
	tg := startGateway(t, Options{Routes: []Route{routeTo("/s/", up.URL, anonymous, timeout300ms)}})
	conn, err := tls.Dial("tcp", strings.TrimPrefix(tg.URL, "https://"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	io.WriteString(conn, "POST /s/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer after %v: %v", time.Since(start), err)
	}
	resp.Body.Close()
	// What the answer is depends on who notices first (the service may
	// answer the truncated body it got); that there is one, soon, is the
	// point.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered %d after %v, want an answer within about the 300 ms timeout", resp.StatusCode, d)
	}
}
