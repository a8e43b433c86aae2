//go:build unix

package secrets

import (
	"errors"
	"os"
	"syscall"
)

func open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, unsafe(path, "is a symbolic link; put the file itself there")
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkMode(path, fi)
	}
	if err == nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !ok:
			err = errors.New("secrets: " + path + ": no owner information")
		case int(st.Uid) != os.Geteuid():
			err = unsafe(path, "is owned by uid %d, not by this user (uid %d)", st.Uid, os.Geteuid())
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
