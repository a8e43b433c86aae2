package controlplane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// CreatePIDFile writes the process ID to path (0644, written then
// renamed into place) and returns a function that removes it if it still
// holds this process's ID. It refuses a file naming a process that is
// running: another instance.
func CreatePIDFile(path string) (func(), error) {
	me := os.Getpid()
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != me && processRunning(pid) {
			return nil, fmt.Errorf("%s names process %d, which is running (another rampart serve?): stop it, or remove the file if that process is not rampart", path, pid)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(tmp, "%d\n", me)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	return func() {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(me) {
			os.Remove(path)
		}
	}, nil
}

// processRunning reports whether a process with that ID exists (signal 0
// tests it without sending anything; EPERM means it exists, under
// another user).
func processRunning(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// publicHost picks the host name clients should use for this server: the
// listen address when the certificate covers it, else the certificate's
// first DNS name that is not a wildcard. ok is false when no name of the
// certificate can be used.
func publicHost(listen string, leaf *x509.Certificate) (host string, ok bool) {
	if leaf == nil {
		return listen, true
	}
	if leaf.VerifyHostname(listen) == nil {
		return listen, true
	}
	for _, n := range leaf.DNSNames {
		if !strings.Contains(n, "*") {
			return n, true
		}
	}
	return listen, false
}

// certNames lists the names a certificate covers, for messages.
func certNames(leaf *x509.Certificate) string {
	var names []string
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
