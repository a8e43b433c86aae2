// Package httpxtest sends ambiguously framed HTTP/1 requests over raw
// connections, for the tests of every server that applies httpx.Framing:
// each is followed on its connection by a second request, and the server
// must answer exactly one and close the connection (RFC 9112 §6.1).
package httpxtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Smuggled is the request that follows each case on its connection.
const Smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// Case is a request whose framing another implementation could read
// otherwise, or that net/http refuses.
type Case struct {
	Name string
	// Raw is the request, then Smuggled.
	Raw string
	// ByGo says net/http itself refuses it (status Status, then closes).
	ByGo   bool
	Status int
}

// Cases are the requests for path (a path the server answers, with any
// status), with CRLF line ends.
func Cases(path string) []Case {
	post := "POST " + path + " HTTP/1.1\r\nHost: x\r\n"
	return []Case{
		// CL.TE (RFC 9112 §6.1): net/http frames by chunked and deletes
		// Content-Length.
		{Name: "content-length and chunked", Raw: post + "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + Smuggled},
		{Name: "chunked and content-length", Raw: post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + Smuggled},
		{Name: "chunked in another case", Raw: post + "Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n" + Smuggled},
		{Name: "folded transfer-encoding", Raw: post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + Smuggled},
		{Name: "folded content-length", Raw: post + "Content-Length:\r\n 3\r\n\r\nabc" + Smuggled},
		{Name: "two identical content-lengths", Raw: post + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + Smuggled},
		{Name: "plain chunked", Raw: post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + Smuggled},
		{Name: "http/1.0 with transfer-encoding", Raw: "POST " + path + " HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc" + Smuggled},
		{Name: "http/1.0 keep-alive", Raw: "GET " + path + " HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n" + Smuggled},
		// Refused by net/http on its own; kept here so that it stays so.
		{Name: "two different content-lengths", Raw: post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + Smuggled, ByGo: true, Status: http.StatusBadRequest},
		{Name: "content-length list", Raw: post + "Content-Length: 3, 3\r\n\r\nabc" + Smuggled, ByGo: true, Status: http.StatusBadRequest},
		{Name: "signed content-length", Raw: post + "Content-Length: +3\r\n\r\nabc" + Smuggled, ByGo: true, Status: http.StatusBadRequest},
		{Name: "gzip, chunked", Raw: post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + Smuggled, ByGo: true, Status: http.StatusNotImplemented},
		{Name: "two transfer-encodings", Raw: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + Smuggled, ByGo: true, Status: http.StatusNotImplemented},
		{Name: "space before the colon", Raw: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + Smuggled, ByGo: true, Status: http.StatusBadRequest},
	}
}

// Dialer opens a new connection to the server under test: net.Dial, or
// tls.Dial offering http/1.1 only.
type Dialer func() (net.Conn, error)

// Check sends each of Cases(path) on a new connection and fails t unless
// exactly one response comes back and the server then closes the
// connection. It returns the status of each case's response, by name.
func Check(t testing.TB, dial Dialer, path string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, c := range Cases(path) {
		status, err := one(dial, c.Raw)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if c.ByGo && status != c.Status {
			t.Errorf("%s: status %d, want net/http's %d", c.Name, status, c.Status)
		}
		got[c.Name] = status
	}
	return got
}

// one sends raw on a new connection and reads one response, then expects
// the connection to be closed.
func one(dial Dialer, raw string) (int, error) {
	conn, err := dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// A server that keeps the connection would make the read below wait:
	// long enough that a slow machine does not close it for the server.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return 0, err
	}
	br := bufio.NewReader(conn)
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return 0, fmt.Errorf("no response: %w", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, fmt.Errorf("reading the response: %w", err)
	}
	resp.Body.Close()
	if err := closed(br); err != nil {
		return resp.StatusCode, fmt.Errorf("after a %d response: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

// closed reads what follows the first response: nothing, then the end of
// the connection.
func closed(br *bufio.Reader) error {
	b, err := br.ReadByte()
	switch {
	case err == nil:
		if second, rerr := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(string(b)), br)), nil); rerr == nil {
			return fmt.Errorf("a second response (%s): the server read the bytes after the request as another", second.Status)
		}
		return fmt.Errorf("more bytes after the response")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the connection stayed open")
	}
	// io.EOF, or a reset: closed.
	return nil
}

// KeepAlive sends two GET requests for path pipelined on one connection
// and fails t unless both are answered: a request without a body keeps
// its connection, so the guard is not simply closing every connection.
func KeepAlive(t testing.TB, dial Dialer, path string) {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	get := "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(conn, get+get); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("keep-alive: response %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i == 0 && resp.Close {
			t.Fatalf("keep-alive: the first GET's answer closes the connection (%s)", resp.Status)
		}
	}
}

// H2 sends one request on a new HTTP/2 connection made by dial (TLS
// offering h2): the header fields as given (pseudo-header fields first),
// then data in one DATA frame that ends the stream (none if data is nil).
// It returns the response's status, or an error if the server reset the
// stream or the connection instead. Unlike Go's HTTP/2 client, it sends
// what it is given: several content-length fields, one that does not
// match the data, methods that are not tokens.
func H2(dial Dialer, fields [][2]string, data []byte) (int, error) {
	conn, err := dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return 0, err
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return 0, err
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: data == nil}); err != nil {
		return 0, err
	}
	if data != nil {
		if err := fr.WriteData(1, true, data); err != nil {
			return 0, err
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, fmt.Errorf("reading frames: %w", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				status := f.PseudoValue("status")
				var code int
				if _, err := fmt.Sscan(status, &code); err != nil {
					return 0, fmt.Errorf("status %q", status)
				}
				return code, nil
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return 0, fmt.Errorf("stream reset: %v", f.ErrCode)
			}
		case *http2.GoAwayFrame:
			return 0, fmt.Errorf("connection closed: GOAWAY %v", f.ErrCode)
		}
	}
}
