//go:build linux || darwin || freebsd

package sqlite

import "syscall"

// freeSpace returns the bytes an unprivileged writer may still use on
// the file system holding dir.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(uint64(st.Bavail) * uint64(st.Bsize)), nil
}
