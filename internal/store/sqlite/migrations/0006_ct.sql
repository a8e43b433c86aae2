-- The Certificate Transparency monitor: each log's position (tree head,
-- next entry, compact range) under a lease that one instance holds at a
-- time; the certificates seen, by TBS hash, with their worst class; one
-- sighting per log entry; and the alerts to deliver by webhook.
CREATE TABLE ct_logs (
	log_id         TEXT    PRIMARY KEY,
	owner          TEXT    NOT NULL DEFAULT '',
	lease_until_ms INTEGER NOT NULL DEFAULT 0,
	has_position   INTEGER NOT NULL DEFAULT 0,
	tree_size      INTEGER NOT NULL DEFAULT 0,
	root           BLOB    NOT NULL DEFAULT x'',
	head_ms        INTEGER NOT NULL DEFAULT 0,
	next_index     INTEGER NOT NULL DEFAULT 0,
	frontier       BLOB    NOT NULL DEFAULT x''
) STRICT;

CREATE TABLE ct_certs (
	tbs_hash  TEXT    PRIMARY KEY,
	class     TEXT    NOT NULL,
	severity  INTEGER NOT NULL,
	spki      TEXT    NOT NULL,
	issuer    TEXT    NOT NULL,
	names     TEXT    NOT NULL,
	first_ms  INTEGER NOT NULL,
	last_ms   INTEGER NOT NULL,
	sightings INTEGER NOT NULL,
	finding   BLOB    NOT NULL
) STRICT;
CREATE INDEX ct_certs_rank ON ct_certs (severity DESC, first_ms DESC);
CREATE INDEX ct_certs_spki ON ct_certs (spki);

CREATE TABLE ct_sightings (
	log_id    TEXT    NOT NULL,
	idx       INTEGER NOT NULL,
	tbs_hash  TEXT    NOT NULL,
	log_name  TEXT    NOT NULL,
	precert   INTEGER NOT NULL,
	logged_ms INTEGER NOT NULL,
	seen_ms   INTEGER NOT NULL,
	PRIMARY KEY (log_id, idx)
) STRICT;
CREATE INDEX ct_sightings_cert ON ct_sightings (tbs_hash);

CREATE TABLE ct_alerts (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	tbs_hash       TEXT    NOT NULL,
	class          TEXT    NOT NULL,
	created_ms     INTEGER NOT NULL,
	payload        BLOB    NOT NULL,
	delivered_ms   INTEGER,
	attempts       INTEGER NOT NULL DEFAULT 0,
	next_ms        INTEGER NOT NULL,
	last_error     TEXT    NOT NULL DEFAULT '',
	owner          TEXT    NOT NULL DEFAULT '',
	lease_until_ms INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX ct_alerts_due ON ct_alerts (next_ms) WHERE delivered_ms IS NULL;
