-- Clients, API keys, token signing keys and revoked tokens. Nothing
-- secret is stored in the clear: an API key only as its HMAC (hash), a
-- signing key's private half only sealed under the server's key
-- encryption key. Times are Unix milliseconds, UTC, and NULL where a time
-- is not set (a key that never expires, is not revoked, was never used).
-- Scopes are one space-separated string: scopes never contain spaces.

-- The one row of apikey.Store.Generation. Every change that verifiers
-- cache (a key revoked or rotated, a client disabled or enabled) bumps it
-- in its own transaction, so whoever reads the new number also sees the
-- change, whichever process made it.
CREATE TABLE auth_generation (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	generation INTEGER NOT NULL
) STRICT;
INSERT INTO auth_generation (id, generation) VALUES (1, 1);

CREATE TABLE clients (
	id                TEXT    NOT NULL PRIMARY KEY,
	name              TEXT    NOT NULL,
	scopes            TEXT    NOT NULL,
	disabled          INTEGER NOT NULL,
	token_lifetime_ms INTEGER NOT NULL,
	cert_subject      TEXT    NOT NULL,
	cert_uri          TEXT    NOT NULL,
	cert_dns          TEXT    NOT NULL,
	created_ms        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE api_keys (
	-- The insertion order, which breaks ties in created_ms.
	seq          INTEGER PRIMARY KEY,
	id           TEXT    NOT NULL UNIQUE,
	client_id    TEXT    NOT NULL REFERENCES clients (id),
	-- HMAC-SHA256 of the key under the server's pepper: the lookup index.
	hash         BLOB    NOT NULL UNIQUE,
	hint         TEXT    NOT NULL,
	scopes       TEXT    NOT NULL,
	created_ms   INTEGER NOT NULL,
	expires_ms   INTEGER,
	revoked_ms   INTEGER,
	replaced_by  TEXT,
	grace_ms     INTEGER,
	last_used_ms INTEGER
) STRICT;

CREATE INDEX api_keys_client ON api_keys (client_id, created_ms);

CREATE TABLE signing_keys (
	-- The kid: the RFC 7638 thumbprint of the public key.
	id           TEXT    NOT NULL PRIMARY KEY,
	alg          TEXT    NOT NULL,
	state        TEXT    NOT NULL CHECK (state IN ('next', 'current', 'retired')),
	-- PKIX DER.
	public_key   BLOB    NOT NULL,
	-- nonce || AES-256-GCM ciphertext of the PKCS#8 private key.
	sealed_key   BLOB    NOT NULL,
	created_ms   INTEGER NOT NULL,
	activated_ms INTEGER,
	retired_ms   INTEGER
) STRICT, WITHOUT ROWID;

-- At most one Current and one Next key, whatever a caller does.
CREATE UNIQUE INDEX signing_keys_one_per_state ON signing_keys (state) WHERE state <> 'retired';

-- Revoked access tokens (RFC 7009), kept until they would have expired.
CREATE TABLE revoked_tokens (
	jti        TEXT    NOT NULL PRIMARY KEY,
	expires_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_ms);
