package mtls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Renewal limits.
const (
	// MaxCSRSize is the largest request body RenewHandler reads.
	MaxCSRSize = 16 << 10
	// maxChainSize is the largest answer Renewer reads.
	maxChainSize = 256 << 10
)

// httpError is a refusal: code and kind (a short word) and msg go to the
// client, err (details that must not leak) to the log.
type httpError struct {
	code      int
	kind, msg string
	err       error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

func refuse(code int, kind, msg string) *httpError {
	return &httpError{code: code, kind: kind, msg: msg}
}

// RenewPolicy is how a [RenewHandler] renews. Its zero value is the
// default.
type RenewPolicy struct {
	// MaxLifetime caps the lifetime of renewed certificates. A renewal
	// keeps the lifetime its lineage was first issued with (the ttl given
	// to [CA.Issue], rampart ca issue --ttl), up to MaxLifetime. If 0,
	// [MaxTTL].
	MaxLifetime time.Duration
	// MaxLineage is how long after its lineage began ([LineageOf]) a
	// certificate may still renew: a stolen key keeps its identity this
	// long at most (plus the lifetime of the last renewal). If 0,
	// [DefaultMaxLineage].
	MaxLineage time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger receives a line per renewal, and per failed one: the CA's
	// audit trail. If nil, slog.Default().
	Logger *slog.Logger
}

// Check reports a policy RenewHandler refuses: MaxLifetime outside
// [0, MaxTTL] or a negative MaxLineage. It has no side effects.
func (p RenewPolicy) Check() error {
	if p.MaxLifetime < 0 || p.MaxLifetime > MaxTTL {
		return fmt.Errorf("mtls: renewal lifetime %v: want at most %v", p.MaxLifetime, MaxTTL)
	}
	if p.MaxLineage < 0 {
		return fmt.Errorf("mtls: renewal lineage %v: want 0 (the default) or more", p.MaxLineage)
	}
	return nil
}

// RenewHandler returns the handler of a renewal endpoint: a workload POSTs
// a PEM certificate request (at most [MaxCSRSize] bytes) over TLS with its
// current certificate as client certificate, and gets a new certificate
// for the same SPIFFE ID and names, as a PEM chain (leaf, then issuing
// certificate; Content-Type application/pem-certificate-chain).
//
// The request must be signed by the new key (ECDSA P-256, P-384 or P-521,
// Ed25519, or RSA of at least 2048 bits) and carry as its one URI SAN the
// current certificate's SPIFFE ID; its DNS and IP SANs, if any, must be
// among the current certificate's (renewal never widens a certificate);
// its subject and other extensions are ignored. The new certificate keeps
// the lifetime the first certificate of its lineage was issued with (at
// most p.MaxLifetime), and its lineage: once that began more than
// p.MaxLineage ago, renewal is refused.
//
// The TLS server must ask for client certificates (tls.RequestClientCert
// or stronger; [ServerConfig] does). The handler verifies the client
// certificate itself, against ca.Root alone and at p.Now: a connection
// made while an older certificate was valid cannot renew once it has
// expired. Any issuing CA under that root will do, so that after
// [CA.Rotate] certificates of the previous one renew onto the new one
// (rotating because an issuing key leaked is not enough: its certificate
// stays valid under the root until it expires; make a new CA).
//
// Refusals, as JSON {"error", "error_description"}:
//
//   - 401: no client certificate, or one not issued by ca or expired;
//   - 403: the request is for another SPIFFE ID, adds names the current
//     certificate does not have, or the lineage is older than
//     p.MaxLineage;
//   - 400: a malformed or wrongly signed request, a body cut short, or a
//     weak key;
//   - 413: a body over MaxCSRSize; 405: not POST.
//
// Renewals are logged (p.Logger) with the ID, serial and lineage: the
// CA's audit trail. RenewHandler panics if ca is nil, if ca.Root names
// another trust domain than ca.TrustDomain, or if p.Check fails: a caller
// whose policy comes from outside checks it first.
func RenewHandler(ca *CA, p RenewPolicy) http.Handler {
	if ca == nil || ca.Root == nil || ca.Issuing == nil {
		panic("mtls: RenewHandler needs a CA")
	}
	if _, err := NewBundle(ca.TrustDomain, ca.Root); err != nil {
		panic(fmt.Sprintf("mtls: RenewHandler: %v", err))
	}
	if err := p.Check(); err != nil {
		panic("mtls: RenewHandler: " + err.Error())
	}
	if p.MaxLifetime == 0 {
		p.MaxLifetime = MaxTTL
	}
	if p.MaxLineage == 0 {
		p.MaxLineage = DefaultMaxLineage
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	h := &renewHandler{ca: ca, p: p, roots: x509.NewCertPool()}
	h.roots.AddCert(ca.Root)
	return h
}

type renewHandler struct {
	ca    *CA
	p     RenewPolicy
	roots *x509.CertPool
}

func (h *renewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	chain, err := h.renew(w, r)
	if err == nil {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(chain)
		return
	}
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &mbe):
		he = &httpError{code: http.StatusRequestEntityTooLarge, kind: "too_large", msg: fmt.Sprintf("a certificate request is at most %d bytes", MaxCSRSize)}
	default:
		he = &httpError{code: http.StatusInternalServerError, kind: "internal_error", msg: "internal error", err: err}
	}
	if he.code >= 500 {
		h.p.Logger.Error("mtls: renewal failed", "remote", r.RemoteAddr, "err", err)
	}
	if he.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	writeError(w, he.code, he.kind, he.msg)
}

