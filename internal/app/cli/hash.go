package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/pin"
)

// hashJSON is one element of `pin hash --json`. spki_sha256 is a pin as
// policies write it; cert_sha256 is the bare hex digest (kept so for the
// stable schema) and cert_pin the same digest as a policy writes it.
type hashJSON struct {
	File       string `json:"file"`
	Type       string `json:"type"`
	Subject    string `json:"subject,omitempty"`
	Key        string `json:"key"`
	SPKISHA256 string `json:"spki_sha256"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
	CertPin    string `json:"cert_pin,omitempty"`
}

// certJSON describes a certificate in fetch and check output.
type certJSON struct {
	Subject    string `json:"subject"`
	Issuer     string `json:"issuer"`
	NotBefore  string `json:"not_before"`
	NotAfter   string `json:"not_after"`
	Key        string `json:"key"`
	SPKISHA256 string `json:"spki_sha256"`
	CertSHA256 string `json:"cert_sha256"`
	CertPin    string `json:"cert_pin"`
}

func describeCert(c *x509.Certificate) certJSON {
	sum := sha256.Sum256(c.Raw)
	return certJSON{
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		NotBefore:  c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:   c.NotAfter.UTC().Format(time.RFC3339),
		Key:        certfile.DescribeKey(c.PublicKey),
		SPKISHA256: pin.FromCertificate(c).String(),
		CertSHA256: hex.EncodeToString(sum[:]),
		CertPin:    pin.Fingerprint(c).String(),
	}
}

func describeChain(chain []*x509.Certificate) []certJSON {
	out := make([]certJSON, len(chain))
	for i, c := range chain {
		out[i] = describeCert(c)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// hashLong is the help of rampart pin hash.
const hashLong = `Print the pins of certificates, public keys, private keys and certificate
requests.

Each FILE is PEM with any number of CERTIFICATE, PUBLIC KEY, PRIVATE KEY
(PKCS #8), RSA PRIVATE KEY, EC PRIVATE KEY or CERTIFICATE REQUEST blocks, or a
single DER object; "-" reads standard input. For each item it prints the SPKI
pin ("sha256/...") and, for certificates, the certificate fingerprint pin
("cert-sha256:..."). A private key and its certificate have the same SPKI pin:
hash the offline backup key to get the backup pin.

--json prints an array with one object per item:
  file         the FILE argument
  type         certificate | public-key | private-key | csr
  subject      the subject (certificates and requests only)
  key          the key, e.g. "RSA 2048", "ECDSA P-256", "Ed25519"
  spki_sha256  the SPKI pin, "sha256/<base64>"
  cert_sha256  certificates only: lowercase hex SHA-256 of the DER certificate
  cert_pin     certificates only: the same digest as a pin, "cert-sha256:<hex>"

Exit status: 0 printed; 2 usage error or unreadable input.`

func newHashCmd(stdio Stdio) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "hash [--json] FILE...",
		Short: "Print the pins of certificates, keys and certificate requests",
		Long:  hashLong,
		Example: `  rampart pin hash server.pem
  rampart pin hash --json backup.key chain.pem
  openssl s_client -connect api.example.com:443 </dev/null | rampart pin hash -`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, files []string) error {
			var out []hashJSON
			for _, f := range files {
				items, err := certfile.ReadFile(f, stdio.In)
				if err != nil {
					return fail(ExitUsage, fmt.Errorf("%s: %w", f, err))
				}
				for _, it := range items {
					h := hashJSON{
						File:       f,
						Type:       string(it.Type),
						Subject:    it.Subject(),
						Key:        certfile.DescribeKey(it.Key),
						SPKISHA256: pin.FromSPKI(it.SPKI).String(),
					}
					if it.Cert != nil {
						sum := sha256.Sum256(it.Cert.Raw)
						h.CertSHA256 = hex.EncodeToString(sum[:])
						h.CertPin = pin.Fingerprint(it.Cert).String()
					}
					out = append(out, h)
				}
			}
			if asJSON {
				return writeJSON(stdio.Out, out)
			}
			for _, h := range out {
				fmt.Fprintf(stdio.Out, "%s: %s", h.File, h.Type)
				if h.Subject != "" {
					fmt.Fprintf(stdio.Out, " %q", h.Subject)
				}
				fmt.Fprintf(stdio.Out, " (%s)\n  %s\n", h.Key, h.SPKISHA256)
				if h.CertPin != "" {
					fmt.Fprintf(stdio.Out, "  %s\n", h.CertPin)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema above)")
	return c
}
