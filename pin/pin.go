package pin

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Kind says what a [Pin] is a digest of.
type Kind uint8

const (
	// SPKI pins are the SHA-256 digest of a DER SubjectPublicKeyInfo. They
	// survive certificate renewal on the same key. Written "sha256/<base64>".
	SPKI Kind = iota + 1
	// Cert pins are the SHA-256 fingerprint of a whole DER certificate. They
	// break on every renewal, even on the same key. Written
	// "cert-sha256:<hex>".
	Cert
)

// String returns "spki" or "cert".
func (k Kind) String() string {
	switch k {
	case SPKI:
		return "spki"
	case Cert:
		return "cert"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Prefixes of the two textual pin forms.
const (
	spkiPrefix = "sha256/"
	certPrefix = "cert-sha256:"
)

// A Pin is a SHA-256 digest of either a certificate's public key (SPKI) or
// of a whole certificate. The zero Pin is not valid and matches nothing.
//
// Pins are comparable: two Pins are == when they have the same kind and
// digest.
type Pin struct {
	kind   Kind
	digest [sha256.Size]byte
}

// FromSPKI returns the SPKI pin of a DER-encoded SubjectPublicKeyInfo.
func FromSPKI(der []byte) Pin {
	return Pin{kind: SPKI, digest: sha256.Sum256(der)}
}

// FromCertificate returns the SPKI pin of cert's public key.
func FromCertificate(cert *x509.Certificate) Pin {
	return FromSPKI(cert.RawSubjectPublicKeyInfo)
}

// FromCSR returns the SPKI pin of the public key in a certificate request,
// which is the pin of every certificate that will be issued for it.
func FromCSR(csr *x509.CertificateRequest) Pin {
	return FromSPKI(csr.RawSubjectPublicKeyInfo)
}

// FromPublicKey returns the SPKI pin of a public key of a type supported by
// [x509.MarshalPKIXPublicKey].
func FromPublicKey(pub crypto.PublicKey) (Pin, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Pin{}, fmt.Errorf("pin: %w", err)
	}
	return FromSPKI(der), nil
}

// FromPrivateKey returns the SPKI pin of the public half of a private key,
// for example the offline backup key a backup pin refers to.
func FromPrivateKey(priv crypto.PrivateKey) (Pin, error) {
	k, ok := priv.(interface{ Public() crypto.PublicKey })
	if !ok {
		return Pin{}, fmt.Errorf("pin: private key of type %T has no public key", priv)
	}
	return FromPublicKey(k.Public())
}

// Fingerprint returns the certificate pin of cert: the SHA-256 digest of
// its whole DER encoding.
func Fingerprint(cert *x509.Certificate) Pin {
	return Pin{kind: Cert, digest: sha256.Sum256(cert.Raw)}
}

// Kind reports what the pin is a digest of; 0 for the zero Pin.
func (p Pin) Kind() Kind { return p.kind }

// Digest returns the raw SHA-256 digest.
func (p Pin) Digest() [sha256.Size]byte { return p.digest }

// IsZero reports whether p is the zero Pin.
func (p Pin) IsZero() bool { return p.kind == 0 }

// String returns the canonical text form: "sha256/" and standard base64
// for SPKI pins, "cert-sha256:" and lowercase hex for certificate pins.
// [Parse] accepts it back.
func (p Pin) String() string {
	switch p.kind {
	case SPKI:
		return spkiPrefix + base64.StdEncoding.EncodeToString(p.digest[:])
	case Cert:
		return certPrefix + hex.EncodeToString(p.digest[:])
	}
	return "<invalid pin>"
}

// Base64 returns the standard base64 encoding of the digest, without
// prefix: the form of Android's <pin digest="SHA-256"> and of HPKP's
// pin-sha256 directive.
func (p Pin) Base64() string { return base64.StdEncoding.EncodeToString(p.digest[:]) }

// MarshalText implements [encoding.TextMarshaler] with [Pin.String].
func (p Pin) MarshalText() ([]byte, error) {
	if p.kind == 0 {
		return nil, errors.New("pin: cannot marshal the zero Pin")
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [Parse].
func (p *Pin) UnmarshalText(text []byte) error {
	q, err := Parse(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Errors wrapped by [ParseError], for use with [errors.Is].
var (
	// ErrPrefix: the text starts with neither "sha256/" nor "cert-sha256:".
	ErrPrefix = errors.New(`unknown pin prefix (want "sha256/<base64>" or "cert-sha256:<hex>")`)
	// ErrEncoding: the digest is not valid base64 (SPKI) or hex (certificate).
	ErrEncoding = errors.New("digest is not validly encoded")
	// ErrLength: the digest decodes to something other than 32 bytes.
	ErrLength = errors.New("digest is not 32 bytes (SHA-256)")
)

// ParseError reports a pin that could not be parsed. Err is one of
// [ErrPrefix], [ErrEncoding] or [ErrLength], possibly wrapped with detail.
type ParseError struct {
	Input string // the rejected text, truncated to 100 bytes
	Err   error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("pin: invalid pin %q: %v", e.Input, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

func parseError(s string, err error) error {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return &ParseError{Input: s, Err: err}
}

// Parse parses a pin in one of the two text forms:
//
//	sha256/<standard base64 of 32 bytes>   SPKI pin (HPKP, OkHttp, Android, TrustKit)
//	cert-sha256:<64 hex digits>            certificate fingerprint
//
// The certificate form also accepts uppercase hex and the colon-separated
// form openssl prints ("AB:CD:..."). Errors are [*ParseError].
func Parse(s string) (Pin, error) {
	switch {
	case strings.HasPrefix(s, spkiPrefix):
		return parseSPKI(s)
	case strings.HasPrefix(s, certPrefix):
		return parseCert(s)
	}
	return Pin{}, parseError(s, ErrPrefix)
}

func parseSPKI(s string) (Pin, error) {
	body := s[len(spkiPrefix):]
	// The base64 decoder skips CR and LF; a pin containing them is not
	// canonical and probably the result of a bad copy.
	if strings.ContainsAny(body, "\r\n") {
		return Pin{}, parseError(s, fmt.Errorf("%w: contains a line break", ErrEncoding))
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(body)
	if err == nil && len(raw) == sha256.Size {
		p := Pin{kind: SPKI}
		copy(p.digest[:], raw)
		return p, nil
	}
	kind := ErrLength
	if err != nil {
		kind = ErrEncoding
	}
	switch {
	case isHexDigest(body):
		// 64 hex digits are also valid base64, of 48 bytes.
		return Pin{}, parseError(s, fmt.Errorf("%w: looks like a hex SHA-256; a certificate fingerprint is written cert-sha256:<hex>", kind))
	case len(body) != spkiLen:
		return Pin{}, parseError(s, fmt.Errorf("%w: %d characters after sha256/, where a pin has %d characters (the base64 of 32 bytes, ending in =): truncated or mistyped?", kind, len(body), spkiLen))
	case err != nil:
		return Pin{}, parseError(s, fmt.Errorf("%w: %v", kind, err))
	}
	return Pin{}, parseError(s, fmt.Errorf("%w: got %d bytes", kind, len(raw)))
}

// spkiLen is the length of the base64 of a SHA-256 digest.
var spkiLen = base64.StdEncoding.EncodedLen(sha256.Size)

// isHexDigest reports whether s is a SHA-256 in hex, plain or with colons.
func isHexDigest(s string) bool {
	return isHex(s) && (len(s) == 2*sha256.Size && !strings.Contains(s, ":") || len(s) == 3*sha256.Size-1 && strings.Count(s, ":") == sha256.Size-1)
}

func parseCert(s string) (Pin, error) {
	body := s[len(certPrefix):]
	if strings.Contains(body, ":") {
		// openssl's "AB:CD:EF" form: a colon after every byte but the last.
		if len(body)%3 != 2 {
			return Pin{}, parseError(s, fmt.Errorf("%w: misplaced colon", ErrEncoding))
		}
		var b strings.Builder
		for i := 0; i < len(body); i += 3 {
			if i+2 < len(body) && body[i+2] != ':' {
				return Pin{}, parseError(s, fmt.Errorf("%w: misplaced colon", ErrEncoding))
			}
			b.WriteString(body[i : i+2])
		}
		body = b.String()
	}
	raw, err := hex.DecodeString(body)
	if err != nil {
		return Pin{}, parseError(s, fmt.Errorf("%w: %v", ErrEncoding, err))
	}
	if len(raw) != sha256.Size {
		return Pin{}, parseError(s, fmt.Errorf("%w: got %d bytes", ErrLength, len(raw)))
	}
	p := Pin{kind: Cert}
	copy(p.digest[:], raw)
	return p, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':') {
			return false
		}
	}
	return true
}
