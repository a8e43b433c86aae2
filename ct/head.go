package ct

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/rampartsec/rampart/internal/util/signedct"
)

// A Head is a signed tree head: the log's commitment to its first Size
// entries, whose Merkle tree hash (RFC 6962 §2.1) is Root.
type Head struct {
	Size int64
	Root tlog.Hash
	// Time is the head's timestamp (the TreeHeadSignature's, RFC 6962 §3.5).
	Time time.Time
}

func (h Head) String() string {
	return fmt.Sprintf("size %d, root %s", h.Size, b64(h.Root[:]))
}

// MaxTreeSize bounds the size of a tree head a monitor accepts: 2^48
// entries, a million times the largest logs, and far below the sizes at
// which Merkle proof arithmetic overflows (a signed head of 2^62+1 entries
// would otherwise make proof checking loop for ever).
const MaxTreeSize = 1 << 48

// ErrSignature is wrapped by the errors of heads whose signature the log's
// key does not verify.
var ErrSignature = errors.New("ct: signature does not verify")

// verifyDigitallySigned checks a DigitallySigned struct over msg.
func verifyDigitallySigned(key crypto.PublicKey, msg, ds []byte) error {
	if err := signedct.Verify(key, msg, ds); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

// treeHeadInput is the TreeHeadSignature (RFC 6962 §3.5) a log signs for
// a head: version v1, signature type tree_hash, timestamp, size, root.
func treeHeadInput(h Head, timestampMillis uint64) []byte {
	b := make([]byte, 0, 2+8+8+32)
	b = append(b, 0, 1)
	b = binary.BigEndian.AppendUint64(b, timestampMillis)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Size))
	return append(b, h.Root[:]...)
}

// verifySTH checks an RFC 6962 head's signature.
func verifySTH(l *Log, h Head, timestampMillis uint64, ds []byte) error {
	return verifyDigitallySigned(l.Key, treeHeadInput(h, timestampMillis), ds)
}

// millis is a log's timestamp, at most the end of year 9999 (what JSON
// and the stores can write: a hostile log cannot stop the monitor with a
// timestamp nothing can store).
func millis(ts uint64) time.Time {
	const last = 253402300799999 // 9999-12-31T23:59:59.999Z
	return time.UnixMilli(int64(min(ts, last))).UTC()
}

// checkpointVerifier verifies the RFC 6962 note signatures of a tiled
// log's checkpoints (static-ct-api, "Checkpoints"): key name the origin, key
// ID the first four bytes of SHA-256(origin || 0x0A || 0x05 || LogID), and
// a signature body of a uint64 timestamp and the TreeHeadSignature's
// DigitallySigned over the checkpoint's size and root.
type checkpointVerifier struct {
	log    *Log
	origin string
	hash   uint32
}

func newCheckpointVerifier(l *Log) *checkpointVerifier {
	origin := l.Origin()
	h := sha256.New()
	h.Write([]byte(origin))
	h.Write([]byte{'\n', 0x05})
	h.Write(l.ID[:])
	return &checkpointVerifier{log: l, origin: origin, hash: binary.BigEndian.Uint32(h.Sum(nil))}
}

func (v *checkpointVerifier) Name() string    { return v.origin }
func (v *checkpointVerifier) KeyHash() uint32 { return v.hash }

func (v *checkpointVerifier) Verify(msg, sig []byte) bool {
	h, err := parseCheckpointBody(msg, v.origin)
	if err != nil || len(sig) < 8 {
		return false
	}
	return verifySTH(v.log, h, binary.BigEndian.Uint64(sig), sig[8:]) == nil
}

// ErrCheckpoint is wrapped by the errors of checkpoints that are malformed
// or not signed by the log.
var ErrCheckpoint = errors.New("ct: invalid checkpoint")

// maxCheckpointSize bounds a checkpoint: three short lines and a few
// signatures.
const maxCheckpointSize = 16 << 10

// VerifyCheckpoint verifies a tiled log's checkpoint with the log's key
// and returns its head. Signatures by other keys (witnesses) are ignored,
// as the specification requires; the log's own must be there.
func (l *Log) VerifyCheckpoint(data []byte) (Head, error) {
	if len(data) > maxCheckpointSize {
		return Head{}, fmt.Errorf("%w: larger than %d bytes", ErrCheckpoint, maxCheckpointSize)
	}
	v := newCheckpointVerifier(l)
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Head{}, fmt.Errorf("%w: no signature by %s with the log's key: %w", ErrCheckpoint, v.origin, ErrSignature)
		case errors.As(err, &invalid):
			return Head{}, fmt.Errorf("%w: the signature by %s does not verify: %w", ErrCheckpoint, v.origin, ErrSignature)
		}
		return Head{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	h, err := parseCheckpointBody([]byte(n.Text), v.origin)
	if err != nil {
		return Head{}, err
	}
	for _, s := range n.Sigs {
		if s.Name == v.origin && s.Hash == v.hash {
			raw, err := base64.StdEncoding.DecodeString(s.Base64)
			if err == nil && len(raw) >= 12 {
				h.Time = millis(binary.BigEndian.Uint64(raw[4:]))
			}
		}
	}
	return h, nil
}

// parseCheckpointBody reads the three lines of a checkpoint (c2sp.org/
// tlog-checkpoint): origin, decimal size, base64 root. An RFC 6962 note
// signature forbids extension lines, so the body is exactly those three.
func parseCheckpointBody(text []byte, origin string) (Head, error) {
	lines := strings.Split(string(text), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Head{}, fmt.Errorf("%w: %d lines, not origin, size and root", ErrCheckpoint, len(lines)-1)
	}
	if lines[0] != origin {
		return Head{}, fmt.Errorf("%w: origin %q, not %q", ErrCheckpoint, lines[0], origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || size > MaxTreeSize || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return Head{}, fmt.Errorf("%w: size %q", ErrCheckpoint, lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Head{}, fmt.Errorf("%w: root hash %q", ErrCheckpoint, lines[2])
	}
	h := Head{Size: size}
	copy(h.Root[:], root)
	return h, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// sameHead reports whether two heads commit to the same tree.
func sameHead(a, b Head) bool { return a.Size == b.Size && bytes.Equal(a.Root[:], b.Root[:]) }
