package report

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
)

// Key identifies the failure r describes: the hex SHA-256 of every member
// but date-time and app-vendor-id, which say when and by which device the
// failure was seen. Reports with one key are the same failure: the
// control plane stores one and counts them all. The reports [New] makes of
// failures with equal [pin.Failure.Key] have equal keys.
//
// Key is meant for reports as [Parse] returns them, whose host names are
// normalized; strings count decoded, so that two encodings of one report
// ("\/" or "/", members in any order) have one key. A missing member
// counts apart from an empty one where the format tells them apart
// (effective-expiration-date, enforce-pinning,
// known-pins-expiration-date); include-subdomains missing counts as
// false.
//
// Keys are stored: a report received after an upgrade must have the key of
// the same report received before it. What Key covers may grow only by
// members that were not covered, hashed only when present
// (rampart-known-cert-pins was added so).
func (r *Report) Key() string {
	k := keyHash{h: sha256.New()}
	k.str(r.Hostname)
	k.str(strconv.Itoa(r.Port))
	k.opt(r.EffectiveExpirationDate)
	k.boolean(&r.IncludeSubdomains)
	k.str(r.NotedHostname)
	for _, chain := range [][]string{r.ServedCertificateChain, r.ValidatedCertificateChain, r.KnownPins} {
		k.count(len(chain))
		for _, s := range chain {
			k.str(s)
		}
	}
	for _, s := range []string{r.Mode, r.Reason, r.LibraryVersion, r.AppVersion, r.AppPlatform, r.AppPlatformVersion, r.TrustKitVersion} {
		k.str(s)
	}
	trustKit := r.isTrustKit()
	if trustKit {
		k.str(r.AppBundleID)
	} else {
		k.opt(nil)
	}
	k.boolean(r.EnforcePinning)
	if trustKit {
		k.str(strconv.Itoa(r.ValidationResult))
	} else {
		k.opt(nil)
	}
	k.opt(r.KnownPinsExpirationDate)
	if len(r.KnownCertPins) > 0 {
		k.str("rampart-known-cert-pins")
		k.count(len(r.KnownCertPins))
		for _, s := range r.KnownCertPins {
			k.str(s)
		}
	}
	return hex.EncodeToString(k.h.Sum(nil))
}

// keyHash writes the fields of a key, each one unambiguously: a string as
// its length and bytes, a missing value as the byte 0xff, which no UTF-8
// string is.
type keyHash struct {
	h       hash.Hash
	buf     [8]byte
	scratch []byte // reused: hash.Hash takes bytes, not strings
}

func (k *keyHash) count(n int) {
	binary.BigEndian.PutUint64(k.buf[:], uint64(n))
	k.h.Write(k.buf[:])
}

func (k *keyHash) str(s string) {
	k.count(len(s))
	k.scratch = append(k.scratch[:0], s...)
	k.h.Write(k.scratch)
}

// absent is what a missing member hashes as, as the control plane's
// digests have always had it.
const absent = "\xff"

func (k *keyHash) opt(s *string) {
	if s == nil {
		k.str(absent)
		return
	}
	k.str(*s)
}

func (k *keyHash) boolean(b *bool) {
	switch {
	case b == nil:
		k.str(absent)
	case *b:
		k.str("\x01")
	default:
		k.str("\x00")
	}
}
