package secrets

import (
	"bytes"
	"testing"
)

// Every purpose constant is in the table, with an info string of its
// own, and no two purposes derive the same key, nor the master key.
func TestPurposes(t *testing.T) {
	m := &Master{key: bytes.Repeat([]byte{7}, 32)}
	infos := map[string]Purpose{}
	keys := map[string]Purpose{string(m.key): 0}
	for p := APIKeyPepper; p <= CheckKey; p++ {
		d, ok := purposes[p]
		if !ok || d.name == "" || p.String() == "unknown purpose" {
			t.Errorf("purpose %d is not listed", p)
			continue
		}
		if q, dup := infos[d.info]; dup {
			t.Errorf("%v and %v share the info %q", p, q, d.info)
		}
		infos[d.info] = p
		k := m.Key(p)
		if len(k) != 32 {
			t.Errorf("%v: a key of %d bytes", p, len(k))
		}
		if q, dup := keys[string(k)]; dup {
			t.Errorf("%v has the key of %v", p, q)
		}
		keys[string(k)] = p
	}
	if len(purposes) != len(infos) {
		t.Errorf("%d purposes listed, %d constants", len(purposes), len(infos))
	}
}

// An unknown purpose derives no key.
func TestUnknownPurposePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Key(0) returned a key")
		}
	}()
	(&Master{key: make([]byte, 32)}).Key(0)
}
