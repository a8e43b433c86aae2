package apikey_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
)

// lookup is the four methods a Verifier calls, and nothing else: a fake
// or another backend implements what the Verifier uses, not the
// Manager's store.
type lookup struct {
	recs map[string]*apikey.Record // by string(Hash)
	down bool
}

func (l *lookup) KeyByHash(_ context.Context, h []byte) (*apikey.Record, error) {
	if l.down {
		return nil, errors.New("store down")
	}
	if r, ok := l.recs[string(h)]; ok {
		return r, nil
	}
	return nil, apikey.ErrNotFound
}
func (l *lookup) Key(context.Context, string) (*apikey.Record, error) { return nil, apikey.ErrNotFound }
func (l *lookup) Generation(context.Context) (int64, error)           { return 1, nil }
func (l *lookup) TouchKeys(context.Context, map[string]time.Time) error {
	return nil
}

func TestVerifierNeedsOnlyALookup(t *testing.T) {
	pepper := []byte("pepper")
	good, _ := apikey.Generate(apikey.Live)
	revoked, _ := apikey.Generate(apikey.Live)
	unknown, _ := apikey.Generate(apikey.Live)
	l := &lookup{recs: map[string]*apikey.Record{
		string(apikey.Hash(good, pepper)):    {ID: "key_good", ClientID: "shop", Hash: apikey.Hash(good, pepper), Scopes: []string{"payment.read"}},
		string(apikey.Hash(revoked, pepper)): {ID: "key_rev", ClientID: "shop", Hash: apikey.Hash(revoked, pepper), RevokedAt: time.Now()},
	}}
	v := &apikey.Verifier{Store: l, Pepper: pepper, RevocationCheck: -1}
	defer v.Close()
	var _ auth.Authenticator = v

	// A typo in the last character (never the character that is there:
	// then the key would be the good one, 1 run in 62).
	typo := good.String()[:apikey.Len-1] + "x"
	if typo == good.String() {
		typo = good.String()[:apikey.Len-1] + "y"
	}
	for _, tc := range []struct {
		name, key string
		status    int
		reason    error
		desc      string
	}{
		{"good", good.String(), 0, nil, ""},
		{"revoked", revoked.String(), 401, apikey.ErrRevoked, "key revoked"},
		{"unknown", unknown.String(), 401, apikey.ErrUnknown, "unknown key"},
		{"malformed", "rk_live_short", 401, apikey.ErrInvalid, "not an API key: 13 characters, want 57"},
		{"checksum", typo, 401, apikey.ErrChecksum, "not an API key: checksum mismatch (a typo, or not a key this server issues)"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-API-Key", tc.key)
		p, err := v.Authenticate(r)
		if tc.status == 0 {
			if err != nil || p.ClientID != "shop" || p.Method != auth.APIKey || p.KeyID != "key_good" {
				t.Errorf("%s: %+v %v", tc.name, p, err)
			}
			continue
		}
		e, ok := errors.AsType[*auth.Error](err)
		re, isRefused := errors.AsType[*apikey.RefusedError](err)
		if !ok || e.Status != tc.status || e.Code != auth.InvalidToken || e.Description != tc.desc ||
			!isRefused || re.Description != tc.desc || !errors.Is(err, tc.reason) {
			t.Errorf("%s: %v, want 401 invalid_token %q wrapping %v", tc.name, err, tc.desc, tc.reason)
		}
		// Verify says the same, without the HTTP.
		if _, err := v.Verify(context.Background(), tc.key); !errors.Is(err, tc.reason) || err.Error() != "apikey: "+tc.desc {
			t.Errorf("%s: Verify: %v", tc.name, err)
		}
	}

	l.down = true
	v.Forget()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+good.String())
	_, err := v.Authenticate(r)
	if e, ok := errors.AsType[*auth.Error](err); !ok || e.Status != 503 || e.Code != auth.TemporarilyUnavailable || errors.As(err, new(*apikey.RefusedError)) {
		t.Errorf("store down: %v, want 503", err)
	}

	// A request without a key is not this Verifier's: another
	// Authenticator may take it.
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer eyJ.eyJ.sig")
	if _, err := v.Authenticate(r); !errors.Is(err, auth.ErrNoCredential) || !errors.Is(err, apikey.ErrNoKey) {
		t.Errorf("a bearer token: %v, want ErrNoCredential", err)
	}
	var none *apikey.Verifier
	if _, err := none.Authenticate(r); !errors.Is(err, auth.ErrNoCredential) {
		t.Errorf("a nil Verifier: %v, want ErrNoCredential", err)
	}
}
