//go:build !unix

package bundle

import (
	"os"
)

// openCache opens the cache file, refusing a symbolic link. Ownership
// and permissions (ACLs on Windows) are not checked on this system.
func openCache(path string) (*os.File, error) {
	if lstatSymlink(path) {
		return nil, refused(path, "is a symbolic link")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	li, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || !os.SameFile(fi, li) {
		f.Close()
		return nil, refused(path, "is not a regular file, or changed while opened")
	}
	return f, nil
}

// checkCacheDir checks nothing on this system.
func checkCacheDir(string) error { return nil }
