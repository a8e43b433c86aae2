package secrets

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// Records are what Verify reads and writes of a database: the check value
// it keeps of its master key, and what tells, in a database set up before
// check values existed, which master key it was (internal/store adapts a
// store: store.MasterKeyRecords).
type Records interface {
	// CheckValue returns the check value stored, or "" if there is none.
	CheckValue(ctx context.Context) (string, error)
	// InitCheckValue stores v unless a check value is stored already,
	// and returns the one stored after the call. Concurrent calls, from
	// every instance sharing the database, agree on one.
	InitCheckValue(ctx context.Context, v string) (string, error)
	// SealedSigningKey returns one of the sealed token signing keys and
	// the label it is sealed with (its key ID); ok is false when there
	// are none.
	SealedSigningKey(ctx context.Context) (label string, sealed []byte, ok bool, err error)
	// HasClients reports whether the database holds API-key clients.
	HasClients(ctx context.Context) (bool, error)
}

// checkValue is what the database keeps of the master key: "v1:" and the
// base64url of HMAC-SHA256 under the check key of a fixed message.
func (m *Master) checkValue() string {
	h := hmac.New(sha256.New, m.Key(CheckKey))
	h.Write([]byte("rampart master key check value"))
	return "v1:" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// ErrMismatch is returned by Verify for a master key the database was not
// set up with; the error is a *MismatchError.
var ErrMismatch = errors.New("secrets: this database was set up with another master key")

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

// Verify checks that m is the master key db was set up with. At first use
// it records m's check value. A database set up before check values
// existed holds none: if it holds sealed signing keys, m must unseal
// them; if it holds clients, m must not be one this process just made;
// else m is taken as the database's. On a mismatch, a master.key this
// process made (Master.Created) is removed, so that the next attempt does
// not find a wrong key in place, and the error is a *MismatchError.
func Verify(ctx context.Context, db Records, m *Master) error {
	want := m.checkValue()
	stored, err := db.CheckValue(ctx)
	if err != nil {
		return fmt.Errorf("secrets: reading the check value: %w", err)
	}
	if stored == "" {
		if err := m.opensSigningKeys(ctx, db); err != nil {
			return m.mismatch(err)
		}
		if err := m.notNewForOldData(ctx, db); err != nil {
			return m.mismatch(err)
		}
		if stored, err = db.InitCheckValue(ctx, want); err != nil {
			return fmt.Errorf("secrets: recording the check value: %w", err)
		}
	}
	if !hmac.Equal([]byte(stored), []byte(want)) {
		return m.mismatch(nil)
	}
	return nil
}

// opensSigningKeys returns ErrMismatch when db holds a sealed signing key
// that m cannot unseal.
func (m *Master) opensSigningKeys(ctx context.Context, db Records) error {
	label, sealed, ok, err := db.SealedSigningKey(ctx)
	if err != nil {
		return fmt.Errorf("secrets: reading the signing keys: %w", err)
	}
	if !ok {
		return nil
	}
	// One is enough: they are sealed alike.
	if _, err := Open(m.Key(SigningKeyKEK), label, sealed); err != nil {
		if errors.Is(err, ErrOpen) {
			return ErrMismatch
		}
		return err
	}
	return nil
}

// notNewForOldData returns ErrMismatch when m was made by this process
// (Master.Created) for a database that already has clients: their API
// keys were hashed under another master key, which a new one cannot be.
// (A key that was already there, in a file or the environment, is taken
// at its word: nothing in such a database can tell.)
func (m *Master) notNewForOldData(ctx context.Context, db Records) error {
	if m.Created == "" {
		return nil
	}
	has, err := db.HasClients(ctx)
	if err != nil {
		return fmt.Errorf("secrets: reading the clients: %w", err)
	}
	if has {
		return ErrMismatch
	}
	return nil
}

func (m *Master) mismatch(err error) error {
	if err != nil && !errors.Is(err, ErrMismatch) {
		return err
	}
	e := &MismatchError{Source: m.Source}
	if m.Created != "" {
		if os.Remove(m.Created) == nil {
			e.Removed = m.Created
		}
	}
	return e
}
