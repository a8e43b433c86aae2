package signedct

import (
	"crypto"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDSCTList is the X.509 extension that embeds SCTs in a certificate
// (RFC 6962 §3.3).
var OIDSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}

// ErrSCT is wrapped by the errors of malformed SCTs and SCT lists.
var ErrSCT = errors.New("malformed SCT")

// An SCT is a Signed Certificate Timestamp (RFC 6962 §3.2): a log's
// promise to include a certificate.
type SCT struct {
	LogID      [32]byte
	Timestamp  uint64 // milliseconds since the Unix epoch
	Extensions []byte
	Signature  []byte // a DigitallySigned struct
}

// Time is the SCT's timestamp.
func (s *SCT) Time() time.Time {
	return time.UnixMilli(int64(min(s.Timestamp, 253402300799999))).UTC()
}

// ParseSCT reads one serialized SCT of version v1.
func ParseSCT(b []byte) (*SCT, error) {
	s := cryptobyte.String(b)
	var version, hash, alg uint8
	var id []byte
	var sct SCT
	var ext, sig cryptobyte.String
	if !s.ReadUint8(&version) {
		return nil, fmt.Errorf("%w: empty", ErrSCT)
	}
	if version != 0 {
		return nil, fmt.Errorf("%w: version %d", ErrSCT, version)
	}
	if !s.ReadBytes(&id, 32) || !s.ReadUint64(&sct.Timestamp) || !s.ReadUint16LengthPrefixed(&ext) {
		return nil, fmt.Errorf("%w: truncated", ErrSCT)
	}
	ds := s
	if !s.ReadUint8(&hash) || !s.ReadUint8(&alg) || !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return nil, fmt.Errorf("%w: signature", ErrSCT)
	}
	copy(sct.LogID[:], id)
	sct.Extensions, sct.Signature = ext, ds
	return &sct, nil
}

// ParseSCTList reads a TLS-encoded SignedCertificateTimestampList (the
// TLS extension's, or the content of the certificate extension's OCTET
// STRING; RFC 6962 §3.3).
func ParseSCTList(b []byte) ([]*SCT, error) {
	s := cryptobyte.String(b)
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() {
		return nil, fmt.Errorf("%w: not an SCT list", ErrSCT)
	}
	var out []*SCT
	for !list.Empty() {
		var one cryptobyte.String
		if !list.ReadUint16LengthPrefixed(&one) {
			return nil, fmt.Errorf("%w: truncated list", ErrSCT)
		}
		sct, err := ParseSCT(one)
		if err != nil {
			return nil, err
		}
		out = append(out, sct)
	}
	return out, nil
}

// EmbeddedSCTs reads the SCT list extension's value: an OCTET STRING that
// holds the TLS-encoded list.
func EmbeddedSCTs(extValue []byte) ([]*SCT, error) {
	s := cryptobyte.String(extValue)
	var inner cryptobyte.String
	if !s.ReadASN1(&inner, cbasn1.OCTET_STRING) || !s.Empty() {
		return nil, fmt.Errorf("%w: the SCT list extension is not an OCTET STRING", ErrSCT)
	}
	return ParseSCTList(inner)
}

// signedInput is an SCT's digitally-signed struct (RFC 6962 §3.2):
// version v1, signature type certificate_timestamp, the timestamp, the
// entry type and entry, and the extensions.
func (s *SCT) signedInput(entryType uint16, entry []byte) []byte {
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint64(b, s.Timestamp)
	b = binary.BigEndian.AppendUint16(b, entryType)
	b = append(b, entry...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Extensions)))
	return append(b, s.Extensions...)
}

func u24(b, data []byte) []byte {
	b = append(b, byte(len(data)>>16), byte(len(data)>>8), byte(len(data)))
	return append(b, data...)
}

// VerifyX509 checks an SCT issued for a certificate itself (x509_entry:
// the SCT came in the TLS handshake or an OCSP response).
func (s *SCT) VerifyX509(key crypto.PublicKey, certDER []byte) error {
	return Verify(key, s.signedInput(0, u24(nil, certDER)), s.Signature)
}

// VerifyPrecert checks an SCT embedded in a certificate (precert_entry):
// over its issuer's key hash and its TBSCertificate without the SCT list
// extension ([RemoveExtension]).
func (s *SCT) VerifyPrecert(key crypto.PublicKey, issuerKeyHash [32]byte, tbs []byte) error {
	return Verify(key, s.signedInput(1, u24(issuerKeyHash[:], tbs)), s.Signature)
}

// RemoveExtension returns the DER TBSCertificate tbs without the extension
// oid (and without an extensions field when none is left): the TBS a
// precertificate's SCT signed, from the final certificate's.
func RemoveExtension(tbs []byte, oid asn1.ObjectIdentifier) ([]byte, error) {
	s := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("not a TBSCertificate")
	}
	extTag := cbasn1.Tag(3).Constructed().ContextSpecific()
	var fields, kept [][]byte
	for !body.Empty() {
		var el cryptobyte.String
		var tag cbasn1.Tag
		if !body.ReadAnyASN1Element(&el, &tag) {
			return nil, errors.New("malformed TBSCertificate")
		}
		if tag != extTag {
			fields = append(fields, el)
			continue
		}
		in := el
		var wrapped, exts cryptobyte.String
		if !in.ReadASN1(&wrapped, extTag) || !wrapped.ReadASN1(&exts, cbasn1.SEQUENCE) || !wrapped.Empty() || !in.Empty() || !body.Empty() {
			return nil, errors.New("malformed extensions")
		}
		for !exts.Empty() {
			var ext cryptobyte.String
			if !exts.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
				return nil, errors.New("malformed extension")
			}
			e := ext
			var seq cryptobyte.String
			var id asn1.ObjectIdentifier
			if !e.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&id) {
				return nil, errors.New("malformed extension")
			}
			if !id.Equal(oid) {
				kept = append(kept, ext)
			}
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, f := range fields {
			b.AddBytes(f)
		}
		if len(kept) > 0 {
			b.AddASN1(extTag, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range kept {
						b.AddBytes(e)
					}
				})
			})
		}
	})
	return b.Bytes()
}
