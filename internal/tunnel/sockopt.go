package tunnel

import "time"

// Socket options that bound what one tunnel can hold in the kernel
// (sockopt_linux.go, which also reads the kernel's byte counters for the idle
// watchdog); a connection that is not a socket (syscall.Conn) is left as it
// is. Each is set once, when it starts to matter, so that a short tunnel pays
// one setsockopt of its own (SO_RCVBUF on the dialed socket) besides Go's
// TCP_NODELAY on each:
//
//   - SO_RCVBUF: on the client-facing listeners (ListenControl), which
//     accepted sockets inherit, and on the dialed socket when the tunnel
//     starts (New). It must be set before a socket has received much: set
//     later it no longer bounds what an autotuned buffer already took.
//   - TCP_NOTSENT_LOWAT: on the socket a way writes to when that way turns
//     bulk (run). Before, the way has written less than bulkAfter +
//     inlineSize bytes in all, so no more can be unsent.
//   - TCP_USER_TIMEOUT: at the idle watchdog's first look (idle / 4), or when
//     the tunnel starts if the kernel's own bound on a closed tunnel's
//     bytes is looser than the user timeout (userTimeoutAtStart).
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

// orphanLimit is more than the kernel keeps sending the bytes of a socket
// closed without TCP_USER_TIMEOUT (an orphan) with its default
// net.ipv4.tcp_orphan_retries (0, which means 8 while the backed-off
// retransmission timeout is below its 120 s maximum, and none once it would
// reach it): to a peer that acknowledges nothing, retransmissions until
// tcp_model_timeout(8, 200 ms) = 102 s have passed, checked when a
// retransmission timer fires (at most 120 s later); to a peer that answers
// window probes with its window closed (which TCP_USER_TIMEOUT covers only
// from Linux 5.11 anyway), probes backed off from the retransmission
// timeout rto until the first backoff k with rto × 2^k ≥ 120 s
// (net.ipv4.tcp_rto_max_ms), then one more 120 s interval: rto × (2^k − 1)
// + 120 s, under 240 + 120 s since rto × 2^(k−1) < 120 s
// (TestMeasureOrphanLifetime: 5 min 40 s on loopback, rto 208 ms). The
// kernel also resets orphans beyond net.ipv4.tcp_max_orphans or under memory
// pressure.
const orphanLimit = 6 * time.Minute

// userTimeoutAtStart says whether TCP_USER_TIMEOUT is set when the tunnel
// starts rather than at the watchdog's first look. A tunnel that closes
// before its first look leaves the bytes still queued on its sockets to the
// kernel's orphan limits (orphanLimit); that is within the documented bound
// (2 × idle) only when 2 × idle is at least orphanLimit, as with the default
// idle_timeout (5 min). A shorter idle timeout sets it at the start. A tunnel
// still open at its first look gets it then, well before the 2 × idle it
// enforces, and the kernel measures that time from when the bytes stopped
// being acknowledged (or the probes started), not from when it was set.
func userTimeoutAtStart(idle time.Duration) bool {
	return idle > 0 && userTimeout(idle) < orphanLimit
}
