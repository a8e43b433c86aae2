package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.key")
	if err := WriteNew(path, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if err := WriteNew(path, []byte("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, []byte("secret")) {
		t.Fatal("existing file was changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A dangling symlink is not followed.
	link := filepath.Join(dir, "link.key")
	os.Symlink(filepath.Join(dir, "target"), link)
	if err := WriteNew(link, []byte("x")); !errors.Is(err, ErrExists) {
		t.Errorf("write through a dangling symlink: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "target")); err == nil {
		t.Error("the symlink target was created")
	}
}
