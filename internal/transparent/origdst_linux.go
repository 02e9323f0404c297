package transparent

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6):
// the destination a connection had before a NAT REDIRECT/DNAT rule sent it
// here.
const soOriginalDst = 80

// originalDst returns where the client meant to connect: the address before
// an nftables/iptables REDIRECT, or, for a connection that was not NATed
// (TPROXY, or a client that dialed the listener itself), the listener's own
// address, which is then what it dialed.
func originalDst(c net.Conn) netip.AddrPort {
	if dst, ok := natDst(c); ok {
		return dst
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local := a.AddrPort()
		return netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	return netip.AddrPort{}
}

// natDst asks the kernel's connection tracking for c's destination before
// NAT (SO_ORIGINAL_DST for an IPv4 connection, IP6T_SO_ORIGINAL_DST for an
// IPv6 one; the family is the peer's, which is the socket's own).
func natDst(c net.Conn) (netip.AddrPort, bool) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	sc, ok := c.(syscall.Conn) // a *net.TCPConn, or a tunnel.Socket
	if !ok {
		return netip.AddrPort{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	is4 := ra.AddrPort().Addr().Unmap().Is4()
	// struct sockaddr_in (16 bytes) or struct sockaddr_in6 (28).
	var sa [28]byte
	var n uint32
	rc.Control(func(fd uintptr) {
		level := unix.SOL_IPV6
		if is4 {
			level = unix.SOL_IP
		}
		n, err = rawsys.Getsockopt(int(fd), level, soOriginalDst, unsafe.Pointer(&sa[0]), uint32(len(sa)))
	})
	if err != nil || n < 8 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(sa[2:4])
	switch family := binary.NativeEndian.Uint16(sa[0:2]); {
	case is4 && family == unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port), true
	case !is4 && family == unix.AF_INET6 && n >= 24:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}
