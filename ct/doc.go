// Package ct watches Certificate Transparency logs for certificates of a
// pinned organisation and judges each by its key, against the pins.
//
// Browsers require publicly trusted certificates to be logged, so a
// certificate a compromised CA issues for a pinned domain is public within
// minutes. Name watchers see it among the organisation's renewals; a
// [Judge] tells them apart: [Expected] (a pin of the rule matches a key of
// the chain the log recorded), [Rollover] (the backup key in use, not
// announced), [Rogue] (no pin matches), [UnpinnedName] (a watched name
// without pins). An [Announcement] marks a planned certificate or key as
// expected before it is logged.
//
// # Logs
//
// [ParseLogList] reads the v3 log list (operators[].logs[] for RFC 6962
// logs, operators[].tiled_logs[] for static-ct-api logs). A [Monitor]
// follows each log and verifies as a monitor must: every tree head's
// signature with the log's key; consistency between successive heads
// (tile-built proofs for tiled logs, get-sth-consistency for RFC 6962
// logs); every entry against the signed tree before it is judged (tile
// hashes; for RFC 6962 logs a compact range tied to the head by a
// consistency proof). A log that signs contradicting heads is reported as
// misbehaving ([IsMisbehaviour]) and never skipped. Positions live in a
// [State], so a monitor resumes where it stopped.
//
// Certificates are read by a lenient walker ([ParseCertificate],
// [ParseTBS]); one that cannot be read but mentions a watched name is
// reported as [Unparsed] rather than dropped.
package ct
