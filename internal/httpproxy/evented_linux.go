package httpproxy

import (
	"net"

	"github.com/egress-proxy/egress/internal/tunnel"
)

// eventedSocket takes a CONNECT's client connection out of Go's poller for
// the evented TLS flow (internal/tlsproxy ServeEvented, on the tunnel
// package's event loops): its descriptor duplicated as a tunnel.Socket, the
// connection closed (the socket stays open). nil (c untouched) when c is not
// a plain TCP connection (the TLS proxy listener's) or the loops cannot run.
func eventedSocket(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !tunnel.CanWatch() {
		return nil
	}
	s, err := tunnel.SocketOf(tc)
	if err != nil {
		return nil
	}
	return s
}