func (h *renewHandler) renew(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "method_not_allowed", "renew with POST")
	}
	// Authenticate before reading anything.
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "a client certificate (the current one) is required")
	}
	leaf := r.TLS.PeerCertificates[0]
	now := h.p.Now()
	// The intermediates are the CA's issuing certificate and those the
	// client sent: after a rotation (CA.Rotate), certificates of the
	// previous issuing CA renew onto the new one. The root alone is
	// trusted, and its name constraints bind every intermediate.
	inter := x509.NewCertPool()
	inter.AddCert(h.ca.Issuing)
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: h.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil || leaf.IsCA {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "the client certificate was not issued by this CA, or has expired")
	}
	current, err := IDOf(leaf)
	if err != nil || current.Path() == "" || !current.MemberOf(h.ca.TrustDomain) {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "the client certificate carries no workload SPIFFE ID of this CA's trust domain")
	}
	lin, ok := LineageOf(leaf)
	if !ok && hasPolicies(leaf) {
		// This CA writes a policies extension into every certificate
		// since lineages exist; one it cannot read would start a new
		// lineage at every renewal, and the limit would never come.
		return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf(
			"the certificate's lineage cannot be read: issue a new certificate for %s", current))
	}
	if !ok {
		// Issued before lineages were recorded: it begins here.
		lin = Lineage{Since: leaf.NotBefore, TTL: leaf.NotAfter.Sub(leaf.NotBefore) - Backdate}
		if lin.TTL < time.Second {
			lin.TTL = h.p.MaxLifetime
		}
		lin.TTL = min(lin.TTL, MaxTTL)
	}
	if end := lin.Since.Add(h.p.MaxLineage); !now.Before(end) {
		return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf(
			"the certificate's lineage began at %s, more than %v ago (the renewal limit): issue a new certificate for %s",
			lin.Since.UTC().Format(time.RFC3339), h.p.MaxLineage, current))
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxCSRSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		// A body cut short: the client's doing, not the server's.
		return nil, refuse(http.StatusBadRequest, "bad_request", "the request body ended before its length")
	}
	block, _ := pem.Decode(body)
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, refuse(http.StatusBadRequest, "bad_request", "the body must be a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_request", "the certificate request does not parse")
	}
	id, err := csrID(csr)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_request", describe(err))
	}
	if id != current {
		return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf("the request is for %s, the client certificate for %s", id, current))
	}
	for _, n := range csr.DNSNames {
		if !slices.Contains(leaf.DNSNames, n) {
			return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf("DNS name %q is not in the current certificate: renewal cannot add names", n))
		}
	}
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf("IP address %s is not in the current certificate: renewal cannot add names", ip))
		}
	}
	chain, err := h.ca.issue(id, csr.DNSNames, csr.IPAddresses, min(lin.TTL, h.p.MaxLifetime), csr.PublicKey, now, lin)
	if err != nil {
		if errors.Is(err, ErrCANotValid) {
			return nil, err // the CA's fault: a 500, logged
		}
		return nil, refuse(http.StatusBadRequest, "bad_request", describe(err))
	}
	h.p.Logger.Info("mtls: certificate renewed", "id", id.String(), "serial", fmt.Sprintf("%x", chain[0].SerialNumber),
		"not_after", chain[0].NotAfter.UTC(), "lineage_since", lin.Since.UTC(),
		"previous_serial", fmt.Sprintf("%x", leaf.SerialNumber), "remote", r.RemoteAddr)
	var out bytes.Buffer
	for _, c := range chain {
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return out.Bytes(), nil
}

