package tunnel

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockopt reads an integer socket option of c.
func sockopt(t *testing.T, c *net.TCPConn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func rcvbuf(t *testing.T, c *net.TCPConn) int {
	return sockopt(t, c, unix.SOL_SOCKET, unix.SO_RCVBUF)
}

// pipeOpt reads an integer socket option of a tunnel's own socket (way 0:
// the client's, 1: the destination's) through whatever holds it now: its
// connection, or its bare descriptor once the tunnel is detached.
func pipeOpt(t *testing.T, p *Pipe, way, level, opt int) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var v int
	var gerr error
	if err := p.dirs[way].rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

var pipeSides = map[string]int{"client": 0, "server": 1}

// lowatUnset: TCP_NOTSENT_LOWAT as the kernel reports it when nobody set it
// (0 on a dialed socket, all ones on an accepted one on Linux 6.x: no bound
// either way).
func lowatUnset(v int) bool { return v == 0 || uint32(v) == math.MaxUint32 }

// TestListenerRcvbufInherited: a socket accepted from a listener made with
// ListenControl has the tunnel's SO_RCVBUF (the kernel doubles it) without a
// call of its own; one accepted from a plain listener does not.
func TestListenerRcvbufInherited(t *testing.T) {
	_, tuned := pair(t)
	defer tuned.Close()
	if got := rcvbuf(t, tuned); got != 2*rcvbufCap {
		t.Errorf("accepted socket's SO_RCVBUF = %d, want %d (inherited from the listener)", got, 2*rcvbufCap)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	plain, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := rcvbuf(t, plain.(*net.TCPConn)); got == 2*rcvbufCap {
		t.Errorf("plain listener's accepted socket also has SO_RCVBUF %d: the check above proves nothing", got)
	}
	// ListenControl works through net.ListenConfig as the service uses it.
	lc := net.ListenConfig{KeepAlive: -1, Control: ListenControl}
	ln2, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2.Close()
}

// exchange sends a short request through the tunnel and its answer back.
func exchange(t *testing.T, client, server net.Conn) {
	t.Helper()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	server.SetDeadline(time.Now().Add(10 * time.Second))
	req, resp := []byte("GET / HTTP/1.1\r\n\r\n"), bytes.Repeat([]byte("a"), 4000)
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(resp); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, make([]byte, len(resp))); err != nil {
		t.Fatal(err)
	}
}

// TestShortTunnelSockopts: with the default idle timeout, a short tunnel has
// only SO_RCVBUF (the client's from its listener, the server's set by New);
// TCP_NOTSENT_LOWAT comes when a way turns bulk and TCP_USER_TIMEOUT at the
// watchdog's first look, on both sockets.
func TestShortTunnelSockopts(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	const idle = 5 * time.Minute
	if userTimeoutAtStart(idle) {
		t.Fatalf("userTimeoutAtStart(%v): the default idle timeout should defer TCP_USER_TIMEOUT", idle)
	}
	p := Start(proxyClient, proxyServer, Options{Idle: idle})
	defer p.Close()
	exchange(t, client, server)
	for name, i := range pipeSides {
		if got := pipeOpt(t, p, i, unix.SOL_SOCKET, unix.SO_RCVBUF); got != 2*rcvbufCap {
			t.Errorf("%s side SO_RCVBUF = %d, want %d", name, got, 2*rcvbufCap)
		}
		if got := pipeOpt(t, p, i, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT); !lowatUnset(got) {
			t.Errorf("%s side TCP_NOTSENT_LOWAT = %d in the inline phase, want unset", name, got)
		}
		if got := pipeOpt(t, p, i, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != 0 {
			t.Errorf("%s side TCP_USER_TIMEOUT = %d before the first look, want unset", name, got)
		}
	}
	// The watchdog's first look (its timer would fire at idle / 4).
	p.checkIdle()
	for name, i := range pipeSides {
		if got, want := pipeOpt(t, p, i, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT), int(userTimeout(idle).Milliseconds()); got != want {
			t.Errorf("%s side TCP_USER_TIMEOUT = %d after the first look, want %d", name, got, want)
		}
	}
}

// TestShortIdleUserTimeoutAtStart: with an idle timeout whose 2 × is shorter
// than the kernel's own limits on a closed socket's bytes, TCP_USER_TIMEOUT
// is set when the tunnel starts, as a tunnel closed before its first look
// needs it.
func TestShortIdleUserTimeoutAtStart(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	const idle = time.Minute
	p := Start(proxyClient, proxyServer, Options{Idle: idle})
	defer p.Close()
	for name, i := range pipeSides {
		if got, want := pipeOpt(t, p, i, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT), int(userTimeout(idle).Milliseconds()); got != want {
			t.Errorf("%s side TCP_USER_TIMEOUT = %d at the start, want %d", name, got, want)
		}
	}
	// No idle timeout: never set.
	c2, pc2 := pair(t)
	ps2, s2 := pair(t)
	defer c2.Close()
	defer s2.Close()
	p2 := Start(pc2, ps2, Options{})
	defer p2.Close()
	exchange(t, c2, s2)
	if got := pipeOpt(t, p2, 0, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) + pipeOpt(t, p2, 1, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != 0 {
		t.Errorf("TCP_USER_TIMEOUT set without an idle timeout: %d", got)
	}
}

// TestBulkWaySetsNotsentLowat: a way that passes bulkAfter sets
// TCP_NOTSENT_LOWAT on the socket it writes to; the other way, still
// inline, leaves its socket alone.
func TestBulkWaySetsNotsentLowat(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	p := Start(proxyClient, proxyServer, Options{Idle: 5 * time.Minute})
	defer p.Close()
	exchange(t, client, server)
	const size = 4 * bulkAfter
	go client.Write(bytes.Repeat([]byte("u"), size))
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(server, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if got := pipeOpt(t, p, 1, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT); got != notsentLowat {
		t.Errorf("upload's destination TCP_NOTSENT_LOWAT = %d after %d bytes, want %d", got, size, notsentLowat)
	}
	if got := pipeOpt(t, p, 0, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT); !lowatUnset(got) {
		t.Errorf("download's destination TCP_NOTSENT_LOWAT = %d while that way is inline, want unset", got)
	}
}

// BenchmarkTuneAtStart: the socket options a short tunnel pays for when it
// starts, before (NOTSENT_LOWAT, SO_RCVBUF and USER_TIMEOUT on both sockets)
// and now (SO_RCVBUF on the dialed socket; the rest later or never), with
// the default idle timeout. Go's TCP_NODELAY on each is the same in both.
func BenchmarkTuneAtStart(b *testing.B) {
	a, c := pair(b)
	defer a.Close()
	defer c.Close()
	ra, rc := rawConn(a), rawConn(c)
	const idle = 5 * time.Minute
	b.Run("before", func(b *testing.B) {
		for range b.N {
			for _, r := range []syscall.RawConn{ra, rc} {
				control(r, func(fd int) {
					unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notsentLowat)
					unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbufCap)
					setUserTimeout(fd, idle)
				})
			}
		}
	})
	b.Run("now", func(b *testing.B) {
		for range b.N {
			tune(rc, false, idle)
			tune(ra, true, idle)
		}
	})
}
