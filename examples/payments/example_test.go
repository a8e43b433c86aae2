package payments_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/examples/payments"
	"github.com/rampartsec/rampart/mtls"
)

// The service behind mutual TLS that admits only the gateway, called by
// the gateway on behalf of a client whose token carries payment.read.
func Example() {
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	gatewayID := spiffeid.RequireFromPath(td, "/ns/prod/sa/gateway")
	serviceID := spiffeid.RequireFromPath(td, "/ns/prod/sa/payments")
	ca, _, err := mtls.NewCA(td, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	roots, err := mtls.NewBundle(td, ca.Root) // mtls.LoadBundle(td, "root.pem") from rampart ca init
	if err != nil {
		log.Fatal(err)
	}

	tokens := newTokenIssuer(exampleTB{}, time.Now) // the authorization server's keys
	svc, err := payments.New(payments.Config{Gateways: []spiffeid.ID{gatewayID}, Roots: roots, Tokens: tokens.v})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc)
	srv.Listener = tls.NewListener(srv.Listener, mtls.ServerConfig(mtls.NewStatic(certFor(ca, serviceID)), roots, gatewayID))
	srv.Start()
	defer srv.Close()

	gateway := &http.Client{Transport: &http.Transport{
		TLSClientConfig: mtls.ClientConfig(mtls.NewStatic(certFor(ca, gatewayID)), roots, serviceID),
	}}
	call := func(method, path, body string) {
		req, _ := http.NewRequest(method, "https://"+srv.Listener.Addr().String()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokens.mint(exampleTB{}, "shop", []string{payments.ScopeRead}, nil))
		req.Header.Set("Content-Type", "application/json")
		resp, err := gateway.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusForbidden {
			// RFC 6750 §3.1: what the client must ask for.
			var refusal struct{ Error, Scope string }
			json.Unmarshal(out, &refusal)
			out = []byte(refusal.Error + " " + refusal.Scope)
		}
		fmt.Printf("%s %s: %d %s\n", method, path, resp.StatusCode, strings.TrimSpace(string(out)))
	}
	call("GET", "/v1/payments", "")
	call("POST", "/v1/payments", `{"amount_minor": 1250, "currency": "EUR", "payee": "ACME Ltd"}`)
	// Output:
	// GET /v1/payments: 200 {"payments":[]}
	// POST /v1/payments: 403 insufficient_scope payment.write
}

// certFor issues a day's certificate for id.
func certFor(ca *mtls.CA, id spiffeid.ID) tls.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	chain, err := ca.Issue(id, nil, mtls.DefaultTTL, k.Public(), time.Now())
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{chain[0].Raw, chain[1].Raw}, PrivateKey: k, Leaf: chain[0]}
}

// exampleTB lets the examples use the tests' helpers: a failure ends the
// example.
type exampleTB struct{ testing.TB }

func (exampleTB) Helper()                   {}
func (exampleTB) Fatal(args ...any)         { log.Fatal(args...) }
func (exampleTB) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
