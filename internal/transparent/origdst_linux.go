package transparent

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

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
	local := netip.AddrPort{}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = a.AddrPort()
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	sc, ok := c.(syscall.Conn) // a *net.TCPConn, or a tunnel.Socket
	if !ok {
		return local
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return local
	}
	var dst netip.AddrPort
	rc.Control(func(fd uintptr) {
		if local.Addr().Is4() {
			// struct sockaddr_in in the first 16 bytes of the answer.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
			if err == nil && binary.NativeEndian.Uint16(m.Multiaddr[0:2]) == unix.AF_INET {
				ip := netip.AddrFrom4([4]byte(m.Multiaddr[4:8]))
				dst = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(m.Multiaddr[2:4]))
			}
			return
		}
		// struct sockaddr_in6, the head of struct ip6_mtuinfo.
		mi, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, soOriginalDst)
		if err == nil && mi.Addr.Family == unix.AF_INET6 {
			var port [2]byte
			binary.NativeEndian.PutUint16(port[:], mi.Addr.Port)
			dst = netip.AddrPortFrom(netip.AddrFrom16(mi.Addr.Addr).Unmap(), binary.BigEndian.Uint16(port[:]))
		}
	})
	if dst.IsValid() {
		return dst
	}
	return local
}
