// Package secrets owns the one secret of a Rampart installation, the
// master key, and what is made from it: the purpose-specific keys
// (purposes.go lists them all, with the processes that need each), the
// sealing of small secrets at rest, the check value a database keeps of
// its master key, and the reading and writing of secret files.
//
// # The master key
//
// The master key is $RAMPART_MASTER_KEY (base64 of 32 bytes), else the
// file DATA/master.key, made on first use (mode 0600, never overwritten):
// [Load]. One secret to back up and share between instances; the database
// alone reveals nothing. Every other key is derived from it by one
// function, HKDF-SHA256 with the purpose's info string ([Master.Key]), so
// that no two purposes share a key. A process derives the keys it needs
// and hands each consumer its own: the gateway gets the API-key pepper
// and nothing else, never a key that opens token signing keys or the CA's
// key.
//
// # Check value
//
// A database remembers which master key it was set up with: [Verify]
// stores a check value (an HMAC under a key derived from the master key,
// which tells nothing of it) at first use, and refuses every other master
// key afterwards, with a message that says how to fix it. Without it, a
// command given the wrong master key (another machine's DATA/master.key
// against a shared PostgreSQL database) would hash API keys that no
// server can check, and say nothing.
//
// # Sealing
//
// [Seal] encrypts small secrets at rest — the CA's issuing key in its
// file, the token signing keys in the store — with AES-256-GCM under a
// key-encryption key of one purpose. A sealed secret is nonce (12 random
// bytes) || ciphertext || tag, bound to a label, the additional
// authenticated data, that says what the secret is ("rampart ca issuing
// key v1 pay.internal", a signing key's ID): a sealed secret moved to
// another place, or passed off as another, does not open.
//
// # Secret files
//
// [ReadFile] reads the small secret files of a data directory (the master
// key, the admin token) the way a secret must be read: not through a
// symbolic link, only from a regular file of this user that nobody else
// can read or write. [WriteNew] writes a new file with mode 0600, never
// replacing one.
package secrets

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
)

// Env is the environment variable holding the master key.
const Env = "RAMPART_MASTER_KEY"

// FileName is the master key's file in the data directory.
const FileName = "master.key"

// Master is the master key of an installation. It derives the keys of
// the purposes; give a consumer the one it needs ([Master.Key]), not the
// Master.
type Master struct {
	key []byte
	// Source says where the master key came from (never the key):
	// "$RAMPART_MASTER_KEY" or the file's path.
	Source string
	// Created is the master.key file Load made, or "".
	Created string
}

// ErrNoMasterKey is returned by Load when there is no master key and it
// may not make one.
var ErrNoMasterKey = errors.New("secrets: no master key")

// Load reads the master key, or makes one when create is set and there is
// none. Make one only where the database is new or local: against a
// shared database, a new master key would hash API keys no other instance
// can check.
func Load(dataDir string, create bool) (*Master, error) {
	if v := os.Getenv(Env); v != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("secrets: $%s must be the base64 of 32 bytes (openssl rand -base64 32)", Env)
		}
		return &Master{key: b, Source: "$" + Env}, nil
	}
	path := filepath.Join(dataDir, FileName)
	m := &Master{Source: path}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("%w: set $%s to the master key of the instances sharing this database (or keep it in %s)", ErrNoMasterKey, Env, path)
		}
		raw := make([]byte, 32)
		rand.Read(raw)
		err := WriteNew(path, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"))
		if err != nil && !errors.Is(err, ErrExists) {
			return nil, fmt.Errorf("secrets: %w", err)
		}
		if err == nil {
			m.Created = path
		}
	}
	// Not through a link, only this user's file, readable by no one
	// else: a master key someone else could have chosen or read is no
	// key.
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("secrets: %s must hold the base64 of 32 bytes", path)
	}
	m.key = b
	return m, nil
}

// Key returns the 32-byte key of purpose p, derived from the master key:
// the one derivation of the package. It panics for a Purpose that is not
// one of this package's constants, as crypto.Hash.New does for a hash
// that is not linked: no key is better than a wrong one.
func (m *Master) Key(p Purpose) []byte {
	d, ok := purposes[p]
	if !ok {
		panic(fmt.Sprintf("secrets: unknown purpose %d", int(p)))
	}
	secret := m.key
	if d.from != 0 {
		secret = m.Key(d.from)
	}
	return derive(secret, d.info)
}

// derive is HKDF-SHA256 of secret with info, no salt, 32 bytes.
func derive(secret []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, info, 32)
	if err != nil {
		// Only for a length over 255 hash sizes; 32 is one.
		panic("secrets: " + err.Error())
	}
	return k
}
