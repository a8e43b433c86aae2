package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr returns the address of the client that sent r. It is the
// peer's address unless the peer is in trusted (the networks of your own
// proxies and load balancers): then X-Forwarded-For is walked from the
// right, past every trusted address, and the first untrusted one is the
// client. The leftmost value, which the client itself can write, is never
// believed unless every hop after it is trusted.
//
// The zero Addr is returned when the peer address cannot be parsed (a
// Unix socket, say).
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap().WithZone("")
	if !contains(trusted, addr) {
		return addr
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := hops[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				// A trusted proxy never writes this; whoever did is
				// not trusted, and the last good hop is the client.
				return addr
			}
			addr = a.Unmap().WithZone("")
			if !contains(trusted, addr) {
				return addr
			}
		}
	}
	return addr
}

func contains(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// AddrKey returns a rate-limit key for a client address: an IPv4 address
// as is, an IPv6 address by its /64, since one subscriber usually holds a
// whole /64 and could otherwise rotate through 2^64 keys.
func AddrKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
