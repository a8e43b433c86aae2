package mtls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/mtls"
)

// A CA for pay.internal issues the ledger service a day's certificate.
func ExampleCA_Issue() {
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	ca, rootKey, err := mtls.NewCA(td, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	_ = rootKey // keep it offline

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ledger := spiffeid.RequireFromPath(td, "/ns/prod/sa/ledger")
	chain, err := ca.Issue(ledger, []string{"ledger.pay.internal"}, 24*time.Hour, key.Public(), time.Now())
	if err != nil {
		log.Fatal(err)
	}
	id, _ := mtls.IDOf(chain[0])
	fmt.Println(id, chain[0].DNSNames, "issued by", chain[1].Subject.CommonName)

	// Another trust domain is refused.
	_, err = ca.Issue(spiffeid.RequireFromString("spiffe://bank.internal/teller"), nil, time.Hour, key.Public(), time.Now())
	fmt.Println(err)
	// Output:
	// spiffe://pay.internal/ns/prod/sa/ledger [ledger.pay.internal] issued by pay.internal issuing CA
	// mtls: SPIFFE ID outside the CA's trust domain: spiffe://bank.internal/teller is not in pay.internal
}

// The ledger service accepts only the gateway, reloads its certificate
// files when they change, and knows who called.
func ExampleServerConfig() {
	ctx := context.Background()
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	gateway := spiffeid.RequireFromPath(td, "/ns/prod/sa/gateway")
	// The roots of pay.internal (root.pem of rampart ca init): they vouch
	// for pay.internal's IDs, and no other trust domain's.
	roots, err := mtls.LoadBundle(td, "root.pem")
	if err != nil {
		log.Print(err)
		return
	}

	cert := &mtls.Reloader{CertFile: "ledger.pem", KeyFile: "ledger.key"}
	if err := cert.Start(ctx); err != nil {
		log.Print(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", mtls.Authorize(roots, gateway)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := mtls.PeerID(r.Context())
		fmt.Fprintln(w, "hello", caller)
	})))
	srv := &http.Server{Addr: ":8443", Handler: mux, TLSConfig: mtls.ServerConfig(cert, roots, gateway)}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// A service that also takes calls from a federated partner: each trust
// domain's roots are configured for it, and vouch for its IDs alone, so
// bank.internal's CA cannot mint pay.internal's gateway, whatever its
// certificate names.
func ExampleServerConfig_federation() {
	pay := spiffeid.RequireTrustDomainFromString("pay.internal")
	bank := spiffeid.RequireTrustDomainFromString("bank.internal")
	ours, err := mtls.LoadBundle(pay, "root.pem")
	if err != nil {
		log.Print(err)
		return
	}
	theirs, err := mtls.LoadBundle(bank, "bank-root.pem") // refused if it names pay.internal
	if err != nil {
		log.Print(err)
		return
	}
	bundles := x509bundle.NewSet(ours, theirs)
	cert := mtls.NewStatic(tls.Certificate{}) // the service's certificate
	_ = mtls.ServerConfig(cert, bundles,
		spiffeid.RequireFromPath(pay, "/gateway"),
		spiffeid.RequireFromPath(bank, "/settlement"))
}

// The gateway calls the ledger, renewing its own certificate at the
// control plane's renewal endpoint with the certificate itself.
func ExampleRenewer() {
	ctx := context.Background()
	td := spiffeid.RequireTrustDomainFromString("pay.internal")
	roots, err := mtls.LoadBundle(td, "root.pem") // root.pem of rampart ca init
	if err != nil {
		log.Print(err)
		return
	}
	// The control plane's own CA: it is reached by its DNS name, as any
	// HTTPS server.
	cpRoots := x509.NewCertPool()

	// The first certificate comes from rampart ca issue; renewals from
	// rampart serve.
	cert := &mtls.Reloader{CertFile: "gateway.pem", KeyFile: "gateway.key"}
	cert.Renew = mtls.Renewer("https://rampart.internal:8443/v1/certificates/renew", mtls.RenewalClient(cert, cpRoots), nil)
	if err := cert.Start(ctx); err != nil {
		log.Print(err)
		return
	}

	ledger := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   mtls.ClientConfig(cert, roots, spiffeid.RequireFromPath(td, "/ns/prod/sa/ledger")),
		ForceAttemptHTTP2: true,
	}}
	resp, err := ledger.Get("https://ledger.internal:8443/v1/payments")
	if err != nil {
		log.Print(err)
		return
	}
	resp.Body.Close()
}
