package httpx

import "net/netip"

// IsLoopbackHost reports whether h, a URL's host name (without brackets),
// is localhost or a loopback address, IPv4-mapped ones included: where
// plain http may go. A name such as 127.example.com is neither, whatever
// it resolves to.
func IsLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}
