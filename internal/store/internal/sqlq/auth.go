package sqlq

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/token"
	"github.com/rampartsec/rampart/token/authserver"
)

// The auth tables of 0002_auth.sql: clients, api_keys (alias k, read
// joined with its client, alias c), signing_keys, revoked_tokens, and the
// one-row auth_generation. Optional times are NULL when unset, so that a
// zero time.Time never becomes year 1 in the database; scopes are one
// space-separated string.

// NullMillis converts an optional time to the stored representation:
// NULL (nil) for the zero time.
func NullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return Millis(t)
}

// NullTime converts an optional stored time back: the zero time for NULL.
func NullTime(ms *int64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return Time(*ms)
}

// Now returns the current time as the store keeps it, so that a time the
// store fills in reads back equal to what it reported.
func Now() time.Time { return Time(Millis(time.Now())) }

// JoinScopes returns the stored form of scopes.
func JoinScopes(scopes []string) string { return strings.Join(scopes, " ") }

// SplitScopes reads scopes back: nil for none.
func SplitScopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// checkScopes refuses scopes that would not read back as given.
func checkScopes(scopes []string) error {
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("scope %q is empty or contains white space", truncate(s, 80))
		}
	}
	return nil
}

// checkText refuses what PostgreSQL cannot store in text (NUL, invalid
// UTF-8), so that every backend refuses it alike. fields alternate names
// and values.
func checkText(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		v := fields[i+1]
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%s %q is not text (invalid UTF-8 or NUL)", fields[i], truncate(v, 80))
		}
	}
	return nil
}

