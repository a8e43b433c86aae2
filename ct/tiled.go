package ct

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Sizes the static-ct-api fixes or that bound a monitor's memory.
const (
	tileHeight    = 8
	tileWidth     = 1 << tileHeight
	hashTileSize  = tileWidth * tlog.HashSize
	maxDataTile   = 64 << 20 // 256 entries of at most 256 KiB
	maxIssuerSize = 64 << 10
)

// tiled reads a static-ct-api log.
type tiled struct {
	log *Log
	f   fetcher
	// upper caches verified tiles above level 0, which a scan reuses for
	// 256 consecutive level-0 tiles; bounded.
	mu    sync.Mutex
	upper map[string][]byte
}

func newTiled(l *Log, f fetcher) *tiled {
	return &tiled{log: l, f: f, upper: map[string][]byte{}}
}

func (t *tiled) head(ctx context.Context) (Head, error) {
	data, err := t.f.get(ctx, t.log.URL+"checkpoint", maxCheckpointSize)
	if err != nil {
		return Head{}, err
	}
	return t.log.VerifyCheckpoint(data)
}

// tilePath is the static-ct-api path of a tile: tile/<L>/<N>[.p/<W>], or
// tile/data/<N>[.p/<W>] for level -1 (tlog's data tile). tlog's own path
// is the same with the height as a first element.
func tilePath(tile tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(tile.Path(), fmt.Sprintf("tile/%d/", tileHeight))
}

// readTile fetches a tile of the given width; when a partial tile is gone
// (logs delete them once the full tile exists), the full tile's first
// hashes are the same ones.
func (t *tiled) readTile(ctx context.Context, tile tlog.Tile) ([]byte, error) {
	limit := int64(hashTileSize)
	if tile.L < 0 {
		limit = maxDataTile
	}
	data, err := t.f.get(ctx, t.log.URL+tilePath(tile), limit)
	if err != nil && tile.W < tileWidth && isNotFound(err) {
		full := tile
		full.W = tileWidth
		data, err = t.f.get(ctx, t.log.URL+tilePath(full), limit)
		if err == nil && tile.L >= 0 && len(data) >= tile.W*tlog.HashSize {
			data = data[:tile.W*tlog.HashSize]
		}
	}
	return data, err
}

