package ct

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// rfc6962 reads a log through the RFC 6962 §4 JSON API.
type rfc6962 struct {
	log *Log
	f   fetcher
	// batch is how many entries are verified together (one consistency
	// proof each); perRequest how many one get-entries asks for (logs may
	// return fewer).
	batch, perRequest int64
	maxBytes          int // a batch ends early once it holds this much
}

func newRFC6962(l *Log, f fetcher) *rfc6962 {
	return &rfc6962{log: l, f: f, batch: 1024, perRequest: 256, maxBytes: maxBatchBytes}
}

const maxJSON = 32 << 20

// maxBatchBytes bounds the entries held before they are verified and
// judged, whatever the entries' sizes.
const maxBatchBytes = 64 << 20

func (r *rfc6962) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	u := r.log.URL + "ct/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	data, err := r.f.get(ctx, u, maxJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return nil
}

// head fetches get-sth (§4.3) and verifies its signature.
func (r *rfc6962) head(ctx context.Context) (Head, error) {
	var sth struct {
		TreeSize  *int64 `json:"tree_size"`
		Timestamp uint64 `json:"timestamp"`
		Root      []byte `json:"sha256_root_hash"`
		Signature []byte `json:"tree_head_signature"`
	}
	if err := r.getJSON(ctx, "get-sth", nil, &sth); err != nil {
		return Head{}, err
	}
	if sth.TreeSize == nil || *sth.TreeSize < 0 || *sth.TreeSize > MaxTreeSize || len(sth.Root) != tlog.HashSize {
		return Head{}, fmt.Errorf("%w: get-sth: no tree size (at most 2^48) or a root that is not a SHA-256", ErrCorrupt)
	}
	h := Head{Size: *sth.TreeSize, Time: millis(sth.Timestamp)}
	copy(h.Root[:], sth.Root)
	if err := verifySTH(r.log, h, sth.Timestamp, sth.Signature); err != nil {
		return Head{}, fmt.Errorf("get-sth (%s): %w", h, err)
	}
	return h, nil
}

