package store

import (
	"context"
	"errors"

	"github.com/rampartsec/rampart/internal/util/secrets"
)

// MasterKeyCheckSetting is the setting that holds the check value of the
// database's master key (secrets.Verify).
const MasterKeyCheckSetting = "master_key_check"

// MasterKeyRecords is what secrets.Verify reads and writes of st: the
// check value in its settings, a sealed signing key and whether it has
// clients.
func MasterKeyRecords(st Store) secrets.Records { return masterKeyRecords{st} }

type masterKeyRecords struct{ st Store }

func (r masterKeyRecords) CheckValue(ctx context.Context) (string, error) {
	v, err := r.st.Settings().Get(ctx, MasterKeyCheckSetting)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return v, err
}

func (r masterKeyRecords) InitCheckValue(ctx context.Context, v string) (string, error) {
	return r.st.Settings().Init(ctx, MasterKeyCheckSetting, v)
}

func (r masterKeyRecords) SealedSigningKey(ctx context.Context) (string, []byte, bool, error) {
	keys, err := r.st.SigningKeys().SigningKeys(ctx)
	if err != nil || len(keys) == 0 {
		return "", nil, false, err
	}
	return keys[0].ID, keys[0].Sealed, true, nil
}

func (r masterKeyRecords) HasClients(ctx context.Context) (bool, error) {
	clients, err := r.st.APIKeys().Clients(ctx)
	return len(clients) > 0, err
}
