//go:build !linux

package transparent

import (
	"net"
	"net/netip"
)

// originalDst is the listener's own address where NAT's original
// destination cannot be asked for.
func originalDst(c net.Conn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