// Renewer returns a [Reloader.Renew] function that renews a certificate
// at a [RenewHandler] at url (rampart serve's is
// https://HOST/v1/certificates/renew): it makes a certificate request for
// the current certificate's SPIFFE ID, DNS names and IP addresses, on key
// (a new ECDSA P-256 key each time if key is nil), and POSTs it with
// client. Each renewal uses a new connection, so that the handshake
// presents the current certificate.
//
// client must present the Reloader's certificate: [RenewalClient] makes
// one; otherwise its transport's TLS config is [ClientConfig] of the
// Reloader for a server with a SPIFFE ID, or a tls.Config with the
// server's RootCAs and the Reloader's GetClientCertificate. The answer
// must be for the same ID and key; the Reloader then checks that it is
// valid. A refusal is an error holding the status and the server's
// error_description. Renewer panics if client is nil.
//
// For a Reloader that starts from files and renews:
//
//	r := &mtls.Reloader{CertFile: "gw.pem", KeyFile: "gw.key"}
//	renew := mtls.Renewer("https://cp.pay.internal/v1/certificates/renew", mtls.RenewalClient(r, cpRoots), nil)
//	r.Renew = mtls.SaveRenewals(renew, r.CertFile, r.KeyFile) // a restart begins from the latest
//	err := r.Start(ctx)
//
// The files are read once, at Start; without [SaveRenewals] the renewed
// certificates live in memory only, and a process restarted after the
// files' certificate expired cannot start.
func Renewer(url string, client *http.Client, key crypto.Signer) func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
	if client == nil {
		panic("mtls: Renewer needs an http.Client that presents the current certificate")
	}
	return func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
		if current == nil || len(current.Certificate) == 0 {
			return nil, newError("renewal needs a current certificate to authenticate with")
		}
		leaf := current.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(current.Certificate[0]); err != nil {
				return nil, errorf("current certificate: %w", err)
			}
		}
		id, err := IDOf(leaf)
		if err != nil {
			return nil, err
		}
		k := key
		if k == nil {
			if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				return nil, errorf("%w", err)
			}
		}
		csr, err := newCSR(id, leaf.DNSNames, leaf.IPAddresses, k)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(csr))
		if err != nil {
			return nil, errorf("renewal: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-pem-file")
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			return nil, errorf("renewal: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxChainSize))
		if err != nil {
			return nil, errorf("renewal: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Desc string `json:"error_description"`
			}
			json.Unmarshal(body, &e)
			if e.Desc == "" {
				e.Desc = "no details"
			}
			return nil, errorf("renewal refused: %s: %s", resp.Status, e.Desc)
		}
		return parseChain(body, k, id)
	}
}

