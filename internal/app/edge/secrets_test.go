package edge

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/util/secrets"
)

// holder finds byte strings in everything reachable from a value.
type holder struct {
	seen  map[visit]bool
	find  map[string][]byte // name -> bytes to look for
	found map[string]string // name -> the path where it was found
}

type visit struct {
	ptr uintptr
	typ reflect.Type
	n   int
}

// walk visits v and everything reachable from it: pointers, interfaces,
// struct fields (unexported included), slices, arrays and maps, each
// pointer once. Functions, channels and unsafe pointers are opaque to
// reflect, and skipped.
func (h *holder) walk(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Kind() == reflect.Pointer {
			k := visit{v.Pointer(), v.Type(), 0}
			if h.seen[k] {
				return
			}
			h.seen[k] = true
		}
		h.walk(v.Elem(), path)
	case reflect.Struct:
		for i := range v.NumField() {
			h.walk(v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		k := visit{v.Pointer(), v.Type(), v.Len()}
		if h.seen[k] {
			return
		}
		h.seen[k] = true
		if v.Type().Elem().Kind() == reflect.Uint8 {
			h.check(v.Bytes(), path)
			return
		}
		for i := range v.Len() {
			h.walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			for i := range b {
				b[i] = byte(v.Index(i).Uint())
			}
			h.check(b, path)
			return
		}
		for i := range v.Len() {
			h.walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		k := visit{v.Pointer(), v.Type(), 0}
		if h.seen[k] {
			return
		}
		h.seen[k] = true
		it := v.MapRange()
		for it.Next() {
			h.walk(it.Key(), path+"{key}")
			h.walk(it.Value(), path+"{value}")
		}
	case reflect.String:
		h.check([]byte(v.String()), path)
	}
}

func (h *holder) check(b []byte, path string) {
	for name, s := range h.find {
		if _, done := h.found[name]; !done && bytes.Contains(b, s) {
			h.found[name] = path
		}
	}
}

// The gateway holds the one key of the master key it needs, the API-key
// pepper, and neither the master key nor the keys that open the token
// signing keys or the CA's issuing key (issue 11 §5): an edge built from
// options over a control plane's data directory is walked, every value
// reachable from it, for their bytes. The pepper is found, so that the
// walk is known to reach the verifier's keys. (Closures are opaque to
// reflect: the edge's capture its store, listeners and files.)
func TestEdgeHoldsOnlyThePepper(t *testing.T) {
	t.Setenv(secrets.Env, "")
	cp, _ := controlPlane(t)
	m, err := secrets.Load(cp, false)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(cp, secrets.FileName))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := buildEdge(t, t.TempDir(), fmt.Sprintf(`listen: 127.0.0.1:0
routes:
  - {prefix: /, upstream: "http://127.0.0.1:9"}
auth:
  api_keys: {data_dir: %s}
`, cp))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	h := &holder{seen: map[visit]bool{}, found: map[string]string{}, find: map[string][]byte{
		"pepper":                m.Key(secrets.APIKeyPepper),
		"master key":            raw,
		"master key file":       bytes.TrimSpace(text),
		"token signing key KEK": m.Key(secrets.SigningKeyKEK),
		"CA key KEK":            m.Key(secrets.CAKeyKEK),
		"master key check key":  m.Key(secrets.CheckKey),
	}}
	h.walk(reflect.ValueOf(e), "edge")
	if _, ok := h.found["pepper"]; !ok {
		t.Fatalf("the walk did not find the pepper (%d values seen): it does not reach the API-key verifier", len(h.seen))
	}
	for name, path := range h.found {
		if name != "pepper" {
			t.Errorf("the edge holds the %s, at %s", name, path)
		}
	}
	t.Logf("pepper at %s; %d values seen", h.found["pepper"], len(h.seen))
}
