package ct

import (
	"crypto/sha256"
	"sync"
)

// issuerCache keeps issuing certificates by fingerprint, bounded: a log's
// entries name a few hundred issuers, fetched once each.
type issuerCache struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte][]byte
}

func newIssuerCache(max int) *issuerCache {
	return &issuerCache{max: max, m: map[[sha256.Size]byte][]byte{}}
}

func (c *issuerCache) get(fp [sha256.Size]byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	der, ok := c.m[fp]
	return der, ok
}

func (c *issuerCache) put(fp [sha256.Size]byte, der []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Evict an arbitrary half: simple, bounded, and the issuers in use
		// come back on the next fetch.
		n := 0
		for k := range c.m {
			if n >= c.max/2 {
				break
			}
			delete(c.m, k)
			n++
		}
	}
	c.m[fp] = der
}
