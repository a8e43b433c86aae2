-- Named values of the installation, written once: the master key's check
-- value (an HMAC under a key derived from the master key), so that a
-- command holding another master key is refused before it hashes an API
-- key no server can check.
CREATE TABLE settings (
	name       TEXT    PRIMARY KEY,
	value      TEXT    NOT NULL,
	created_ms INTEGER NOT NULL
) STRICT;
