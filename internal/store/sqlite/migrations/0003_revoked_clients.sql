-- Revocations of every token of a client issued up to a time (rampart
-- token revoke --client, rampart client disable): a token of client_id
-- whose iat, in milliseconds, is at most revoked_ms is revoked. Kept until
-- expires_ms, when every such token has expired (the longest token
-- lifetime plus clock skew after revoked_ms). No reference to clients: a
-- revocation outlives nothing it depends on.
CREATE TABLE revoked_clients (
	client_id  TEXT    NOT NULL PRIMARY KEY,
	revoked_ms INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX revoked_clients_expires ON revoked_clients (expires_ms);
