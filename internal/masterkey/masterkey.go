// Package masterkey holds the one secret of a Rampart installation, from
// which the others are derived (HKDF-SHA256): the pepper of API-key hashes
// and the key that seals token signing keys at rest. One secret to back up
// and share between instances; the database alone reveals nothing.
//
// The master key is $RAMPART_MASTER_KEY (base64 of 32 bytes), else the
// file DATA/master.key, made on first use (mode 0600, never overwritten).
package masterkey

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rampartsec/rampart/internal/keygen"
)

// Env is the environment variable holding the master key.
const Env = "RAMPART_MASTER_KEY"

// Keys are the secrets derived from the master key.
type Keys struct {
	// Pepper keys the HMAC of stored API keys.
	Pepper []byte
	// SigningKeyKEK seals token signing keys (AES-256-GCM).
	SigningKeyKEK []byte
	// Source says where the master key came from (never the key).
	Source string
}

// ErrNoMasterKey is returned by Load when there is no master key and it
// may not make one.
var ErrNoMasterKey = errors.New("masterkey: no master key")

// Load returns the derived keys, reading the master key, or making one
// when create is set and there is none. Make one only where the database
// is new or local: against a shared database, a new master key would hash
// API keys no other instance can check.
func Load(dataDir string, create bool) (*Keys, error) {
	var master []byte
	source := "$" + Env
	if v := os.Getenv(Env); v != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("masterkey: $%s must be the base64 of 32 bytes (openssl rand -base64 32)", Env)
		}
		master = b
	} else {
		path := filepath.Join(dataDir, "master.key")
		source = path
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if !create {
				return nil, fmt.Errorf("%w: set $%s to the master key of the instances sharing this database (or keep it in %s)", ErrNoMasterKey, Env, path)
			}
			raw := make([]byte, 32)
			rand.Read(raw)
			err := keygen.WriteNew(path, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"))
			if err != nil && !errors.Is(err, keygen.ErrExists) {
				return nil, fmt.Errorf("masterkey: %w", err)
			}
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("masterkey: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("masterkey: %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("masterkey: %w", err)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("masterkey: %s must hold the base64 of 32 bytes", path)
		}
		master = b
	}
	derive := func(purpose string) ([]byte, error) {
		return hkdf.Key(sha256.New, master, nil, purpose, 32)
	}
	pepper, err := derive("rampart api key pepper v1")
	if err != nil {
		return nil, err
	}
	kek, err := derive("rampart token signing key encryption v1")
	if err != nil {
		return nil, err
	}
	return &Keys{Pepper: pepper, SigningKeyKEK: kek, Source: source}, nil
}
