package ct

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/tlog"
)

// An Entry is one log entry: a certificate or a precertificate, as the log
// recorded it.
type Entry struct {
	// Index is the entry's position in the log, from 0.
	Index int64
	// Timestamp is the entry's SCT timestamp.
	Timestamp time.Time
	// Precert says the entry is a precertificate (RFC 6962 §3.1): Cert
	// then holds its TBSCertificate, without the poison extension and with
	// the final certificate's issuer.
	Precert bool
	// Cert is the DER certificate (x509_entry) or the precertificate's
	// TBSCertificate (precert_entry).
	Cert []byte
	// IssuerKeyHash is, for a precertificate, the SHA-256 of its issuer's
	// public key.
	IssuerKeyHash [sha256.Size]byte
	// Chain is the issuing chain the submitter sent, leaf's issuer first
	// (for a precertificate, the submitted precertificate is not part of
	// it). RFC 6962 logs return the certificates; tiled logs return their
	// fingerprints (ChainFingerprints) and serve the certificates apart.
	Chain [][]byte
	// ChainFingerprints are the SHA-256 of the chain's certificates
	// (static-ct-api TileLeaf.certificate_chain).
	ChainFingerprints [][sha256.Size]byte
	// LeafHash is the entry's Merkle leaf hash (RFC 6962 §2.1).
	LeafHash tlog.Hash
}

// ErrEntry is wrapped by the errors of entries that are not well-formed
// log structures. (A well-formed entry whose certificate does not parse is
// not an error here: it is reported by the monitor.)
var ErrEntry = errors.New("ct: malformed entry")

// Log entry types (RFC 6962 §3.1).
const (
	x509Entry    = 0
	precertEntry = 1
)

// readTimestampedEntry reads an RFC 6962 §3.4 TimestampedEntry into e and
// returns its encoding.
func readTimestampedEntry(s *cryptobyte.String, e *Entry) ([]byte, error) {
	start := *s
	var ts uint64
	var typ uint16
	if !s.ReadUint64(&ts) || !s.ReadUint16(&typ) {
		return nil, fmt.Errorf("%w: truncated timestamped entry", ErrEntry)
	}
	e.Timestamp = millis(ts)
	var cert cryptobyte.String
	switch typ {
	case x509Entry:
		if !s.ReadUint24LengthPrefixed(&cert) || cert.Empty() {
			return nil, fmt.Errorf("%w: truncated certificate", ErrEntry)
		}
	case precertEntry:
		e.Precert = true
		var ikh []byte
		if !s.ReadBytes(&ikh, sha256.Size) || !s.ReadUint24LengthPrefixed(&cert) || cert.Empty() {
			return nil, fmt.Errorf("%w: truncated precertificate", ErrEntry)
		}
		copy(e.IssuerKeyHash[:], ikh)
	default:
		return nil, fmt.Errorf("%w: entry type %d", ErrEntry, typ)
	}
	e.Cert = cert
	var ext cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&ext) {
		return nil, fmt.Errorf("%w: truncated extensions", ErrEntry)
	}
	return start[:len(start)-len(*s)], nil
}

// leafHash is the Merkle leaf hash of a TimestampedEntry: the hash of the
// MerkleTreeLeaf (version v1, leaf type timestamped_entry) that holds it.
func leafHash(te []byte) tlog.Hash {
	h := sha256.New()
	h.Write([]byte{0x00, 0x00, 0x00}) // leaf prefix, v1, timestamped_entry
	h.Write(te)
	var out tlog.Hash
	h.Sum(out[:0])
	return out
}

// ReadTileLeaf reads one static-ct-api TileLeaf from the front of data and
// returns the entry and the rest of data.
func ReadTileLeaf(data []byte) (Entry, []byte, error) {
	s := cryptobyte.String(data)
	var e Entry
	te, err := readTimestampedEntry(&s, &e)
	if err != nil {
		return Entry{}, nil, err
	}
	e.LeafHash = leafHash(te)
	if e.Precert {
		var pre cryptobyte.String
		if !s.ReadUint24LengthPrefixed(&pre) || pre.Empty() {
			return Entry{}, nil, fmt.Errorf("%w: truncated pre_certificate", ErrEntry)
		}
	}
	var chain cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&chain) || len(chain)%sha256.Size != 0 {
		return Entry{}, nil, fmt.Errorf("%w: certificate_chain is not a list of fingerprints", ErrEntry)
	}
	for len(chain) > 0 {
		var fp [sha256.Size]byte
		copy(fp[:], chain)
		chain = chain[sha256.Size:]
		e.ChainFingerprints = append(e.ChainFingerprints, fp)
	}
	return e, s, nil
}

// ParseDataTile reads the entries of a static-ct-api data tile that holds
// entries from index first on; it must hold exactly want of them.
func ParseDataTile(data []byte, first int64, want int) ([]Entry, error) {
	entries := make([]Entry, 0, want)
	for len(data) > 0 {
		if len(entries) == want {
			return nil, fmt.Errorf("%w: data tile holds more than %d entries", ErrEntry, want)
		}
		e, rest, err := ReadTileLeaf(data)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", first+int64(len(entries)), err)
		}
		e.Index = first + int64(len(entries))
		entries = append(entries, e)
		data = rest
	}
	if len(entries) != want {
		return nil, fmt.Errorf("%w: data tile holds %d entries, not %d", ErrEntry, len(entries), want)
	}
	return entries, nil
}

// ParseLeafInput reads an RFC 6962 get-entries leaf_input (a
// MerkleTreeLeaf, §3.4) and its extra_data (§4.6): the certificate chain,
// or for a precertificate a PrecertChainEntry.
func ParseLeafInput(leaf, extra []byte) (Entry, error) {
	s := cryptobyte.String(leaf)
	var version, leafType uint8
	if !s.ReadUint8(&version) || !s.ReadUint8(&leafType) {
		return Entry{}, fmt.Errorf("%w: truncated leaf", ErrEntry)
	}
	if version != 0 || leafType != 0 {
		return Entry{}, fmt.Errorf("%w: leaf version %d, type %d", ErrEntry, version, leafType)
	}
	var e Entry
	te, err := readTimestampedEntry(&s, &e)
	if err != nil {
		return Entry{}, err
	}
	if !s.Empty() {
		return Entry{}, fmt.Errorf("%w: data after the leaf", ErrEntry)
	}
	e.LeafHash = leafHash(te)
	x := cryptobyte.String(extra)
	if e.Precert {
		var pre cryptobyte.String
		if !x.ReadUint24LengthPrefixed(&pre) {
			return Entry{}, fmt.Errorf("%w: truncated pre_certificate in extra_data", ErrEntry)
		}
	}
	var chain cryptobyte.String
	if !x.ReadUint24LengthPrefixed(&chain) || !x.Empty() {
		return Entry{}, fmt.Errorf("%w: extra_data is not a certificate chain", ErrEntry)
	}
	for !chain.Empty() {
		var c cryptobyte.String
		if !chain.ReadUint24LengthPrefixed(&c) {
			return Entry{}, fmt.Errorf("%w: truncated chain certificate", ErrEntry)
		}
		e.Chain = append(e.Chain, c)
		e.ChainFingerprints = append(e.ChainFingerprints, sha256.Sum256(c))
	}
	return e, nil
}
