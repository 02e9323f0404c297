package httpproxy

import (
	"net"

	"github.com/egress-proxy/egress/internal/tunnel"
	"golang.org/x/sys/unix"
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
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil
	}
	s := tunnel.NewSocket(fd, tc.LocalAddr(), tc.RemoteAddr())
	tc.Close() // the descriptor only: the socket is s's now
	return s
}
