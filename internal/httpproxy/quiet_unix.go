//go:build unix

package httpproxy

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quietOpen reports whether c is open with nothing to read: a peek that
// does not wait. A kept upstream connection the origin has closed (EOF), or
// on which it sent bytes nobody asked for, is not reused; nor is a
// connection that is not a socket (nothing to peek at).
func quietOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		_ = n
		ok = (errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EWOULDBLOCK))
		return true // never wait in the poller
	})
	return err == nil && ok
}
