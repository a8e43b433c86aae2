// Package secretfile reads the small secret files of a data directory
// (the master key, the admin token) the way a secret must be read: not
// through a symbolic link, only from a regular file of this user that
// nobody else can read or write, and at most a few KiB of it.
//
// A file another user owns, or a link planted in its place, could hand
// the process a key someone else knows; a file others can read has
// leaked already. Either is refused with a message that says how to fix
// it, rather than read.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize bounds a secret file: the secrets Rampart keeps are under 100
// bytes.
const MaxSize = 64 << 10

// ErrUnsafe is wrapped by every refusal of a file for where it is or who
// may read it (not for a file that does not exist).
var ErrUnsafe = errors.New("secretfile: unsafe secret file")

// Read returns the contents of the secret file path. It refuses (with an
// error wrapping ErrUnsafe) a symbolic link, anything but a regular file,
// a file owned by another user, and one readable or writable by group or
// others; os.ErrNotExist passes through.
func Read(path string) ([]byte, error) {
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
