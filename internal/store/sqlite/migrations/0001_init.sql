-- Reports: the content shared by identical reports is stored once per
-- digest (report_groups); every delivery is one row of report_events, so
-- counts over any time range are counts of rows. Times are Unix
-- milliseconds, UTC.
CREATE TABLE report_groups (
	id                 INTEGER PRIMARY KEY,
	digest             TEXT    NOT NULL UNIQUE,
	format             TEXT    NOT NULL,
	hostname           TEXT    NOT NULL,
	port               INTEGER NOT NULL,
	noted_hostname     TEXT    NOT NULL,
	include_subdomains INTEGER NOT NULL,
	mode               TEXT    NOT NULL,
	reason             TEXT    NOT NULL,
	served_pin         TEXT    NOT NULL,
	served_subject     TEXT    NOT NULL,
	app_bundle_id      TEXT    NOT NULL,
	app_version        TEXT    NOT NULL,
	app_platform       TEXT    NOT NULL,
	-- BLOB: the body is kept byte for byte, even if it is not UTF-8.
	body               BLOB    NOT NULL
);
CREATE INDEX report_groups_hostname ON report_groups (hostname);
CREATE INDEX report_groups_served_pin ON report_groups (served_pin);

CREATE TABLE report_events (
	id          INTEGER PRIMARY KEY,
	group_id    INTEGER NOT NULL REFERENCES report_groups (id),
	received_ms INTEGER NOT NULL,
	source      TEXT    NOT NULL,
	user_agent  TEXT    NOT NULL,
	device      TEXT    NOT NULL
) STRICT;

-- Time-bounded scans (every dashboard query), and the per-group ones
-- (Groups with content filters, and the foreign key).
CREATE INDEX report_events_received ON report_events (received_ms);
CREATE INDEX report_events_group_received ON report_events (group_id, received_ms);

CREATE TABLE bundles (
	name         TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	key_id       TEXT    NOT NULL,
	issued_ms    INTEGER NOT NULL,
	expires_ms   INTEGER NOT NULL,
	published_ms INTEGER NOT NULL,
	jws          TEXT    NOT NULL,
	PRIMARY KEY (name, version)
) STRICT, WITHOUT ROWID;

CREATE INDEX bundles_published ON bundles (published_ms);
