package tunnel

import (
	"math"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The socket options themselves and the kernel counters (see sockopt.go).

// tune sets the tunnel's socket options on c (best effort: a failure leaves
// the kernel's defaults).
func tune(c syscall.RawConn, idle time.Duration) {
	control(c, func(fd int) {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notsentLowat)
		// Fixed, not autotuned: autotuning would grow it to tcp_rmem[2].
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbufCap)
		if idle > 0 {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(min(userTimeout(idle).Milliseconds(), math.MaxInt32)))
		}
	})
}

// moved returns a number that grows whenever a byte moves on one of conns in
// the kernel: acknowledged by the peer, or received from it (TCP_INFO
// tcpi_bytes_acked + tcpi_bytes_received). It sees progress that the copy
// cannot report while it is blocked in a write. ok is false when a
// connection is not a TCP socket (or is closed).
func moved(conns ...syscall.RawConn) (sum uint64, ok bool) {
	for _, c := range conns {
		var got bool
		control(c, func(fd int) {
			if info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				sum += info.Bytes_acked + info.Bytes_received
				got = true
			}
		})
		if !got {
			return 0, false
		}
	}
	return sum, true
}

// abortIfQueued makes the close of c a reset when bytes wait in its send
// queue: a tunnel closed as idle had a peer that took no byte for the idle
// timeout, and without this the kernel would keep those bytes (and keep
// probing) long after the tunnel is gone.
func abortIfQueued(c syscall.RawConn) {
	control(c, func(fd int) {
		if n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ); err == nil && n > 0 {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
	})
}

// control runs fn on c's descriptor; nothing when c is nil (not a socket).
func control(c syscall.RawConn, fn func(fd int)) {
	if c != nil {
		c.Control(func(fd uintptr) { fn(int(fd)) })
	}
}
