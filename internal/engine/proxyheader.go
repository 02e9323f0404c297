package engine

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// ErrProxyHeader: a listener with proxy_protocol = true got no valid PROXY
// v1/v2 header in time.
var ErrProxyHeader = errors.New("missing or invalid PROXY protocol header")

// ReadProxyHeader reads a PROXY protocol v1 or v2 header from br (which reads
// conn) within timeout and returns the client address it claims. A v2 LOCAL
// header (a load balancer's health check) yields the real peer address.
// Bytes after the header stay in br.
func ReadProxyHeader(conn net.Conn, br *bufio.Reader, timeout time.Duration) (netip.AddrPort, error) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	h, err := proxyproto.Read(br)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
	}
	if h.Command.IsLocal() {
		return PeerAddr(conn), nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: not a TCP source address", ErrProxyHeader)
	}
	ap := src.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// PeerAddr is the connection's remote address.
func PeerAddr(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap
}
