-- Clients, API keys, token signing keys and revoked tokens, as in the
-- SQLite schema. Nothing secret is stored in the clear: an API key only as
-- its HMAC (hash), a signing key's private half only sealed under the
-- server's key encryption key. Times are Unix milliseconds, UTC, and NULL
-- where a time is not set (a key that never expires, is not revoked, was
-- never used). Scopes are one space-separated string: scopes never
-- contain spaces.

-- The one row of apikey.Store.Generation. Every change that verifiers
-- cache (a key revoked or rotated, a client disabled or enabled) bumps it
-- in its own transaction, so whoever reads the new number also sees the
-- change, whichever instance made it. A sequence would not do: nextval
-- is visible before the change commits.
CREATE TABLE auth_generation (
	id         boolean PRIMARY KEY DEFAULT true CHECK (id),
	generation bigint  NOT NULL
);
INSERT INTO auth_generation (generation) VALUES (1);

CREATE TABLE clients (
	id                text    PRIMARY KEY,
	name              text    NOT NULL,
	scopes            text    NOT NULL,
	disabled          boolean NOT NULL,
	token_lifetime_ms bigint  NOT NULL,
	cert_subject      text    NOT NULL,
	cert_uri          text    NOT NULL,
	cert_dns          text    NOT NULL,
	created_ms        bigint  NOT NULL
);

CREATE TABLE api_keys (
	id           text   CONSTRAINT api_keys_pkey PRIMARY KEY,
	-- The insertion order, which breaks ties in created_ms.
	seq          bigint GENERATED ALWAYS AS IDENTITY,
	client_id    text   NOT NULL CONSTRAINT api_keys_client_exists REFERENCES clients (id),
	-- HMAC-SHA256 of the key under the server's pepper: the lookup index.
	hash         bytea  NOT NULL CONSTRAINT api_keys_hash_unique UNIQUE,
	hint         text   NOT NULL,
	scopes       text   NOT NULL,
	created_ms   bigint NOT NULL,
	expires_ms   bigint,
	revoked_ms   bigint,
	replaced_by  text,
	grace_ms     bigint,
	last_used_ms bigint
);

CREATE INDEX api_keys_client ON api_keys (client_id, created_ms, seq);

CREATE TABLE signing_keys (
	-- The kid: the RFC 7638 thumbprint of the public key.
	id           text   PRIMARY KEY,
	alg          text   NOT NULL,
	state        text   NOT NULL CHECK (state IN ('next', 'current', 'retired')),
	-- PKIX DER.
	public_key   bytea  NOT NULL,
	-- nonce || AES-256-GCM ciphertext of the PKCS#8 private key.
	sealed_key   bytea  NOT NULL,
	created_ms   bigint NOT NULL,
	activated_ms bigint,
	retired_ms   bigint
);

-- At most one Current and one Next key, whatever a caller does.
CREATE UNIQUE INDEX signing_keys_one_per_state ON signing_keys (state) WHERE state <> 'retired';

-- Revoked access tokens (RFC 7009), kept until they would have expired.
CREATE TABLE revoked_tokens (
	jti        text   PRIMARY KEY,
	expires_ms bigint NOT NULL
);

CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_ms);
