-- The Certificate Transparency monitor: each log's position (tree head,
-- next entry, compact range) under a lease that one instance holds at a
-- time; the certificates seen, by TBS hash, with their worst class; one
-- sighting per log entry; and the alerts to deliver by webhook.
CREATE TABLE ct_logs (
	log_id         text    PRIMARY KEY,
	owner          text    NOT NULL DEFAULT '',
	lease_until_ms bigint  NOT NULL DEFAULT 0,
	has_position   integer NOT NULL DEFAULT 0,
	tree_size      bigint  NOT NULL DEFAULT 0,
	root           bytea   NOT NULL DEFAULT '',
	head_ms        bigint  NOT NULL DEFAULT 0,
	next_index     bigint  NOT NULL DEFAULT 0,
	frontier       bytea   NOT NULL DEFAULT ''
);

CREATE TABLE ct_certs (
	tbs_hash  text    PRIMARY KEY,
	class     text    NOT NULL,
	severity  integer NOT NULL,
	spki      text    NOT NULL,
	issuer    text    NOT NULL,
	names     text    NOT NULL,
	first_ms  bigint  NOT NULL,
	last_ms   bigint  NOT NULL,
	sightings bigint  NOT NULL,
	finding   bytea   NOT NULL
);
CREATE INDEX ct_certs_rank ON ct_certs (severity DESC, first_ms DESC);
CREATE INDEX ct_certs_spki ON ct_certs (spki);

CREATE TABLE ct_sightings (
	log_id    text    NOT NULL,
	idx       bigint  NOT NULL,
	tbs_hash  text    NOT NULL,
	log_name  text    NOT NULL,
	precert   integer NOT NULL,
	logged_ms bigint  NOT NULL,
	seen_ms   bigint  NOT NULL,
	PRIMARY KEY (log_id, idx)
);
CREATE INDEX ct_sightings_cert ON ct_sightings (tbs_hash);

CREATE TABLE ct_alerts (
	id             bigserial PRIMARY KEY,
	tbs_hash       text    NOT NULL,
	class          text    NOT NULL,
	created_ms     bigint  NOT NULL,
	payload        bytea   NOT NULL,
	delivered_ms   bigint,
	attempts       integer NOT NULL DEFAULT 0,
	next_ms        bigint  NOT NULL,
	last_error     text    NOT NULL DEFAULT '',
	owner          text    NOT NULL DEFAULT '',
	lease_until_ms bigint  NOT NULL DEFAULT 0
);
CREATE INDEX ct_alerts_due ON ct_alerts (next_ms) WHERE delivered_ms IS NULL;
