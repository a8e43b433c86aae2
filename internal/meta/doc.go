// Package meta holds tests about the repository itself: every package is
// documented, and the public packages stay free of database drivers and
// server code. It has no code of its own.
package meta
