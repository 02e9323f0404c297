package tunnel

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket options that bound what one tunnel can hold in the kernel, and the
// kernel's byte counters the idle watchdog reads. Applied by Start to both
// connections; a connection that is not a socket (syscall.Conn) is left as
// it is.
//
// A tunnel whose peer stops reading fills, on the proxy's side, the send
// queue towards that peer and the receive queue from the other end (the copy
// stops reading it). Without bounds both grow to the kernel's autotuning
// maxima (tcp_wmem[2], tcp_rmem[2]: 4 MiB and 6 to 32 MiB), which is what 50
// stuck tunnels used to hold: ~14 MB each on the proxy's sockets alone.
const (
	// NotsentLowat bounds the bytes written but not yet sent on a tunnel
	// socket (TCP_NOTSENT_LOWAT): the socket takes more only below it. Bytes
	// in flight (sent, not acknowledged) are not counted; towards a peer
	// whose window is closed they are none.
	NotsentLowat = 128 << 10
	// RcvbufCap is the SO_RCVBUF of a tunnel socket (the kernel doubles it
	// for its bookkeeping): what the proxy holds from an end whose bytes it
	// cannot pass on. It also caps the window the proxy advertises, so one
	// tunnel's throughput from that end is at most about RcvbufCap per
	// round trip (40 MB/s at 25 ms).
	RcvbufCap = 1 << 20
)

// userTimeout is the TCP_USER_TIMEOUT of a tunnel socket with an idle
// timeout: bytes not acknowledged for this long (and, from Linux 5.11, a
// window held closed this long) abort the connection. Twice the idle timeout,
// so that a tunnel stuck both ways ends as idle first; this bound is for a
// peer that holds its window closed while the other direction still moves,
// and for the bytes the kernel keeps sending after the tunnel closed.
func userTimeout(idle time.Duration) time.Duration { return 2 * idle }

// tune sets the tunnel's socket options on c (best effort: a failure leaves
// the kernel's defaults).
func tune(c net.Conn, idle time.Duration) {
	control(c, func(fd int) {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, NotsentLowat)
		// Fixed, not autotuned: autotuning would grow it to tcp_rmem[2].
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, RcvbufCap)
		if idle > 0 {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout(idle).Milliseconds()))
		}
	})
}

// moved returns a number that grows whenever a byte moves on one of conns in
// the kernel: acknowledged by the peer, or received from it (TCP_INFO
// tcpi_bytes_acked + tcpi_bytes_received). It sees progress that the copy
// cannot report while it is blocked in a write. ok is false when a
// connection is not a TCP socket (or is closed).
func moved(conns ...net.Conn) (sum uint64, ok bool) {
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
func abortIfQueued(c net.Conn) {
	control(c, func(fd int) {
		if n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ); err == nil && n > 0 {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
	})
}

func control(c net.Conn, fn func(fd int)) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { fn(int(fd)) })
}