// CheckClient returns an error when c may not be stored.
func CheckClient(c *apikey.Client) error {
	if c == nil {
		return errors.New("no client")
	}
	if c.ID == "" {
		return errors.New("client has no ID")
	}
	if c.TokenLifetime < 0 {
		return fmt.Errorf("client %q: negative token lifetime", c.ID)
	}
	if err := checkText("client ID", c.ID, "client name", c.Name, "certificate subject", c.CertSubject,
		"certificate URI", c.CertURI, "certificate DNS name", c.CertDNS); err != nil {
		return fmt.Errorf("client %q: %w", c.ID, err)
	}
	for _, s := range c.Scopes {
		if err := checkText("scope", s); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	if err := checkScopes(c.Scopes); err != nil {
		return fmt.Errorf("client %q: %w", c.ID, err)
	}
	return nil
}

// CheckNewKey returns an error when r may not be stored as a new key: it
// needs an ID, a client and a hash, and may not be revoked or replaced
// already (only RevokeKey and RotateKey do that, and they move the
// generation). The error never shows the hash.
func CheckNewKey(r *apikey.Record) error {
	if r == nil {
		return errors.New("no key")
	}
	switch {
	case r.ID == "":
		return errors.New("key has no ID")
	case r.ClientID == "":
		return fmt.Errorf("key %q has no client", r.ID)
	case len(r.Hash) == 0:
		return fmt.Errorf("key %q has no hash", r.ID)
	case !r.RevokedAt.IsZero() || r.ReplacedBy != "" || !r.GraceUntil.IsZero():
		return fmt.Errorf("new key %q is already revoked or replaced", r.ID)
	}
	if err := checkText("key ID", r.ID, "client ID", r.ClientID, "hint", r.Hint); err != nil {
		return fmt.Errorf("key %q: %w", r.ID, err)
	}
	for _, s := range r.Scopes {
		if err := checkText("scope", s); err != nil {
			return fmt.Errorf("key %q: %w", r.ID, err)
		}
	}
	if err := checkScopes(r.Scopes); err != nil {
		return fmt.Errorf("key %q: %w", r.ID, err)
	}
	return nil
}

// CheckSigningKey returns an error when k may not be stored as the Next
// signing key. Its State must be Next or unset; the error never shows the
// key material.
func CheckSigningKey(k authserver.StoredKey) error {
	switch {
	case k.ID == "":
		return errors.New("signing key has no ID")
	case k.State != "" && k.State != authserver.Next:
		return fmt.Errorf("signing key %q: state %q, want %q: a key enters the rotation as Next", k.ID, k.State, authserver.Next)
	case len(k.Public) == 0 || len(k.Sealed) == 0:
		return fmt.Errorf("signing key %q has no public or sealed key", k.ID)
	}
	return checkText("signing key ID", k.ID, "algorithm", k.Alg)
}

// CheckRevocation returns an error when the revocation of the token jti,
// expiring at expires, may not be stored: a revocation without an expiry
// could never be pruned, and a token without one is not valid anyway.
func CheckRevocation(jti string, expires time.Time) error {
	switch {
	case jti == "":
		return errors.New("token has no jti")
	case expires.IsZero():
		return fmt.Errorf("token %q: no expiry", truncate(jti, 80))
	}
	return checkText("jti", jti)
}

// CheckClientRevocation returns an error when the revocation of every
// token of clientID issued up to at may not be stored.
func CheckClientRevocation(clientID string, at time.Time) error {
	switch {
	case clientID == "":
		return errors.New("no client")
	case at.IsZero():
		return fmt.Errorf("client %q: no revocation time", truncate(clientID, 80))
	}
	return checkText("client ID", clientID)
}

// ClientRevocationExpiry is when a revocation of a client's tokens at at
// can be forgotten: every token issued by then has expired.
func ClientRevocationExpiry(at time.Time) time.Time {
	return at.Add(authserver.MaxLifetime + authserver.ClockSkew)
}

// TokenRevokedArgs are the arguments of the token-revoked query, in the
// order of its numbered parameters: jti, client ID, iat in milliseconds.
func TokenRevokedArgs(t token.TokenRef) []any {
	return []any{t.JTI, t.ClientID, Millis(t.IssuedAt)}
}

// ClientColumns are the columns of clients in the order [ScanClient]
// reads them and [ClientArgs] gives them.
const ClientColumns = "id, name, scopes, disabled, token_lifetime_ms, cert_subject, cert_uri, cert_dns, created_ms"

// ClientArgs returns the values of [ClientColumns] for c.
func ClientArgs(c *apikey.Client) []any {
	return []any{c.ID, c.Name, JoinScopes(c.Scopes), c.Disabled, c.TokenLifetime.Milliseconds(),
		c.CertSubject, c.CertURI, c.CertDNS, Millis(c.CreatedAt)}
}

// ScanClient reads a row of [ClientColumns].
func ScanClient(scan func(dest ...any) error) (apikey.Client, error) {
	var (
		c                  apikey.Client
		scopes             string
		lifetime, creation int64
	)
	if err := scan(&c.ID, &c.Name, &scopes, &c.Disabled, &lifetime,
		&c.CertSubject, &c.CertURI, &c.CertDNS, &creation); err != nil {
		return apikey.Client{}, err
	}
	c.Scopes = SplitScopes(scopes)
	c.TokenLifetime = time.Duration(lifetime) * time.Millisecond
	c.CreatedAt = Time(creation)
	return c, nil
}

// KeyInsertColumns are the columns [KeyArgs] gives values for.
const KeyInsertColumns = "id, client_id, hash, hint, scopes, created_ms, expires_ms, last_used_ms"

// KeyArgs returns the values of [KeyInsertColumns] for r.
func KeyArgs(r *apikey.Record) []any {
	return []any{r.ID, r.ClientID, r.Hash, r.Hint, JoinScopes(r.Scopes),
		Millis(r.CreatedAt), NullMillis(r.ExpiresAt), NullMillis(r.LastUsedAt)}
}

// KeySelect selects [ScanKey]'s columns: a key and its client's state.
// Append a WHERE clause on k.
const KeySelect = "SELECT k.id, k.client_id, k.hash, k.hint, k.scopes, k.created_ms, k.expires_ms," +
	" k.revoked_ms, k.replaced_by, k.grace_ms, k.last_used_ms, c.disabled" +
	" FROM api_keys k JOIN clients c ON c.id = k.client_id"

// KeyOrder lists keys oldest first, ties in insertion order.
const KeyOrder = " ORDER BY k.created_ms, k.seq"

// ScanKey reads a row of [KeySelect].
func ScanKey(scan func(dest ...any) error) (apikey.Record, error) {
	var (
		r                               apikey.Record
		scopes                          string
		created                         int64
		expires, revoked, grace, lastMs *int64
		replacedBy                      *string
	)
	if err := scan(&r.ID, &r.ClientID, &r.Hash, &r.Hint, &scopes, &created, &expires,
		&revoked, &replacedBy, &grace, &lastMs, &r.ClientDisabled); err != nil {
		return apikey.Record{}, err
	}
	r.Scopes = SplitScopes(scopes)
	r.CreatedAt, r.ExpiresAt = Time(created), NullTime(expires)
	r.RevokedAt, r.GraceUntil, r.LastUsedAt = NullTime(revoked), NullTime(grace), NullTime(lastMs)
	if replacedBy != nil {
		r.ReplacedBy = *replacedBy
	}
	return r, nil
}

// SigningKeyColumns are the columns of signing_keys in the order
// [ScanSigningKey] reads them and [SigningKeyArgs] gives them.
const SigningKeyColumns = "id, alg, state, public_key, sealed_key, created_ms, activated_ms, retired_ms"

// SigningKeyArgs returns the values of [SigningKeyColumns] for k, as the
// new Next key: never activated nor retired.
func SigningKeyArgs(k authserver.StoredKey) []any {
	return []any{k.ID, k.Alg, string(authserver.Next), k.Public, k.Sealed, Millis(k.CreatedAt), nil, nil}
}

// ScanSigningKey reads a row of [SigningKeyColumns].
func ScanSigningKey(scan func(dest ...any) error) (authserver.StoredKey, error) {
	var (
		k                  authserver.StoredKey
		state              string
		created            int64
		activated, retired *int64
	)
	if err := scan(&k.ID, &k.Alg, &state, &k.Public, &k.Sealed, &created, &activated, &retired); err != nil {
		return authserver.StoredKey{}, err
	}
	k.State = authserver.KeyState(state)
	k.CreatedAt, k.ActivatedAt, k.RetiredAt = Time(created), NullTime(activated), NullTime(retired)
	return k, nil
}

// CheckRotation returns an error when the key of clientID, revoked and
// replaced as stored, may not be rotated out by next: ErrConflict when it
// is revoked or already replaced, a plain error when next belongs to
// another client.
func CheckRotation(clientID string, revoked *int64, replacedBy *string, next *apikey.Record) error {
	switch {
	case revoked != nil:
		return fmt.Errorf("revoked: %w", apikey.ErrConflict)
	case replacedBy != nil:
		return fmt.Errorf("already replaced by %q: %w", *replacedBy, apikey.ErrConflict)
	case next.ClientID != clientID:
		return fmt.Errorf("new key %q is of client %q, not %q", next.ID, next.ClientID, clientID)
	}
	return nil
}
