//go:build linux

// Command floor is a measuring stick, not a proxy: the least a Go TCP
// forwarder can cost per connection on this machine, in the two designs
// egress could have, so that egress's CPU per connection can be read
// against them and against HAProxy in the same run (bench/floor.sh,
// docs/performance.md "The floor of a Go proxy on this machine").
//
// It forwards every connection to one fixed loopback origin: no hello is
// parsed, nothing is decided or logged, nothing is limited.
//
//	-mode goroutines  Go's net package: one goroutine per connection that
//	                  reads the first bytes, dials, writes them and copies the
//	                  upload way; one more copies the download way (16 KiB
//	                  buffers, half-close passed on). egress's design.
//	-mode loop        no goroutine per connection: one epoll loop per P, each
//	                  with its own SO_REUSEPORT listening socket, accept4,
//	                  a non-blocking connect, read(2) and write(2) on bare
//	                  descriptors; the loop waits for its epoll set in Go's
//	                  poller. HAProxy's design.
//
// Linux only; loopback addresses only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:28443", "listen address (loopback)")
	origin := flag.String("origin", "127.0.0.1:24443", "where every connection goes (loopback)")
	mode := flag.String("mode", "goroutines", "goroutines | loop")
	flag.Parse()
	la, err := loopback(*listen)
	if err != nil {
		log.Fatal(err)
	}
	oa, err := loopback(*origin)
	if err != nil {
		log.Fatal(err)
	}
	switch *mode {
	case "goroutines":
		log.Fatal(serveGoroutines(la, oa))
	case "loop":
		log.Fatal(serveLoops(la, oa))
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

// loopback parses an IPv4 loopback address and port: the tool never dials
// or listens anywhere else.
func loopback(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, err
	}
	if !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return ap, fmt.Errorf("%s: loopback IPv4 only", s)
	}
	return ap, nil
}

// --- goroutines ---------------------------------------------------------

func serveGoroutines(la, oa netip.AddrPort) error {
	ln, err := net.Listen("tcp", la.String())
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go forward(c.(*net.TCPConn), oa)
	}
}

// forward is one connection: first bytes, dial, then both ways.
func forward(c *net.TCPConn, oa netip.AddrPort) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	u, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(oa))
	if err != nil {
		return
	}
	defer u.Close()
	if _, err := u.Write(buf[:n]); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyWay(c, u, make([]byte, 16<<10))
	}()
	copyWay(u, c, buf)
	<-done
}

// copyWay copies src to dst until EOF or an error, then half-closes dst.
// Plain Read and Write (no splice: the tunnels measured are short).
func copyWay(dst, src *net.TCPConn, buf []byte) {
	io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
	dst.CloseWrite()
}

// --- loop -----------------------------------------------------------------

func serveLoops(la, oa netip.AddrPort) error {
	n := runtime.GOMAXPROCS(0)
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		l, err := newLoop(la, oa)
		if err != nil {
			return err
		}
		go func() { errc <- l.run() }()
	}
	return <-errc
}

// conn is one forwarded connection: its two descriptors and what each way
// could not write yet. Only its loop touches it.
type conn struct {
	fd        [2]int // 0: the client, 1: the origin
	connected bool
	eof       [2]bool   // way 0 (client → origin) and way 1 saw EOF
	pending   [2][]byte // bytes of way i its destination did not take yet
	closed    bool
}

type loop struct {
	ep, ln int
	rc     syscall.RawConn // the epoll set in Go's poller
	origin unix.SockaddrInet4
	conns  map[int]*conn // by either descriptor
	buf    []byte        // the loop's one copy buffer
	evs    []unix.EpollEvent
}

func newLoop(la, oa netip.AddrPort) (*loop, error) {
	l := &loop{conns: map[int]*conn{}, buf: make([]byte, 16<<10), evs: make([]unix.EpollEvent, 256)}
	l.origin.Port, l.origin.Addr = int(oa.Port()), oa.Addr().As4()
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(l.ep, true); err != nil {
		return nil, err
	}
	if l.rc, err = os.NewFile(uintptr(l.ep), "epoll").SyscallConn(); err != nil {
		return nil, err
	}
	if l.ln, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, err
	}
	unix.SetsockoptInt(l.ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptInt(l.ln, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(l.ln, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		return nil, err
	}
	if err := unix.Listen(l.ln, 4096); err != nil {
		return nil, err
	}
	return l, unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.ln)})
}

func (l *loop) run() error {
	var n int
	var werr error
	poll := func(uintptr) bool {
		n, werr = unix.EpollWait(l.ep, l.evs, 0)
		return n > 0 || (werr != nil && werr != unix.EINTR)
	}
	for {
		if err := l.rc.Read(poll); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		for _, ev := range l.evs[:n] {
			fd := int(ev.Fd)
			if fd == l.ln {
				l.accept()
				continue
			}
			if c := l.conns[fd]; c != nil {
				l.event(c, fd, ev.Events)
			}
		}
	}
}

// accept takes every waiting connection and starts its connect.
func (l *loop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: the queue is empty
		}
		ofd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			unix.Close(cfd)
			continue
		}
		unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetsockoptInt(ofd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{fd: [2]int{cfd, ofd}}
		err = unix.Connect(ofd, &l.origin)
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(cfd)
			unix.Close(ofd)
			continue
		}
		c.connected = err == nil
		l.conns[cfd], l.conns[ofd] = c, c
		for _, fd := range c.fd {
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
			if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				l.close(c)
				break
			}
		}
	}
}

func (l *loop) event(c *conn, fd int, events uint32) {
	side := 0
	if fd == c.fd[1] {
		side = 1
	}
	if !c.connected {
		if side == 0 {
			return // the client's bytes wait until the origin answers the connect
		}
		if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			l.close(c)
			return
		}
		c.connected = true
		l.pump(c, 0, false)
		l.pump(c, 1, false)
		return
	}
	drain := events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.pump(c, side, drain) // side's bytes, to the other side
	}
	if events&unix.EPOLLOUT != 0 && len(c.pending[1-side]) > 0 {
		l.pump(c, 1-side, false) // the way that writes to side can go on
	}
}

// pump copies way w (source fd[w], destination fd[1-w]) until the source is
// empty or the destination full; drain: read to EOF even after short reads.
func (l *loop) pump(c *conn, w int, drain bool) {
	src, dst := c.fd[w], c.fd[1-w]
	if c.closed || c.eof[w] {
		return
	}
	if p := c.pending[w]; len(p) > 0 {
		k, err := unix.Write(dst, p)
		if k > 0 {
			c.pending[w] = p[k:]
		}
		if len(c.pending[w]) > 0 {
			if err != nil && err != unix.EAGAIN {
				l.close(c)
			}
			return // EPOLLOUT on dst brings it back
		}
		c.pending[w] = nil
	}
	for {
		n, err := unix.Read(src, l.buf)
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil || n == 0:
			c.eof[w] = true
			if c.eof[0] && c.eof[1] {
				l.close(c)
				return
			}
			unix.Shutdown(dst, unix.SHUT_WR)
			return
		}
		k, err := unix.Write(dst, l.buf[:n])
		if k < 0 {
			k = 0
		}
		if k < n {
			if err != nil && err != unix.EAGAIN {
				l.close(c)
				return
			}
			c.pending[w] = append([]byte(nil), l.buf[k:n]...)
			return
		}
		if n < len(l.buf) && !drain {
			return // empty for now: edge-triggered, the next bytes bring an event
		}
	}
}

func (l *loop) close(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	for _, fd := range c.fd {
		delete(l.conns, fd)
		unix.Close(fd)
	}
}