// tileReader is a tlog.TileReader over the log, for one scan.
type tileReader struct {
	ctx context.Context
	t   *tiled
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, tile := range tiles {
		if tile.L > 0 {
			r.t.mu.Lock()
			data, ok := r.t.upper[tile.Path()]
			r.t.mu.Unlock()
			if ok {
				out[i] = data
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = r.t.readTile(r.ctx, tile)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	for i, tile := range tiles {
		if tile.L <= 0 {
			continue
		}
		if len(r.t.upper) >= 64 {
			clear(r.t.upper)
		}
		r.t.upper[tile.Path()] = data[i]
	}
}

// consistent checks that head is an extension of old, with a proof built
// from head's tiles.
func (t *tiled) consistent(ctx context.Context, old, head Head) error {
	hr := tlog.TileHashReader(tlog.Tree{N: head.Size, Hash: head.Root}, &tileReader{ctx: ctx, t: t})
	p, err := tlog.ProveTree(head.Size, old.Size, hr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	if err := tlog.CheckTree(p, head.Size, head.Root, old.Size, old.Root); err != nil {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	return nil
}

// entries reads entries [start, end) of the tree head commits to, one data
// tile at a time, and hands each tile's entries to fn once their leaf
// hashes match the tree: every hash tile is checked up to head's root by
// tlog, and every entry's leaf hash against its level-0 tile.
func (t *tiled) entries(ctx context.Context, pos Position, head Head, fn func([]Entry, Position) error) error {
	start, end := pos.Next, head.Size
	hr := tlog.TileHashReader(tlog.Tree{N: head.Size, Hash: head.Root}, &tileReader{ctx: ctx, t: t})
	for n := start / tileWidth; n*tileWidth < end; n++ {
		first := n * tileWidth
		w := int(min(head.Size-first, tileWidth))
		tile := tlog.Tile{H: tileHeight, L: -1, N: n, W: w}
		data, err := t.readTile(ctx, tile)
		if err != nil {
			return err
		}
		var list []Entry
		if w == tileWidth {
			list, err = ParseDataTile(data, first, w)
		} else {
			list, err = parsePrefix(data, first, w)
		}
		if err != nil {
			return fmt.Errorf("%w: data tile %d: %w", ErrCorrupt, n, err)
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, first+int64(i))
		}
		hashes, err := hr.ReadHashes(indexes)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: hash tiles under %s: %v", ErrCorrupt, head, err)
		}
		for i := range list {
			if list[i].LeafHash != hashes[i] {
				return fmt.Errorf("%w: entry %d does not hash to the tree's leaf", ErrCorrupt, list[i].Index)
			}
		}
		lo := max(start-first, 0)
		hi := min(end-first, int64(w))
		if err := fn(list[lo:hi], Position{Head: head, Next: first + hi}); err != nil {
			return err
		}
	}
	return nil
}

// parsePrefix reads the first w entries of a data tile that may hold more
// (the full tile fetched in place of a partial one that is gone).
func parsePrefix(data []byte, first int64, w int) ([]Entry, error) {
	out := make([]Entry, 0, w)
	for len(out) < w {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: data tile holds %d entries, not %d", ErrEntry, len(out), w)
		}
		e, rest, err := ReadTileLeaf(data)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", first+int64(len(out)), err)
		}
		e.Index = first + int64(len(out))
		out = append(out, e)
		data = rest
	}
	return out, nil
}

// chain returns the issuing chain of a tiled log's entry: its issuers,
// fetched by fingerprint. A failure that retrying may clear is an error;
// an issuer the log does not serve, or serves wrong, ends the chain there
// (an *incompleteChain error with what was fetched): the entry is judged
// on what the log proves rather than never.
func (t *tiled) chain(ctx context.Context, e *Entry, c *issuerCache) ([][]byte, error) {
	out := make([][]byte, 0, len(e.ChainFingerprints))
	for _, fp := range e.ChainFingerprints {
		der, ok := c.get(fp)
		if !ok {
			var err error
			if der, err = t.issuer(ctx, fp); err != nil {
				var he *HTTPError
				if (errors.As(err, &he) && !he.Temporary()) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) {
					return out, &incompleteChain{err}
				}
				return nil, err
			}
			c.put(fp, der)
		}
		out = append(out, der)
	}
	return out, nil
}

// incompleteChain is an issuing chain the log could not serve whole.
type incompleteChain struct{ err error }

func (e *incompleteChain) Error() string { return "the log's chain is incomplete: " + e.err.Error() }
func (e *incompleteChain) Unwrap() error { return e.err }

// timestamp is the timestamp of entry index, read from its data tile.
// Used only to choose where to start: the entries judged are verified.
func (t *tiled) timestamp(ctx context.Context, head Head, index int64) (time.Time, error) {
	n := index / tileWidth
	w := int(min(head.Size-n*tileWidth, tileWidth))
	data, err := t.readTile(ctx, tlog.Tile{H: tileHeight, L: -1, N: n, W: w})
	if err != nil {
		return time.Time{}, err
	}
	for i := n * tileWidth; ; i++ {
		e, rest, err := ReadTileLeaf(data)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: data tile %d: %w", ErrCorrupt, n, err)
		}
		if i == index {
			return e.Timestamp, nil
		}
		data = rest
	}
}

// prepare: tiles verify any entry against any head, so a position is
// just an index.
func (t *tiled) prepare(_ context.Context, head Head, next int64) (Position, error) {
	p := Position{Next: next}
	if next == head.Size {
		p.Head = head
	}
	return p, nil
}

// issuer fetches a chain certificate by its fingerprint and checks it.
func (t *tiled) issuer(ctx context.Context, fp [sha256.Size]byte) ([]byte, error) {
	data, err := t.f.get(ctx, t.log.URL+"issuer/"+hex.EncodeToString(fp[:]), maxIssuerSize)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(data) != fp {
		return nil, fmt.Errorf("%w: issuer %x does not hash to its fingerprint", ErrCorrupt, fp[:8])
	}
	return data, nil
}
