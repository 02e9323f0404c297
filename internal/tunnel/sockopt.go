package tunnel

import "time"

// Socket options that bound what one tunnel can hold in the kernel, set by
// Start on both connections (sockopt_linux.go, which also reads the kernel's
// byte counters for the idle watchdog); a connection that is not a socket (syscall.Conn) is left as
// it is.
//
// A tunnel whose peer stops reading fills, on the proxy's side, the send
// queue towards that peer and the receive queue from the other end (the copy
// stops reading it). Without bounds both grow to the kernel's autotuning
// maxima (tcp_wmem[2], tcp_rmem[2]: 4 MiB and 6 to 32 MiB), which is what 50
// stuck tunnels used to hold: ~14 MB each on the proxy's sockets alone.
const (
	// notsentLowat bounds the bytes written but not yet sent on a tunnel
	// socket (TCP_NOTSENT_LOWAT): the socket takes more only below it. Bytes
	// in flight (sent, not acknowledged) are not counted; towards a peer
	// whose window is closed they are none.
	notsentLowat = 128 << 10
	// rcvbufCap is the SO_RCVBUF of a tunnel socket (the kernel doubles it
	// for its bookkeeping): what the proxy holds from an end whose bytes it
	// cannot pass on. It also caps the window the proxy advertises, so one
	// tunnel's throughput from that end is at most about rcvbufCap per
	// round trip (40 MB/s at 25 ms).
	rcvbufCap = 1 << 20
)

// userTimeout is the TCP_USER_TIMEOUT of a tunnel socket with an idle
// timeout: bytes not acknowledged for this long (and, from Linux 5.11, a
// window held closed this long) abort the connection. Twice the idle timeout,
// so that a tunnel stuck both ways ends as idle first; this bound is for a
// peer that holds its window closed while the other direction still moves,
// and for the bytes the kernel keeps sending after the tunnel closed.
func userTimeout(idle time.Duration) time.Duration { return 2 * idle }
