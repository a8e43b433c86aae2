// Package masterkey holds the one secret of a Rampart installation, from
// which the others are derived (HKDF-SHA256): the pepper of API-key hashes
// and the key that seals token signing keys at rest. One secret to back up
// and share between instances; the database alone reveals nothing.
//
// The master key is $RAMPART_MASTER_KEY (base64 of 32 bytes), else the
// file DATA/master.key, made on first use (mode 0600, never overwritten).
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
package masterkey

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rampartsec/rampart/internal/keygen"
	"github.com/rampartsec/rampart/internal/sealed"
	"github.com/rampartsec/rampart/internal/secretfile"
	"github.com/rampartsec/rampart/internal/store"
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
	// Created is the master.key file this Load made, or "".
	Created string

	check []byte // keys the check value
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
	var created string
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
			if err == nil {
				created = path
			}
		}
		// Not through a link, only this user's file, readable by no one
		// else: a master key someone else could have chosen or read is
		// no key.
		data, err := secretfile.Read(path)
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
	check, err := derive("rampart master key check v1")
	if err != nil {
		return nil, err
	}
	return &Keys{Pepper: pepper, SigningKeyKEK: kek, Source: source, Created: created, check: check}, nil
}

// checkSetting is the name of the check value in the store's settings.
const checkSetting = "master_key_check"

// checkValue is what the database keeps of the master key: "v1:" and the
// base64url of HMAC-SHA256 under the check key of a fixed message.
func (k *Keys) checkValue() string {
	m := hmac.New(sha256.New, k.check)
	m.Write([]byte("rampart master key check value"))
	return "v1:" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ErrMismatch is returned by Verify for a master key the database was not
// set up with; the error is a *MismatchError.
var ErrMismatch = errors.New("masterkey: this database was set up with another master key")

// MismatchError says which master key was refused and how to fix it.
type MismatchError struct {
	// Source is where the refused master key came from.
	Source string
	// Removed is the master.key file made for this run and removed
	// again, or "".
	Removed string
}

func (e *MismatchError) Error() string {
	msg := ErrMismatch.Error() + " than the one from " + e.Source
	if e.Removed != "" {
		msg += " (made just now, and removed again)"
	}
	if e.Source == "$"+Env {
		return msg + ": set $" + Env + " to the master key of the instances that use this database (their DATA/master.key)"
	}
	return msg + ": copy master.key from the data directory of an instance that uses this database (or set $" + Env + " to it)"
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Verify checks that k is the master key st was set up with. At first use
// it records k's check value. A database set up before check values
// existed holds none: if it holds sealed signing keys, k must unseal
// them; if it holds clients, k must not be one this process just made;
// else k is taken as the database's. On a mismatch, a master.key
// this process made (Keys.Created) is removed, so that the next attempt
// does not find a wrong key in place, and the error is a *MismatchError.
func Verify(ctx context.Context, st store.Store, k *Keys) error {
	want := k.checkValue()
	stored, err := st.Settings().Get(ctx, checkSetting)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := k.opensSigningKeys(ctx, st); err != nil {
			return k.mismatch(err)
		}
		if err := k.notNewForOldData(ctx, st); err != nil {
			return k.mismatch(err)
		}
		if stored, err = st.Settings().Init(ctx, checkSetting, want); err != nil {
			return fmt.Errorf("masterkey: recording the check value: %w", err)
		}
	case err != nil:
		return fmt.Errorf("masterkey: reading the check value: %w", err)
	}
	if !hmac.Equal([]byte(stored), []byte(want)) {
		return k.mismatch(nil)
	}
	return nil
}

// opensSigningKeys returns ErrMismatch when st holds a sealed signing key
// that k cannot unseal.
func (k *Keys) opensSigningKeys(ctx context.Context, st store.Store) error {
	keys, err := st.SigningKeys().SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("masterkey: reading the signing keys: %w", err)
	}
	for _, sk := range keys {
		if _, err := sealed.Open(k.SigningKeyKEK, sk.ID, sk.Sealed); err != nil {
			if errors.Is(err, sealed.ErrOpen) {
				return ErrMismatch
			}
			return fmt.Errorf("masterkey: %w", err)
		}
		return nil // one is enough: they are sealed alike
	}
	return nil
}

// notNewForOldData returns ErrMismatch when k was made by this process
// (Keys.Created) for a database that already has clients: their API keys
// were hashed under another master key, which a new one cannot be. (A
// key that was already there, in a file or the environment, is taken at
// its word: nothing in such a database can tell.)
func (k *Keys) notNewForOldData(ctx context.Context, st store.Store) error {
	if k.Created == "" {
		return nil
	}
	clients, err := st.APIKeys().Clients(ctx)
	if err != nil {
		return fmt.Errorf("masterkey: reading the clients: %w", err)
	}
	if len(clients) > 0 {
		return ErrMismatch
	}
	return nil
}

func (k *Keys) mismatch(err error) error {
	if err != nil && !errors.Is(err, ErrMismatch) {
		return err
	}
	e := &MismatchError{Source: k.Source}
	if k.Created != "" {
		if os.Remove(k.Created) == nil {
			e.Removed = k.Created
		}
	}
	return e
}