func hashes(list [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, b := range list {
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("%w: a proof hash of %d bytes", ErrCorrupt, len(b))
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// proof fetches get-sth-consistency (§4.4) between sizes first and second.
func (r *rfc6962) proof(ctx context.Context, first, second int64) (tlog.TreeProof, error) {
	var resp struct {
		Consistency [][]byte `json:"consistency"`
	}
	q := url.Values{"first": {strconv.FormatInt(first, 10)}, "second": {strconv.FormatInt(second, 10)}}
	if err := r.getJSON(ctx, "get-sth-consistency", q, &resp); err != nil {
		return nil, err
	}
	if len(resp.Consistency) > 128 {
		return nil, fmt.Errorf("%w: a consistency proof of %d hashes", ErrCorrupt, len(resp.Consistency))
	}
	hs, err := hashes(resp.Consistency)
	return tlog.TreeProof(hs), err
}

func (r *rfc6962) consistent(ctx context.Context, old, head Head) error {
	p, err := r.proof(ctx, old.Size, head.Size)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(p, head.Size, head.Root, old.Size, old.Root); err != nil {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	return nil
}

// getEntries fetches get-entries (§4.6) from start to end inclusive; the
// log may answer with fewer, never with more or none.
func (r *rfc6962) getEntries(ctx context.Context, start, end int64) ([]Entry, error) {
	var resp struct {
		Entries []struct {
			Leaf  []byte `json:"leaf_input"`
			Extra []byte `json:"extra_data"`
		} `json:"entries"`
	}
	q := url.Values{"start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}}
	if err := r.getJSON(ctx, "get-entries", q, &resp); err != nil {
		return nil, err
	}
	if len(resp.Entries) == 0 || int64(len(resp.Entries)) > end-start+1 {
		return nil, fmt.Errorf("%w: get-entries %d-%d returned %d entries", ErrCorrupt, start, end, len(resp.Entries))
	}
	out := make([]Entry, len(resp.Entries))
	for i, raw := range resp.Entries {
		e, err := ParseLeafInput(raw.Leaf, raw.Extra)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, start+int64(i), err)
		}
		e.Index = start + int64(i)
		out[i] = e
	}
	return out, nil
}

// entries reads [start, end) in batches; each batch is handed to fn only
// once the compact range it extends has a root that a consistency proof
// ties to head — so every entry is verified before it is judged.
func (r *rfc6962) entries(ctx context.Context, pos Position, head Head, fn func([]Entry, Position) error) error {
	fr := frontier{size: pos.Next, hashes: pos.Frontier}
	if err := fr.check(); err != nil {
		return err
	}
	for fr.size < head.Size {
		end := min(fr.size+r.batch, head.Size)
		var batch []Entry
		next := fr.clone()
		var held int // bytes of the batch: it ends early at maxBatchBytes
		for next.size < end {
			got, err := r.getEntries(ctx, next.size, min(next.size+r.perRequest, end)-1)
			if err != nil {
				return err
			}
			for _, e := range got {
				next.add(e.LeafHash)
				held += len(e.Cert)
				for _, c := range e.Chain {
					held += len(c)
				}
			}
			batch = append(batch, got...)
			if held > r.maxBytes {
				end = next.size // verified here: a consistency proof ties any size to the head
			}
		}
		root := next.root()
		if end == head.Size {
			if root != head.Root {
				return fmt.Errorf("%w: entries %d-%d do not hash to %s", ErrCorrupt, fr.size, end-1, head)
			}
		} else {
			p, err := r.proof(ctx, end, head.Size)
			if err != nil {
				return err
			}
			if tlog.CheckTree(p, head.Size, head.Root, end, root) != nil {
				return fmt.Errorf("%w: entries %d-%d are not a prefix of %s", ErrCorrupt, fr.size, end-1, head)
			}
		}
		if err := fn(batch, Position{Head: head, Next: end, Frontier: next.hashes}); err != nil {
			return err
		}
		fr = next
	}
	return nil
}

// prepare is the position at entry next of head: the compact range of the
// entries before next, rebuilt from the audit path of entry next-1 (§4.5)
// and, when next is head's size, verified against it at once. Otherwise it
// is verified with the first batch.
func (r *rfc6962) prepare(ctx context.Context, head Head, next int64) (Position, error) {
	if next == 0 {
		return Position{Next: 0}, nil
	}
	last, err := r.getEntries(ctx, next-1, next-1)
	if err != nil {
		return Position{}, err
	}
	var resp struct {
		Index *int64   `json:"leaf_index"`
		Path  [][]byte `json:"audit_path"`
	}
	q := url.Values{"hash": {base64.StdEncoding.EncodeToString(last[0].LeafHash[:])}, "tree_size": {strconv.FormatInt(next, 10)}}
	if err := r.getJSON(ctx, "get-proof-by-hash", q, &resp); err != nil {
		return Position{}, err
	}
	if resp.Index == nil || *resp.Index != next-1 || len(resp.Path) > 64 {
		return Position{}, fmt.Errorf("%w: get-proof-by-hash for entry %d", ErrCorrupt, next-1)
	}
	path, err := hashes(resp.Path)
	if err != nil {
		return Position{}, err
	}
	fr, err := frontierFromPath(next, last[0].LeafHash, path)
	if err != nil {
		return Position{}, err
	}
	p := Position{Next: next, Frontier: fr.hashes}
	if next == head.Size {
		if fr.root() != head.Root {
			return Position{}, fmt.Errorf("%w: the audit path of entry %d does not lead to %s", ErrCorrupt, next-1, head)
		}
		p.Head = head
	}
	return p, nil
}

func (r *rfc6962) chain(_ context.Context, e *Entry, _ *issuerCache) ([][]byte, error) {
	return e.Chain, nil
}

func (r *rfc6962) timestamp(ctx context.Context, _ Head, index int64) (time.Time, error) {
	es, err := r.getEntries(ctx, index, index)
	if err != nil {
		return time.Time{}, err
	}
	return es[0].Timestamp, nil
}

// A frontier is a compact Merkle range over entries [0, size): the roots
// of the perfect subtrees of size's binary decomposition, largest first.
// O(log size) hashes verify any extension of the log.
type frontier struct {
	size   int64
	hashes []tlog.Hash
}

func (f *frontier) check() error {
	if len(f.hashes) != bits.OnesCount64(uint64(f.size)) {
		return fmt.Errorf("ct: stored position: %d frontier hashes for %d entries", len(f.hashes), f.size)
	}
	return nil
}

func (f frontier) clone() frontier {
	return frontier{size: f.size, hashes: append([]tlog.Hash(nil), f.hashes...)}
}

func (f *frontier) add(h tlog.Hash) {
	for n := f.size; n&1 == 1; n >>= 1 {
		h = tlog.NodeHash(f.hashes[len(f.hashes)-1], h)
		f.hashes = f.hashes[:len(f.hashes)-1]
	}
	f.hashes = append(f.hashes, h)
	f.size++
}

// root is the Merkle tree hash of the entries (RFC 6962 §2.1).
func (f *frontier) root() tlog.Hash {
	if len(f.hashes) == 0 {
		return tlog.Hash(emptyRoot)
	}
	r := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		r = tlog.NodeHash(f.hashes[i], r)
	}
	return r
}

// emptyRoot is the hash of the empty tree: SHA-256 of nothing.
var emptyRoot = [32]byte{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}

// frontierFromPath rebuilds the frontier of size n from the last leaf's
// hash and its audit path (RFC 6962 §2.1.1): the path climbs the smallest
// perfect subtree (as many siblings as n's trailing zero bits), then lists
// the other subtrees' roots, smallest first.
func frontierFromPath(n int64, leaf tlog.Hash, path []tlog.Hash) (frontier, error) {
	inner := bits.TrailingZeros64(uint64(n))
	if len(path) != inner+bits.OnesCount64(uint64(n))-1 {
		return frontier{}, fmt.Errorf("%w: an audit path of %d hashes for the last of %d entries", ErrCorrupt, len(path), n)
	}
	h := leaf
	for _, s := range path[:inner] {
		h = tlog.NodeHash(s, h)
	}
	out := frontier{size: n}
	for i := len(path) - 1; i >= inner; i-- {
		out.hashes = append(out.hashes, path[i])
	}
	out.hashes = append(out.hashes, h)
	return out, nil
}
