package transparent

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/egress-proxy/egress/internal/rawsys"
	"github.com/egress-proxy/egress/internal/tunnel"
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
	if s, ok := c.(*tunnel.Socket); ok {
		local := s.LocalAddrPort()
		return netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
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
func natDst(c net.Conn) (dst netip.AddrPort, ok bool) {
	if s, isSock := c.(*tunnel.Socket); isSock {
		// Accepted on the parkers: no net.Addr, RawConn or closure on the heap.
		is4 := s.RemoteAddrPort().Addr().Unmap().Is4()
		s.Control(func(fd uintptr) { dst, ok = origDstFD(int(fd), is4) })
		return dst, ok
	}
	ra, isTCP := c.RemoteAddr().(*net.TCPAddr)
	sc, isConn := c.(syscall.Conn) // a *net.TCPConn
	if !isTCP || !isConn {
		return netip.AddrPort{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	is4 := ra.AddrPort().Addr().Unmap().Is4()
	var d netip.AddrPort // not dst: what this closure captures goes to the heap
	var got bool
	rc.Control(func(fd uintptr) { d, got = origDstFD(int(fd), is4) })
	return d, got
}

// origDstFD asks for fd's destination before NAT (is4: the socket's family).
func origDstFD(fd int, is4 bool) (netip.AddrPort, bool) {
	// struct sockaddr_in (16 bytes) or struct sockaddr_in6 (28).
	var sa [28]byte
	level := unix.SOL_IPV6
	if is4 {
		level = unix.SOL_IP
	}
	n, err := rawsys.Getsockopt(fd, level, soOriginalDst, unsafe.Pointer(&sa[0]), uint32(len(sa)))
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
