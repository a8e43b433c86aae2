package cli

import (
	"testing"

	"github.com/rampartsec/rampart/internal/masterkey"
)

// The CA of testdata/ca-v1, made by rampart ca init under the master key
// 00 01 ... 1f, opens: its issuing key is sealed under that key's CA KEK.
func TestLoadCAVector(t *testing.T) {
	t.Setenv(masterkey.Env, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	dir := "../app/controlplane/testdata/ca-v1"
	keys, err := masterkey.Load(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := loadCA(dir, keys)
	if err != nil {
		t.Fatal(err)
	}
	if ca.TrustDomain.Name() != "pay.internal" {
		t.Errorf("trust domain %s", ca.TrustDomain)
	}
}
