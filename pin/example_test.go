package pin_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// A self-signed certificate for api.example.com (ECDSA P-256). Its pin,
// computed independently with openssl, is
// sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=.
const examplePEM = `-----BEGIN CERTIFICATE-----
MIIBrjCCAVSgAwIBAgIBATAKBggqhkjOPQQDAjA1MRgwFgYDVQQDDA9hcGkuZXhh
bXBsZS5jb20xGTAXBgNVBAoMEFJhbXBhcnQgRml4dHVyZXMwIBcNMjYxMTI1MTIz
MzQxWhgPMjEyNjExMDExMjMzNDFaMDUxGDAWBgNVBAMMD2FwaS5leGFtcGxlLmNv
bTEZMBcGA1UECgwQUmFtcGFydCBGaXh0dXJlczBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABNnuKklH8CGnWdA3YcTgZzLaLQCFzAZBOJmpOBoT2qPD0nl73NNt1sHs
zXYmln/+abohvYuU6IuzlVThaGiaiwujUzBRMB0GA1UdDgQWBBS/EHg7X0P/H74I
GENY2NUyiAa4ajAfBgNVHSMEGDAWgBS/EHg7X0P/H74IGENY2NUyiAa4ajAPBgNV
HRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD5K9mDNu3u1Ld29z+xWmuj
CgxWcRJPpxz9/5gOszZDzAIgAc48xPRqwnQAnef8NmJAArTemhqewuyP+bWfxp8g
WIY=
-----END CERTIFICATE-----
`

func ExampleFromCertificate() {
	block, _ := pem.Decode([]byte(examplePEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pin.FromCertificate(cert))
	// Output: sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=
}

func ExampleParse() {
	p, err := pin.Parse("sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=")
	fmt.Println(p.Kind(), p.Base64(), err)

	_, err = pin.Parse("sha1/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=")
	fmt.Println(errors.Is(err, pin.ErrPrefix))
	// Output:
	// spki ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w= <nil>
	// true
}

func ExampleParsePolicy() {
	policy, err := pin.ParsePolicy([]byte(`
version: 1
domains:
  - domain: example.com
    include_subdomains: true
    expires: "2027-06-30"
    pins:
      - sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=   # current key
      - sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA=   # backup key, offline
`))
	if err != nil {
		log.Fatal(err)
	}
	rule := policy.Match("api.example.com")
	fmt.Println(rule.Name, rule.Mode, rule.ExpiresAt().Format(time.RFC3339))
	fmt.Println(policy.Match("example.org") == nil)

	_, err = pin.ParsePolicy([]byte(`
version: 1
domains:
  - domain: example.com
    pins: [sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=]
`))
	fmt.Println(errors.Is(err, pin.ErrNoBackupPin))
	// Output:
	// example.com enforce 2027-07-01T00:00:00Z
	// true
	// true
}

// A pinned HTTP client that reports failures to the policy's report URI.
func ExampleVerifier_Client() {
	policy, err := pin.LoadPolicy("pins.yaml")
	if err != nil {
		log.Fatal(err)
	}
	reporter := &report.Reporter{}
	defer reporter.Close()
	v := pin.NewVerifier(policy)
	v.Reporter = reporter

	client, err := v.Client(nil) // a clone of http.DefaultTransport, pinned
	if err != nil {
		log.Fatal(err)
	}
	resp, err := client.Get("https://api.example.com/health")
	var mismatch *pin.MismatchError
	if errors.As(err, &mismatch) {
		log.Fatalf("refused: %v", mismatch) // lists the chain's pins and the expected ones
	}
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	// A short-lived process delivers its reports before exiting.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reporter.Flush(ctx)
}

// Pinning a tls.Config for a private CA: the CA goes into RootCAs, never
// InsecureSkipVerify.
func ExampleVerifier_TLSConfig() {
	policy, err := pin.LoadPolicy("pins.yaml")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(examplePEM))

	cfg, err := pin.NewVerifier(policy).TLSConfig(&tls.Config{
		RootCAs:            roots,
		ClientSessionCache: tls.NewLRUClientSessionCache(64), // invalidated by SetPolicy
	})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := tls.Dial("tcp", "api.example.com:443", cfg)
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
}

// Updating pins at run time: new handshakes use the new policy, cached
// sessions and idle connections from the old one are not reused.
func ExampleVerifier_SetPolicy() {
	v := pin.NewVerifier(mustLoad("pins.yaml"))
	client, _ := v.Client(&http.Transport{})
	_ = client
	v.SetPolicy(mustLoad("pins-v2.yaml"))
}

func mustLoad(path string) *pin.Policy {
	p, err := pin.LoadPolicy(path)
	if err != nil {
		log.Fatal(err)
	}
	return p
}
