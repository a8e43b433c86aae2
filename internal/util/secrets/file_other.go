//go:build !unix

package secrets

import "os"

// open refuses symbolic links; file ownership and ACLs are not checked
// on this platform.
func open(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, unsafe(path, "is a symbolic link; put the file itself there")
	}
	if err := checkMode(path, fi); err != nil {
		return nil, err
	}
	return os.Open(path)
}
