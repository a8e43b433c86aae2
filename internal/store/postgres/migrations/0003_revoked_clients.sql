-- Revocations of every token of a client issued up to a time (rampart
-- token revoke --client, rampart client disable), as in the SQLite schema:
-- a token of client_id whose iat, in milliseconds, is at most revoked_ms
-- is revoked. Kept until expires_ms, when every such token has expired.
CREATE TABLE revoked_clients (
	client_id  text   PRIMARY KEY,
	revoked_ms bigint NOT NULL,
	expires_ms bigint NOT NULL
);

CREATE INDEX revoked_clients_expires ON revoked_clients (expires_ms);
