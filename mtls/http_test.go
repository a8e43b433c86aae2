package mtls

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// peerHandler answers the peer ID Authorize put in the context.
var peerHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := PeerID(r.Context())
	fmt.Fprintf(w, "%v %v", id, ok)
})

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checkForbidden(t *testing.T, code int, body, desc string) {
	t.Helper()
	var e map[string]string
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || e["error"] != "forbidden" || e["error_description"] != desc {
		t.Fatalf("got %d %s, want 403 forbidden %q", code, body, desc)
	}
}

func TestAuthorize(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	// Any workload of the trust domain completes the handshake; the
	// middleware narrows it to one ID.
	addr := serveTLS(t, ServerConfig(NewStatic(w.server), w.roots), Authorize(gateway)(peerHandler))
	client := func(id *tls.Certificate) *http.Client {
		r := NewStatic(issue(t, w.ca, gateway, time.Hour, now))
		if id != nil {
			r = NewStatic(*id)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: ClientConfig(r, w.roots, ledger)}}
	}

	code, body := get(t, client(nil), "https://"+addr+"/")
	if code != http.StatusOK || body != gateway.String()+" true" {
		t.Fatalf("allowed ID: %d %q", code, body)
	}
	other := issue(t, w.ca, intruder, time.Hour, now)
	code, body = get(t, client(&other), "https://"+addr+"/")
	checkForbidden(t, code, body, "SPIFFE ID spiffe://pay.internal/ns/dev/sa/intruder may not call this endpoint")

	// Plain HTTP, and TLS without a client certificate.
	plain := httptest.NewServer(Authorize(gateway)(peerHandler))
	defer plain.Close()
	code, body = get(t, plain.Client(), plain.URL)
	checkForbidden(t, code, body, "a verified client certificate is required")
	optional := httptest.NewUnstartedServer(Authorize(gateway)(peerHandler))
	optional.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: w.roots}
	optional.StartTLS()
	defer optional.Close()
	code, body = get(t, optional.Client(), optional.URL)
	checkForbidden(t, code, body, "a verified client certificate is required")

	// A certificate the server did not verify does not count.
	unverified := httptest.NewUnstartedServer(Authorize(gateway)(peerHandler))
	unverified.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	unverified.StartTLS()
	defer unverified.Close()
	c := unverified.Client()
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{issue(t, w.ca, gateway, time.Hour, now)}
	code, body = get(t, c, unverified.URL)
	checkForbidden(t, code, body, "a verified client certificate is required")

	if id, ok := PeerID(t.Context()); ok || !id.IsZero() {
		t.Errorf("PeerID of a bare context = %v, %v", id, ok)
	}
	defer func() {
		if recover() == nil {
			t.Error("Authorize() without IDs did not panic")
		}
	}()
	Authorize()
}
