// Package meta holds tests about the repository itself: every package is
// documented; the public packages stay free of database drivers and
// server code; the token validator and the caller package link nothing
// of the authorization server (no rate limiter, Prometheus or YAML); every
// refusal is written by internal/util/httpx; and no code decides anything by
// reading an error's text. It has no code of its own.
package meta
