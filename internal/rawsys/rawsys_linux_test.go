package rawsys

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenerFD returns a non-blocking duplicate of a loopback listener's
// descriptor (network: "tcp4" or "tcp6").
func listenerFD(t *testing.T, network, addr string) (int, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("%s loopback listener: %v", network, err)
	}
	t.Cleanup(func() { ln.Close() })
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	fd := -1
	rc.Control(func(s uintptr) { fd, err = Dup(int(s)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(fd) })
	return fd, ln.Addr().(*net.TCPAddr).AddrPort()
}

// TestConnectAcceptReadWrite: a connection made and carried with these
// calls only, over IPv4 and IPv6 loopback: ports and addresses in network
// order both ways, EAGAIN instead of waiting, EOF after shutdown.
func TestConnectAcceptReadWrite(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			lfd, laddr := listenerFD(t, tc.network, tc.addr)
			if _, _, err := Accept4(lfd); err != unix.EAGAIN {
				t.Fatalf("accept on an empty queue: %v, want EAGAIN", err)
			}
			cfd, err := Socket(laddr)
			if err != nil {
				t.Fatal(err)
			}
			defer Close(cfd)
			if err := Connect(cfd, laddr); err != nil && err != unix.EINPROGRESS {
				t.Fatalf("connect: %v", err)
			}
			var sfd int
			var peer netip.AddrPort
			deadline := time.Now().Add(5 * time.Second)
			for {
				sfd, peer, err = Accept4(lfd)
				if err != unix.EAGAIN || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if err != nil {
				t.Fatalf("accept: %v", err)
			}
			defer Close(sfd)
			if peer.Addr() != laddr.Addr() || peer.Port() == 0 {
				t.Fatalf("peer %v, want %v with a port", peer, laddr.Addr())
			}
			var sa unix.Sockaddr
			if sa, err = unix.Getsockname(cfd); err != nil {
				t.Fatal(err)
			}
			var port int
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				port = a.Port
			case *unix.SockaddrInet6:
				port = a.Port
			}
			if port != int(peer.Port()) {
				t.Fatalf("accepted peer port %d, the client's own is %d", peer.Port(), port)
			}
			if v, err := GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || v != 0 {
				t.Fatalf("SO_ERROR %d, %v", v, err)
			}
			if err := SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
				t.Fatal(err)
			}
			if v, _ := GetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v != 1 {
				t.Fatalf("TCP_NODELAY %d after setting it", v)
			}
			buf := make([]byte, 16)
			if _, err := Read(sfd, buf); err != unix.EAGAIN {
				t.Fatalf("read with nothing there: %v, want EAGAIN", err)
			}
			if n, err := Write(cfd, []byte("hello")); n != 5 || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			got := readSome(t, sfd, buf)
			if got != "hello" {
				t.Fatalf("read %q", got)
			}
			if err := Shutdown(cfd, unix.SHUT_WR); err != nil {
				t.Fatal(err)
			}
			if got := readSome(t, sfd, buf); got != "" {
				t.Fatalf("read %q after the peer's shutdown, want EOF", got)
			}
		})
	}
}

// readSome reads once something (or EOF) is there, within 5 s.
func readSome(t *testing.T, fd int, buf []byte) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := Read(fd, buf)
		if err == nil {
			return string(buf[:n])
		}
		if err != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("read: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEpollPoll: ready events without waiting, none when nothing is ready;
// EpollCtl's errors as the kernel gives them.
func TestEpollPoll(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(epfd)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer Close(p[0])
	defer Close(p[1])
	if err := EpollCtl(epfd, unix.EPOLL_CTL_ADD, p[0], &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7}); err != nil {
		t.Fatal(err)
	}
	if err := EpollCtl(epfd, unix.EPOLL_CTL_ADD, p[0], &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7}); err != unix.EEXIST {
		t.Fatalf("added twice: %v", err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := EpollPoll(epfd, events); n != 0 || err != nil {
		t.Fatalf("nothing ready: %d, %v", n, err)
	}
	Write(p[1], []byte{1})
	if n, err := EpollPoll(epfd, events); n != 1 || err != nil || events[0].Fd != 7 {
		t.Fatalf("one ready: %d, %v, %+v", n, err, events[0])
	}
	if n, _ := EpollPoll(epfd, nil); n != 0 {
		t.Fatal("no room, yet events")
	}
	if err := EpollCtl(epfd, unix.EPOLL_CTL_DEL, p[0], nil); err != nil {
		t.Fatal(err)
	}
	if n, err := EpollPoll(epfd, events); n != 0 || err != nil {
		t.Fatalf("removed, yet ready: %d, %v", n, err)
	}
	if err := EpollCtl(epfd, unix.EPOLL_CTL_DEL, p[0], nil); err != unix.ENOENT {
		t.Fatalf("removed twice: %v", err)
	}
	if err := EpollCtl(epfd, unix.EPOLL_CTL_ADD, -1, &unix.EpollEvent{}); err != unix.EBADF {
		t.Fatalf("bad descriptor: %v", err)
	}
}

// TestErrors: a bad descriptor is an error, not a crash or a count.
func TestErrors(t *testing.T) {
	if n, err := Read(-1, make([]byte, 4)); n != 0 || err != unix.EBADF {
		t.Fatalf("read: %d, %v", n, err)
	}
	if n, err := Write(-1, []byte("x")); n != 0 || err != unix.EBADF {
		t.Fatalf("write: %d, %v", n, err)
	}
	if _, _, err := Accept4(-1); err != unix.EBADF {
		t.Fatalf("accept: %v", err)
	}
	if _, err := Dup(-1); err != unix.EBADF {
		t.Fatalf("dup: %v", err)
	}
	if err := Close(-1); err != unix.EBADF {
		t.Fatalf("close: %v", err)
	}
}
