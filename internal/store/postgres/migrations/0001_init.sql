-- Reports: the content shared by identical reports is stored once per
-- digest (report_groups); every delivery is one row of report_events, so
-- counts over any time range are counts of rows. Times are Unix
-- milliseconds, UTC, as in the SQLite schema, so that both backends run
-- the same report queries.
CREATE TABLE report_groups (
	id                 bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	digest             text    NOT NULL UNIQUE,
	format             text    NOT NULL,
	hostname           text    NOT NULL,
	port               integer NOT NULL,
	noted_hostname     text    NOT NULL,
	include_subdomains boolean NOT NULL,
	mode               text    NOT NULL,
	reason             text    NOT NULL,
	served_pin         text    NOT NULL,
	served_subject     text    NOT NULL,
	app_bundle_id      text    NOT NULL,
	app_version        text    NOT NULL,
	app_platform       text    NOT NULL,
	-- bytea: the body is kept byte for byte, even if it is not UTF-8.
	body               bytea   NOT NULL
);

CREATE INDEX report_groups_noted_hostname ON report_groups (noted_hostname);
CREATE INDEX report_groups_hostname ON report_groups (hostname);
CREATE INDEX report_groups_served_pin ON report_groups (served_pin);

CREATE TABLE report_events (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	group_id    bigint NOT NULL REFERENCES report_groups (id),
	received_ms bigint NOT NULL,
	source      text   NOT NULL,
	user_agent  text   NOT NULL,
	device      text   NOT NULL
);

-- Time-bounded scans (every dashboard query), and the per-group ones
-- (Groups with content filters, and the foreign key).
CREATE INDEX report_events_received ON report_events (received_ms);
CREATE INDEX report_events_group_received ON report_events (group_id, received_ms);

CREATE TABLE bundles (
	name         text   NOT NULL,
	version      bigint NOT NULL,
	key_id       text   NOT NULL,
	issued_ms    bigint NOT NULL,
	expires_ms   bigint NOT NULL,
	published_ms bigint NOT NULL,
	jws          text   NOT NULL,
	PRIMARY KEY (name, version)
);

CREATE INDEX bundles_published ON bundles (published_ms);
