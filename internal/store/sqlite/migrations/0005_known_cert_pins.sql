-- The certificate pins a report says the client expected
-- (rampart-known-cert-pins), space-separated: part of a group's content.
-- Groups stored before this column are left empty: their reports' pins
-- were never validated, and stay in the body as received.
ALTER TABLE report_groups ADD COLUMN known_cert_pins TEXT NOT NULL DEFAULT '';
