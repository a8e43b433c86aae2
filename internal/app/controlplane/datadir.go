package controlplane

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rampartsec/rampart/internal/util/secrets"
)

// DataDir returns the data directory, created 0700.
func DataDir(dir string) (string, error) {
	dir, err := DataDirPath(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// DataDirPath returns the data directory's path: dir, else $RAMPART_DATA,
// else $XDG_DATA_HOME/rampart or ~/.local/share/rampart.
func DataDirPath(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("RAMPART_DATA")
	}
	if dir == "" {
		base := os.Getenv("XDG_DATA_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no data directory: set --data or $RAMPART_DATA (%w)", err)
			}
			base = filepath.Join(home, ".local", "share")
		}
		dir = filepath.Join(base, "rampart")
	}
	return dir, nil
}

// AdminToken finds the admin token, making one on first start. It returns
// the token and where it came from (never the token in a message).
func AdminToken(file, dir string) (string, string, error) {
	if t := os.Getenv("RAMPART_ADMIN_TOKEN"); t != "" {
		return t, "$RAMPART_ADMIN_TOKEN", nil
	}
	if file == "" {
		file = filepath.Join(dir, "admin-token")
		var raw [32]byte
		rand.Read(raw[:])
		err := secrets.WriteNew(file, []byte(base64.RawURLEncoding.EncodeToString(raw[:])+"\n"))
		if err != nil && !errors.Is(err, secrets.ErrExists) {
			return "", "", err
		}
	}
	data, err := secrets.ReadFile(file)
	if err != nil {
		return "", "", err
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", "", fmt.Errorf("%s is empty", file)
	}
	return t, file, nil
}

// adminTokenHint says on the login page where the admin token is, without
// a path of this machine (the page is public): the admin_token_file
// setting, the environment, or the data directory.
func adminTokenHint(source, file string) string {
	switch {
	case source == "$RAMPART_ADMIN_TOKEN":
		return "in $RAMPART_ADMIN_TOKEN of the rampart serve process"
	case file != "":
		return "in the file that admin_token_file names in rampart serve's configuration"
	}
	return "in the file admin-token in rampart serve's data directory ($RAMPART_DATA, else ~/.local/share/rampart)"
}
