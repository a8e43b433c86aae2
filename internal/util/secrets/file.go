package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MaxSize bounds a secret file: the secrets Rampart keeps are under 100
// bytes.
const MaxSize = 64 << 10

// ErrUnsafe is wrapped by every refusal of a file for where it is or who
// may read it (not for a file that does not exist).
var ErrUnsafe = errors.New("secrets: unsafe secret file")

// ReadFile returns the contents of the secret file path. It refuses (with
// an error wrapping ErrUnsafe) a symbolic link, anything but a regular
// file, a file owned by another user, and one readable or writable by
// group or others; os.ErrNotExist passes through. A file another user
// owns, or a link planted in its place, could hand the process a key
// someone else knows; a file others can read has leaked already.
func ReadFile(path string) ([]byte, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsafe, path, MaxSize)
	}
	return data, nil
}

func unsafe(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrUnsafe, path, fmt.Sprintf(format, args...))
}

// checkMode refuses a mode that lets group or others in.
func checkMode(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return unsafe(path, "is not a regular file (%s)", fi.Mode().Type())
	}
	if p := fi.Mode().Perm(); p&0o077 != 0 {
		return unsafe(path, "is readable or writable by others (mode %04o); chmod 600 it", p)
	}
	return nil
}

// ErrExists is returned by WriteNew when the file is already there.
var ErrExists = errors.New("file exists; refusing to overwrite it")

// WriteNew writes data to a new file at path with mode 0600. It never
// replaces an existing file, and the file appears complete or not at all:
// the data goes to a temporary file first, which is then linked into
// place (link fails if the name is taken).
func WriteNew(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rampart-keygen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	return nil
}
