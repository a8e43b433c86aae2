package demo

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/app/controlplane"
	"github.com/rampartsec/rampart/internal/app/edge"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/internal/util/pki"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/token"
)

// audience is the aud of the demo's access tokens.
const audience = "payments"

// system is everything the demo starts.
type system struct {
	dir     string
	logs    io.Writer // the demo's servers' logs
	logger  *slog.Logger
	closers []func()

	// The public PKI, and pinning.
	policy, reportOnly *pin.Policy
	leafPin, backupPin pin.Pin
	primary, renewed   [2][]byte      // PEM chain and key of the gateway's certificate, current and on the backup key
	publicRoots        *x509.CertPool // the clients' trust store: the demo CA and the compromised one
	demoRoots          *x509.CertPool // the demo CA alone
	publicCA           *pki.CA
	attacker           *listener
	attackerSawAPIKey  atomic.Bool

	// The internal PKI and the services' identities.
	ca                   *mtls.CA
	internalRoots        *x509.CertPool     // the internal CA's root, for crypto/tls
	internalBundle       *x509bundle.Bundle // the same, as the trust domain's bundle, for mtls
	gatewayID, paymentID spiffeid.ID

	// The control plane.
	store  store.Store
	keys   *apikey.Manager
	cpURL  string
	appKey apikey.Key

	// The edge and the service.
	gateway, admin, payments  *listener
	gatewayIdentity, payIdent *mtls.Reloader

	rotation rotated
}

func (s *system) file(name string) string { return filepath.Join(s.dir, name) }

func start(ctx context.Context, dir string, logs io.Writer) (_ *system, err error) {
	s := &system{dir: dir, logs: logs, logger: slog.New(slog.NewTextHandler(logs, nil))}
	defer func() {
		if err != nil {
			s.close() // s, not the result: nil on error
		}
	}()
	steps := []func(context.Context) error{s.publicPKI, s.internalPKI, s.controlPlane, s.paymentService, s.edge}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	return s, nil
}

func (s *system) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (s *system) onClose(f func()) { s.closers = append(s.closers, f) }

