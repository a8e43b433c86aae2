package bundle

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrCacheRefused: the cache file, or its directory, is not one the
// Updater trusts to hold the rollback floor: a symbolic link, not a
// regular file, owned by another user, writable by group or others, with
// other hard links, or in a directory that others can write to. The
// Updater then neither applies nor trusts it (see [Updater.CacheFile]).
var ErrCacheRefused = errors.New("bundle: cache file refused")

// readCache reads the cache file, at most MaxSize bytes (plus a line
// break), after checking that only this user could have written it:
// opened without following a symbolic link, a regular file of this user
// with no other hard link, not writable by group or others, in a
// directory of this user (or root) that others cannot write to.
func readCache(path string) ([]byte, error) {
	if err := checkCacheDir(path); err != nil {
		return nil, err
	}
	f, err := openCache(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+3))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize+2 {
		return nil, fmt.Errorf("%w: cache file larger than %d bytes", ErrMalformed, MaxSize)
	}
	return data, nil
}

// refused returns an ErrCacheRefused error for path.
func refused(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrCacheRefused, path, fmt.Sprintf(format, args...))
}

// lstatSymlink reports whether path is a symbolic link.
func lstatSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
