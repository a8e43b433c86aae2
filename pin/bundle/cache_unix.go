//go:build unix

package bundle

import (
	"os"
	"path/filepath"
	"syscall"
)

// openCache opens the cache file without following a symbolic link (nor
// blocking on a FIFO) and checks the file it got: regular, owned by this
// user, not writable by group or others, one hard link.
func openCache(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if lstatSymlink(path) {
			return nil, refused(path, "is a symbolic link")
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		err = refused(path, "is not a regular file (%s)", fi.Mode().Type())
	case !ok:
		err = refused(path, "has no owner information")
	case int(st.Uid) != os.Geteuid():
		err = refused(path, "is owned by uid %d, not by this user (uid %d)", st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		err = refused(path, "is writable by group or others (mode %04o)", fi.Mode().Perm())
	case uint64(st.Nlink) != 1:
		err = refused(path, "has %d hard links, want 1", uint64(st.Nlink))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkCacheDir checks the directory of the cache file: owned by this
// user or root, and writable by no one else, except in a sticky directory
// (such as /tmp, where others cannot remove or rename this user's files)
// or for a group-writable directory of this process's own group (as
// Android's app directories are).
func checkCacheDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return refused(path, "is in %s, which has no owner information", dir)
	}
	if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return refused(path, "is in %s, owned by uid %d, not by this user (uid %d) or root", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode()&os.ModeSticky != 0 {
		return nil
	}
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 || perm&0o020 != 0 && int(st.Gid) != os.Getegid() {
		return refused(path, "is in %s, which others can write to (mode %04o): they could replace or remove the cache", dir, perm)
	}
	return nil
}
