package tunnel

import (
	"math"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// The socket options themselves and the kernel counters (see sockopt.go).

// ListenControl is the net.ListenConfig Control of a listener whose accepted
// connections carry tunnels: it sets SO_RCVBUF (rcvbufCap) on the listening
// socket, which every accepted socket inherits, so that Start need not set it
// on each (one system call per tunnel). A tunnel's client connection must
// come from such a listener for its receive queue to be bounded.
func ListenControl(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbufCap)
	}); err != nil {
		return err
	}
	return serr
}

// tune sets the socket options a tunnel's socket needs from the start (best
// effort: a failure leaves the kernel's defaults): SO_RCVBUF on a dialed
// socket (an accepted one has its listener's), and TCP_USER_TIMEOUT when
// userTimeoutAtStart.
func tune(c syscall.RawConn, dialed bool, idle time.Duration) {
	early := userTimeoutAtStart(idle)
	if !dialed && !early {
		return
	}
	switch r := c.(type) {
	case socketRaw: // a Socket's descriptor (under its mutex): no closure to allocate
		r.s.mu.Lock()
		if r.s.fd >= 0 {
			tuneFD(r.s.fd, dialed, early, idle)
		}
		r.s.mu.Unlock()
	default:
		control(c, func(fd int) { tuneFD(fd, dialed, early, idle) })
	}
}

func tuneFD(fd int, dialed, early bool, idle time.Duration) {
	if dialed {
		// Fixed, not autotuned: autotuning would grow it to tcp_rmem[2].
		rawsys.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbufCap)
	}
	if early {
		setUserTimeout(fd, idle)
	}
}

// tuneLate sets TCP_USER_TIMEOUT on c at the watchdog's first look when it
// was not set at the start.
func tuneLate(c syscall.RawConn, idle time.Duration) {
	if idle > 0 && !userTimeoutAtStart(idle) {
		control(c, func(fd int) { setUserTimeout(fd, idle) })
	}
}

func setUserTimeout(fd int, idle time.Duration) {
	rawsys.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(min(userTimeout(idle).Milliseconds(), math.MaxInt32)))
}

// tuneBulk sets TCP_NOTSENT_LOWAT on c, the socket a way that turned bulk
// writes to.
func tuneBulk(c syscall.RawConn) {
	control(c, func(fd int) {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notsentLowat)
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
