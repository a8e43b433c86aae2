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
	"net/http"
	"net/url"
	"slices"
	"strings"
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

// RenewHandler returns the handler of a renewal endpoint: a workload POSTs
// a PEM certificate request (at most [MaxCSRSize] bytes) over TLS with its
// current certificate as client certificate, and gets a new certificate
// for the same SPIFFE ID, valid for ttl, as a PEM chain (leaf, then
// issuing certificate; Content-Type application/pem-certificate-chain).
// now is the clock (time.Now if nil).
//
// The TLS server must ask for client certificates and verify them against
// a pool holding ca.Root (tls.VerifyClientCertIfGiven or stronger). The
// handler verifies the client certificate again, against ca.Root alone and
// at now: a connection made while an older certificate was valid cannot
// renew once it has expired. Any issuing CA under that root will do, so
// that after [CA.Rotate] certificates of the previous one renew onto the
// new one (rotating because an issuing key leaked is not enough: its
// certificate stays valid under the root until it expires; make a new
// CA).
//
// Refusals, as JSON {"error", "error_description"}:
//
//   - 401: no verified client certificate, or one not issued by ca or
//     expired;
//   - 403: the request is for another SPIFFE ID, or adds DNS names the
//     current certificate does not have (renewal never widens a
//     certificate);
//   - 400: a malformed or wrongly signed request, a body cut short, or a
//     weak key;
//   - 413: a body over MaxCSRSize; 405: not POST.
//
// Renewals are logged (slog.Default) with the ID and serial: the CA's
// audit trail. RenewHandler panics if ca is nil or ttl is not in
// (0, MaxTTL].
func RenewHandler(ca *CA, ttl time.Duration, now func() time.Time) http.Handler {
	if ca == nil || ca.Root == nil || ca.Issuing == nil {
		panic("mtls: RenewHandler needs a CA")
	}
	if ttl <= 0 || ttl > MaxTTL {
		panic(fmt.Sprintf("mtls: RenewHandler: lifetime %v: want more than 0 and at most %v", ttl, MaxTTL))
	}
	if now == nil {
		now = time.Now
	}
	h := &renewHandler{ca: ca, ttl: ttl, now: now, roots: x509.NewCertPool()}
	h.roots.AddCert(ca.Root)
	return h
}

type renewHandler struct {
	ca    *CA
	ttl   time.Duration
	now   func() time.Time
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
		slog.Default().Error("mtls: renewal failed", "remote", r.RemoteAddr, "err", err)
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
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "a verified client certificate (the current one) is required")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	now := h.now()
	// The intermediates are the CA's issuing certificate and those the
	// client sent: after a rotation (CA.Rotate), certificates of the
	// previous issuing CA renew onto the new one. The root alone is
	// trusted, and its name constraints bind every intermediate.
	inter := x509.NewCertPool()
	inter.AddCert(h.ca.Issuing)
	for _, c := range r.TLS.PeerCertificates[min(1, len(r.TLS.PeerCertificates)):] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: h.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "the client certificate was not issued by this CA, or has expired")
	}
	current, err := IDOf(leaf)
	if err != nil || current.Path() == "" || !current.MemberOf(h.ca.TrustDomain) {
		return nil, refuse(http.StatusUnauthorized, "unauthorized", "the client certificate carries no workload SPIFFE ID of this CA's trust domain")
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
		return nil, refuse(http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), "mtls: "))
	}
	if id != current {
		return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf("the request is for %s, the client certificate for %s", id, current))
	}
	for _, n := range csr.DNSNames {
		if !slices.Contains(leaf.DNSNames, n) {
			return nil, refuse(http.StatusForbidden, "forbidden", fmt.Sprintf("DNS name %q is not in the current certificate: renewal cannot add names", n))
		}
	}
	chain, err := h.ca.Issue(id, csr.DNSNames, h.ttl, csr.PublicKey, now)
	if err != nil {
		if errors.Is(err, ErrCANotValid) {
			return nil, err // the CA's fault: a 500, logged
		}
		return nil, refuse(http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), "mtls: "))
	}
	slog.Default().Info("mtls: certificate renewed", "id", id.String(), "serial", fmt.Sprintf("%x", chain[0].SerialNumber),
		"not_after", chain[0].NotAfter.UTC(), "previous_serial", fmt.Sprintf("%x", leaf.SerialNumber), "remote", r.RemoteAddr)
	var out bytes.Buffer
	for _, c := range chain {
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return out.Bytes(), nil
}

// Renewer returns a [Reloader.Renew] function that renews a certificate
// at a [RenewHandler] at url: it makes a certificate request for the
// current certificate's SPIFFE ID and DNS names, on key (a new ECDSA P-256
// key each time if key is nil), and POSTs it with client. Each renewal
// uses a new connection, so that the handshake presents the current
// certificate.
//
// client must present the Reloader's certificate: its transport's TLS
// config is [ClientConfig] of the Reloader for a server with a SPIFFE ID,
// or a tls.Config with the server's RootCAs and the Reloader's
// GetClientCertificate. The answer must be for the same ID and key; the
// Reloader then checks that it is valid. Renewer panics if client is nil.
func Renewer(url string, client *http.Client, key crypto.Signer) func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
	if client == nil {
		panic("mtls: Renewer needs an http.Client that presents the current certificate")
	}
	return func(ctx context.Context, current *tls.Certificate) (*tls.Certificate, error) {
		if current == nil || len(current.Certificate) == 0 {
			return nil, errors.New("mtls: renewal needs a current certificate to authenticate with")
		}
		leaf := current.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(current.Certificate[0]); err != nil {
				return nil, fmt.Errorf("mtls: current certificate: %w", err)
			}
		}
		id, err := IDOf(leaf)
		if err != nil {
			return nil, err
		}
		k := key
		if k == nil {
			if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				return nil, fmt.Errorf("mtls: %w", err)
			}
		}
		csr, err := newCSR(id, leaf.DNSNames, k)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(csr))
		if err != nil {
			return nil, fmt.Errorf("mtls: renewal: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-pem-file")
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("mtls: renewal: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxChainSize))
		if err != nil {
			return nil, fmt.Errorf("mtls: renewal: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Desc string `json:"error_description"`
			}
			json.Unmarshal(body, &e)
			if e.Desc == "" {
				e.Desc = "no details"
			}
			return nil, fmt.Errorf("mtls: renewal refused: %s: %s", resp.Status, e.Desc)
		}
		return parseChain(body, k, id)
	}
}

// newCSR makes a PEM certificate request for id and dnsNames on k.
func newCSR(id spiffeid.ID, dnsNames []string, k crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		URIs:     []*url.URL{id.URL()},
		DNSNames: dnsNames,
	}, k)
	if err != nil {
		return nil, fmt.Errorf("mtls: certificate request: %w", err)
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
		return nil, errors.New("mtls: renewal answer holds no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("mtls: renewal answer: %w", err)
	}
	if got, err := IDOf(leaf); err != nil || got != id {
		return nil, fmt.Errorf("mtls: renewal answer is for %v, not %s", leaf.URIs, id)
	}
	if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("mtls: renewal answer is for another key")
	}
	c.PrivateKey, c.Leaf = k, leaf
	return &c, nil
}
