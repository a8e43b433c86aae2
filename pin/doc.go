// Package pin implements certificate and public-key pinning for TLS clients.
package pin