// RenewalClient returns an http.Client for [Renewer] that presents r's
// current certificate as its client certificate and verifies the renewal
// server's certificate, as any HTTPS client does (its host name included),
// against roots (the system roots if nil): a control plane is reached by
// its name, like any other HTTPS server. It uses no proxy from the
// environment, keeps no idle connection (each renewal presents the
// certificate of the moment), and gives up on a request after 30 seconds.
// RenewalClient panics if r is nil.
func RenewalClient(r *Reloader, roots *x509.CertPool) *http.Client {
	if r == nil {
		panic("mtls: RenewalClient needs the Reloader whose certificate it presents")
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			TLSClientConfig: &tls.Config{
				MinVersion:           tls.VersionTLS12,
				RootCAs:              roots,
				GetClientCertificate: r.GetClientCertificate,
			},
			DisableKeepAlives:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		},
	}
}

// newCSR makes a PEM certificate request for id, dnsNames and ips on k.
func newCSR(id spiffeid.ID, dnsNames []string, ips []net.IP, k crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		URIs:        []*url.URL{id.URL()},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, k)
	if err != nil {
		return nil, errorf("certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// parseChain reads a renewal answer: a PEM chain whose leaf is for id and
// k.
func parseChain(data []byte, k crypto.Signer, id spiffeid.ID) (*tls.Certificate, error) {
	var c tls.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			c.Certificate = append(c.Certificate, b.Bytes)
		}
	}
	if len(c.Certificate) == 0 {
		return nil, newError("renewal answer holds no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, errorf("renewal answer: %w", err)
	}
	if got, err := IDOf(leaf); err != nil || got != id {
		return nil, errorf("renewal answer is for %v, not %s", leaf.URIs, id)
	}
	if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, newError("renewal answer is for another key")
	}
	c.PrivateKey, c.Leaf = k, leaf
	return &c, nil
}

// SaveRenewals wraps renew, a [Reloader.Renew] function such as
// [Renewer]'s, so that every certificate it obtains is also written to
// certFile and keyFile ([WriteFiles]) before the Reloader uses it: a
// process that restarts begins from its latest certificate, not from the
// one it was first given, which may have expired since. A certificate that
// cannot be written is a failed renewal, retried as any other.
func SaveRenewals(renew func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error), certFile, keyFile string) func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
	if renew == nil {
		panic("mtls: SaveRenewals needs a Renew function")
	}
	return func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
		c, err := renew(ctx, current)
		if err != nil {
			return nil, err
		}
		if err := WriteFiles(certFile, keyFile, c); err != nil {
			return nil, err
		}
		return c, nil
	}
}

// WriteFiles writes c's chain (PEM, leaf first) to certFile and its
// private key (PEM PKCS #8, mode 0600) to keyFile, replacing them so that
// a reader finds the old pair or the new one: each is written whole and
// synced beside the old one (NAME.new), then renamed over it, the key
// first. certFile keeps its mode (0644 if new). Should it stop between the
// two renames, the key is new, certFile still the old chain and
// certFile.new the new one: rename it to finish (rampart ca renew does).
func WriteFiles(certFile, keyFile string, c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 {
		return newError("no certificate to write")
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return errorf("the private key: %w", err)
	}
	var chain []byte
	for _, d := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	certMode := os.FileMode(0o644)
	if st, err := os.Stat(certFile); err == nil {
		certMode = st.Mode().Perm()
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{keyFile + ".new", key, 0o600}, {certFile + ".new", chain, certMode}} {
		if err := writeWhole(f.name, f.data, f.mode); err != nil {
			os.Remove(keyFile + ".new")
			os.Remove(certFile + ".new")
			return errorf("%w", err)
		}
	}
	if err := os.Rename(keyFile+".new", keyFile); err != nil {
		os.Remove(keyFile + ".new")
		os.Remove(certFile + ".new")
		return errorf("%w", err)
	}
	if err := os.Rename(certFile+".new", certFile); err != nil {
		return errorf("%w: the new key is in place; finish with: mv %s.new %s", err, certFile, certFile)
	}
	for _, dir := range []string{filepath.Dir(keyFile), filepath.Dir(certFile)} {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// writeWhole writes data to name (replacing it) with mode, synced.
func writeWhole(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil { // whatever the umask, or an older file, said
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