// publicPKI makes the gateway's public certificate, its renewal on the
// backup key, the attacker's certificate from a compromised CA, and the
// pin policy.
func (s *system) publicPKI(context.Context) error {
	w, err := newWebPKI()
	if err != nil {
		return err
	}
	s.publicRoots = pki.Pool(w.root, w.rogueRoot)
	s.demoRoots = pki.Pool(w.root)
	s.publicCA = w.inter
	if s.primary, err = pemPair(w.leaf); err != nil {
		return err
	}
	if s.renewed, err = pemPair(w.renewed); err != nil {
		return err
	}
	backupKeyPEM, err := pki.KeyPEM(w.backupKey)
	if err != nil {
		return err
	}
	s.leafPin = pin.FromCertificate(w.leaf.Cert)
	if s.backupPin, err = pin.FromPrivateKey(w.backupKey); err != nil {
		return err
	}
	// The attacker answers like the API and notes whether a client sent
	// it an API key: what it would steal.
	attacker := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _ := auth.ParseCredential(r); c.Method == auth.APIKey {
			s.attackerSawAPIKey.Store(true)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"payments":[]}`+"\n")
	})
	if s.attacker, err = s.serve(attacker, &tls.Config{Certificates: []tls.Certificate{w.rogue.TLS()}}); err != nil {
		return err
	}
	return s.writeFiles(map[string][]byte{
		"roots.pem":     pki.CertPEM(w.root.Cert, w.rogueRoot.Cert),
		"public-ca.pem": pki.CertPEM(w.root.Cert),
		"backup.key":    backupKeyPEM,
		"gateway.pem":   s.primary[0],
		"gateway.key":   s.primary[1],
	})
}

// policies makes the pin policies, which report to the control plane.
func (s *system) policies() error {
	domain := pin.Domain{Name: Host, Pins: []pin.Pin{s.leafPin, s.backupPin}, ReportURI: s.cpURL + "/v1/reports"}
	var err error
	if s.policy, err = pin.NewPolicy("", domain); err != nil {
		return err
	}
	domain.Mode = pin.ReportOnly
	if s.reportOnly, err = pin.NewPolicy("", domain); err != nil {
		return err
	}
	return s.writeFiles(map[string][]byte{"policy.yaml": fmt.Appendf(nil, `# Rampart pin policy for the demo API.
version: 1
domains:
  - domain: %s
    mode: enforce
    pins:
      - %s   # current key
      - %s   # backup key, kept offline (backup.key)
    report_uri: %s
`, Host, s.leafPin, s.backupPin, domain.ReportURI)})
}

// internalPKI makes the internal CA that names services by SPIFFE ID.
func (s *system) internalPKI(context.Context) error {
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	ca, _, err := mtls.NewCA(td, time.Now())
	if err != nil {
		return err
	}
	s.ca = ca
	s.internalRoots = x509.NewCertPool()
	s.internalRoots.AddCert(ca.Root)
	if s.internalBundle, err = mtls.NewBundle(td, ca.Root); err != nil {
		return err
	}
	s.gatewayID = spiffeid.RequireFromPath(td, "/gateway")
	s.paymentID = spiffeid.RequireFromPath(td, "/payments")
	return s.writeFiles(map[string][]byte{"internal-ca.pem": pki.CertPEM(ca.Root)})
}

// issue makes a workload certificate on a new key.
func (s *system) issue(id spiffeid.ID, dns []string, ttl time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := s.ca.Issue(id, dns, ttl, key.Public(), time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// identityFiles issues a workload's first certificate directly (as
// rampart ca issue does) and writes it to NAME.pem and NAME.key.
func (s *system) identityFiles(id spiffeid.ID, name string) error {
	cert, err := s.issue(id, nil, time.Hour)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return s.writeFiles(map[string][]byte{
		name + ".pem": chain,
		name + ".key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	})
}

// identity starts the Reloader of a service from its first certificate
// (identityFiles); it then renews itself at the control plane,
// authenticated by the certificate it holds.
func (s *system) identity(ctx context.Context, id spiffeid.ID, name string) (*mtls.Reloader, error) {
	if err := s.identityFiles(id, name); err != nil {
		return nil, err
	}
	r := &mtls.Reloader{CertFile: s.file(name + ".pem"), KeyFile: s.file(name + ".key"), Logger: s.logger}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.demoRoots, GetClientCertificate: r.GetClientCertificate, MinVersion: tls.VersionTLS12,
	}}}
	r.Renew = mtls.Renewer(s.cpURL+"/v1/certificates/renew", client, nil)
	rctx, cancel := context.WithCancel(context.Background())
	s.onClose(cancel)
	if err := r.Start(rctx); err != nil {
		return nil, err
	}
	return r, nil
}

// controlPlane starts what rampart serve starts (controlplane.New), with
// demo options: the demo's data directory, a certificate from the public
// CA for the names clients use, the internal CA's renewal endpoint with
// short certificates, and a bundle cache of a second.
func (s *system) controlPlane(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.cpURL = "https://localhost:" + port(ln.Addr().String())
	if err := s.policies(); err != nil {
		ln.Close()
		return err
	}
	// The control plane faces the clients (reports, pin bundles,
	// tokens): its certificate is from the public CA.
	cert, err := s.publicCA.Issue(pki.LeafOptions{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	var pair [2][]byte
	if err == nil {
		pair, err = pemPair(cert)
	}
	if err == nil {
		err = s.writeFiles(map[string][]byte{"cp.pem": pair[0], "cp.key": pair[1]})
	}
	if err != nil {
		ln.Close()
		return err
	}
	cp, err := controlplane.New(ctx, controlplane.Options{
		Source: &controlplane.Source{Flags: controlplane.File{
			DataDir: s.dir, TLSCert: s.file("cp.pem"), TLSKey: s.file("cp.key"),
			Issuer: s.cpURL, Audience: audience, Scopes: Scopes, Retention: "90d",
		}, Rate: 10, Burst: 100},
		Stderr:           s.logs,
		Listener:         ln,
		CA:               s.ca,
		RenewMaxLifetime: time.Hour,
		BundleCacheTTL:   time.Second,
	})
	if err != nil {
		return err
	}
	s.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cp.Shutdown(cctx)
		cp.Close()
	})
	go cp.Serve()
	s.store, s.keys = cp.Store(), cp.APIKeys()
	if _, err := s.keys.CreateClient(ctx, apikey.Client{ID: "demo-app", Name: "Demo app", Scopes: Scopes}); err != nil {
		return err
	}
	s.appKey, _, err = s.keys.Create(ctx, "demo-app", Scopes, time.Time{})
	return err
}

// cpClient calls the control plane, trusting the demo CA alone (not the
// compromised one): for the JWKS, tokens and reports.
func (s *system) cpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.demoRoots, MinVersion: tls.VersionTLS12},
	}}
}

// credentials are the API-key and token checks of one service.
func (s *system) credentials() (*apikey.Verifier, *token.Validator) {
	v := &apikey.Verifier{Store: s.store.APIKeys(), Pepper: s.keys.Pepper, Logger: s.logger}
	s.onClose(func() { v.Close() })
	return v, &token.Validator{
		Issuer: s.cpURL, Audience: audience, JWKSURL: s.cpURL + "/oauth2/jwks",
		Client: s.cpClient(), Revoked: s.store.RevokedTokens().TokenRevoked,
	}
}

// paymentService starts the demo's payment API (payments.go) behind
// mutual TLS that admits the gateway alone.
func (s *system) paymentService(ctx context.Context) error {
	ident, err := s.identity(ctx, s.paymentID, "payments-svc")
	if err != nil {
		return err
	}
	s.payIdent = ident
	keys, tokens := s.credentials()
	svc, err := newPaymentAPI(s.gatewayID, s.internalBundle, keys, tokens)
	if err != nil {
		return err
	}
	s.payments, err = s.serve(svc, mtls.ServerConfig(ident, s.internalBundle, s.gatewayID))
	return err
}

// edge starts the gateway as rampart gateway does (internal/app/edge),
// from the configuration file it writes, with demo options: listeners of
// its own, certificate files checked often (so that the renewal check is
// quick), its logs with the demo's.
func (s *system) edge(ctx context.Context) error {
	if err := s.identityFiles(s.gatewayID, "gateway-svc"); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return err
	}
	// The file names files by absolute paths: relative ones would be the
	// file's directory's.
	dir, err := filepath.Abs(s.dir)
	if err != nil {
		ln.Close()
		adminLn.Close()
		return err
	}
	conf := s.gatewayFile(dir, ln.Addr(), adminLn.Addr())
	var f *edge.File
	if err = s.writeFiles(map[string][]byte{"gateway.yaml": conf}); err == nil {
		f, err = edge.Load(s.file("gateway.yaml"))
	}
	if err != nil {
		ln.Close()
		adminLn.Close()
		return err
	}
	e, err := edge.New(ctx, edge.Options{
		File: f, Logger: s.logger, LogFormat: "text", Stdout: s.logs, Stderr: s.logs,
		Listener: ln, AdminListener: adminLn, PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		e.Serve()
	}()
	s.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
		<-served
		e.Close()
	})
	s.gatewayIdentity = e.Identity()
	s.gateway = &listener{addr: ln.Addr().String()}
	s.admin = &listener{addr: adminLn.Addr().String()}
	return nil
}

// gatewayFile is the demo's gateway.yaml, naming the files in dir and
// the listeners' addresses: what rampart gateway --config takes.
func (s *system) gatewayFile(dir string, listen, admin net.Addr) []byte {
	return fmt.Appendf(nil, `# The demo's gateway (rampart gateway --config gateway.yaml takes the same file).
listen: %[1]s
tls: {cert: %[2]s/gateway.pem, key: %[2]s/gateway.key}
admin_listen: %[3]s
identity:
  cert: %[2]s/gateway-svc.pem
  key: %[2]s/gateway-svc.key
  roots: %[2]s/internal-ca.pem
  renew: {url: %[6]s/v1/certificates/renew, roots: %[2]s/public-ca.pem}
routes:
  - prefix: /v1/
    upstream: https://%[4]s
    upstream_id: %[5]s
    auth: required
    max_body: 64KiB
    timeout: 10s
cors:
  allowed_origins: [https://app.payments.test]
  allowed_methods: [GET, POST]
  allowed_headers: [Authorization, Content-Type, X-API-Key]
  max_age: 10m
ratelimit:
  rules:
    - {name: per-address, rate: 200, per: 1s, burst: 400, by: [addr]}
    - {name: per-client, rate: 50, per: 1s, burst: 200, by: [client]}
auth:
  tokens: {issuer: %[6]s, audience: %[7]s, jwks_url: %[6]s/oauth2/jwks, jwks_roots: %[2]s/public-ca.pem}
  api_keys: {data_dir: %[2]s}
access_log: stderr
`, listen, dir, admin, s.payments.addr, s.paymentID, s.cpURL, audience)
}

// writeFiles writes files into the demo directory, 0600, each through a
// rename so that a watcher never sees half of one.
func (s *system) writeFiles(files map[string][]byte) error {
	for name, data := range files {
		tmp := s.file("." + name + ".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, s.file(name)); err != nil {
			return err
		}
	}
	return nil
}

// listener is an HTTP server on loopback.
type listener struct {
	srv  *http.Server
	addr string
}

func (s *system) serve(h http.Handler, tc *tls.Config) (*listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return s.serveOn(ln, h, tc), nil
}

var discardLog = log.New(io.Discard, "", 0)

func (s *system) serveOn(ln net.Listener, h http.Handler, tc *tls.Config) *listener {
	srv := &http.Server{
		Handler:           httpx.Framing(h), // as rampart serve and gateway do: ambiguous framing answered and closed
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes are the point of several checks.
		ErrorLog: discardLog,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if tc != nil {
			srv.ServeTLS(ln, "", "")
		} else {
			srv.Serve(ln)
		}
	}()
	s.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
	})
	return &listener{srv: srv, addr: ln.Addr().String()}
}

// webPKI is the public PKI the demo simulates: a CA the clients trust with
// the gateway's certificate and its renewal on the backup key, and a
// compromised CA, also trusted, that issued the attacker's certificate for
// the same name.
type webPKI struct {
	root, inter, rogueRoot *pki.CA
	leaf, renewed, rogue   *pki.Leaf
	backupKey              crypto.Signer
}

func newWebPKI() (*webPKI, error) {
	var w webPKI
	var err error
	if w.root, err = pki.NewRoot("Payments Demo Root CA"); err != nil {
		return nil, err
	}
	if w.inter, err = w.root.NewIntermediate("Payments Demo Issuing CA"); err != nil {
		return nil, err
	}
	valid := pki.LeafOptions{DNSNames: []string{Host}, NotAfter: time.Now().AddDate(0, 0, 90)}
	if w.leaf, err = w.inter.Issue(valid); err != nil {
		return nil, err
	}
	if w.rogueRoot, err = pki.NewRoot("Compromised Public CA"); err != nil {
		return nil, err
	}
	rogueCA, err := w.rogueRoot.NewIntermediate("Compromised Issuing CA")
	if err != nil {
		return nil, err
	}
	if w.rogue, err = rogueCA.Issue(valid); err != nil {
		return nil, err
	}
	if w.backupKey, err = pki.NewKey(pki.ECDSAP256); err != nil {
		return nil, err
	}
	valid.Key = w.backupKey
	if w.renewed, err = w.inter.Issue(valid); err != nil {
		return nil, err
	}
	return &w, nil
}

// pemPair is a leaf's chain and key in PEM.
func pemPair(l *pki.Leaf) ([2][]byte, error) {
	key, err := pki.KeyPEM(l.Key)
	return [2][]byte{pki.CertPEM(l.Chain...), key}, err
}
