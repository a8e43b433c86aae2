//go:build unix

package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "master.key")
	if err := os.WriteFile(good, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(good); err != nil || string(b) != "secret\n" {
		t.Fatalf("Read = %q, %v", b, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}

	// A link to a file of the same user, mode 0600, is refused all the
	// same: whoever could plant the link chose the key.
	planted := filepath.Join(dir, "planted")
	os.WriteFile(planted, []byte("attacker's\n"), 0o600)
	link := filepath.Join(dir, "link.key")
	os.Symlink(planted, link)

	readable := filepath.Join(dir, "readable.key")
	os.WriteFile(readable, []byte("x"), 0o644)
	os.Chmod(readable, 0o644)
	groupWritable := filepath.Join(dir, "group.key")
	os.WriteFile(groupWritable, []byte("x"), 0o620)
	os.Chmod(groupWritable, 0o620)
	fifo := filepath.Join(dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.key")
	os.WriteFile(big, []byte(strings.Repeat("x", MaxSize+1)), 0o600)

	for name, path := range map[string]string{"symlink": link, "readable": readable, "group-writable": groupWritable, "fifo": fifo, "dir": dir, "too large": big} {
		if _, err := ReadFile(path); !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: Read = %v, want ErrUnsafe", name, err)
		}
	}

	// Another user's file (needs root to make one).
	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other.key")
		os.WriteFile(other, []byte("x"), 0o600)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(other); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("another user's file: %v", err)
		}
	}
}
