package ratelimit

// table is an open-addressing hash table from key hashes to theoretical
// arrival times: one 16-byte slot per key, linear probing, so that a
// lookup touches one cache line where a Go map touches two or three (its
// control word, then the slot). With 100,000 keys spread over memory,
// cache misses are most of a decision's cost.
//
// Slot hash 0 marks an empty slot; hashes are remapped so that 0 is never
// a key.
type table struct {
	slots []slot
	n     int
}

type slot struct {
	h   uint64
	tat int64
}

func fixHash(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// get returns the value of h and whether it is present.
func (t *table) get(h uint64) (int64, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == h {
			return s.tat, true
		}
		if s.h == 0 {
			return 0, false
		}
	}
}

// set stores v for h, growing the table past three quarters full.
func (t *table) set(h uint64, v int64) {
	if len(t.slots) == 0 || (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(16, len(t.slots)*2))
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == h {
			s.tat = v
			return
		}
		if s.h == 0 {
			s.h, s.tat = h, v
			t.n++
			return
		}
	}
}

func (t *table) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]slot, size), 0
	for _, s := range old {
		if s.h != 0 {
			t.set(s.h, s.tat)
		}
	}
}

// retain keeps only the slots keep accepts, rebuilding the table (and
// shrinking it when it emptied a lot).
func (t *table) retain(keep func(h uint64, tat int64) bool) {
	live := 0
	for _, s := range t.slots {
		if s.h != 0 && keep(s.h, s.tat) {
			live++
		}
	}
	if live == t.n {
		return
	}
	old := t.slots
	size := 16
	for size*3 < live*4+4 {
		size *= 2
	}
	t.slots, t.n = make([]slot, size), 0
	for _, s := range old {
		if s.h != 0 && keep(s.h, s.tat) {
			t.set(s.h, s.tat)
		}
	}
}
