package tunnel

import (
	"net"
	"os"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// Detaching: a tunnel whose every open way is parked holds no goroutine and
// no buffer, and needs its two connections only to make them run again. A
// net.TCPConn is about 300 bytes of heap (its netFD, two addresses and their
// sockaddrs) plus a runtime poll descriptor off the heap; so a tunnel parked
// whole keeps a duplicate of each socket's descriptor (F_DUPFD_CLOEXEC) in
// Pipe.raw instead, waits on those in the parker's epoll set, and closes the
// two connections. The sockets stay open (each is still referred to by its
// duplicate): closing a descriptor sends nothing. When a way wakes, its
// copy's goroutine makes both connections again from the descriptors
// (net.FileConn; Pipe.attach) and closes the descriptors.
//
// Ownership: the descriptors in Pipe.raw belong to the tunnel while
// Pipe.detached; they are made, moved to the new connections (attach) or
// closed (closeRawLocked) under Pipe.mu, and each rawSock.fd is set to -1 as
// it is given up, so no descriptor number is ever closed twice (the number
// may already be another socket's). A wake costs each socket a dup, three
// system calls to learn the socket's type and addresses, a registration
// with Go's poller, TCP_NODELAY and, since FileConn turns keep-alives on,
// turning them off again: about 25 system calls per tunnel that wakes,
// which a tunnel quiet for ParkAfter pays once.

// redetachAfter: a tunnel that parks again less than this after a wake of
// its detached sockets keeps its connections. A detach and the wake after
// it cost about 30 system calls, a park and a wake with the connections
// kept a few: a peer that sends a byte every few hundred milliseconds
// would otherwise make the proxy pay the former each time. The idle
// watchdog detaches such a tunnel at its next look (Idle / 4) if it is
// still parked. A variable for the tests.
var redetachAfter = 2 * time.Second

// detachLocked gives the connections of a tunnel whose every open way is
// parked back, keeping the sockets as descriptors (p.mu held). Only when
// both are *net.TCPConn (a TLS client connection keeps its state in
// user space), and, unless force, not soon after a wake (redetachAfter); on
// any failure it leaves the tunnel as it was.
func detachLocked(p *Pipe, force bool) {
	if p.detached || p.closed {
		return
	}
	if !force && p.attachedAt != 0 && time.Duration(time.Now().UnixNano()-p.attachedAt) < redetachAfter {
		return
	}
	client, ok1 := p.client.(*net.TCPConn)
	server, ok2 := p.server.(*net.TCPConn)
	if !ok1 || !ok2 || p.dirs[0].rc == nil || p.dirs[1].rc == nil {
		return
	}
	k := parkers.all[p.parkID>>32] // every open way is parked: p has its parker
	var dup [2]rawSock
	for i := range dup {
		dup[i].fd = -1
		fd, err := dupFD(p.dirs[i].rc) // dirs[i].src: 0 the client, 1 the server
		if err != nil {
			dropRaw(&dup)
			return
		}
		dup[i].fd = int32(fd)
	}
	// The parked ways wait on the duplicates from now on: registered
	// before the originals leave the set, so no event is lost (an event
	// from both only wakes the way once: unpark checks it is parked).
	for i := range p.dirs {
		if !p.dirs[i].parked {
			continue
		}
		if err := k.ctl(&dup[i], unix.EPOLL_CTL_ADD, uint32(p.parkID), i); err != nil {
			for j := 0; j < i; j++ {
				if p.dirs[j].parked {
					k.ctl(&dup[j], unix.EPOLL_CTL_DEL, uint32(p.parkID), j)
				}
			}
			dropRaw(&dup)
			return
		}
	}
	for i := range p.dirs {
		if p.dirs[i].parked {
			// A registration lives as long as its descriptor's socket, not
			// its descriptor: the original's must go before it is closed.
			k.ctl(p.dirs[i].rc, unix.EPOLL_CTL_DEL, uint32(p.parkID), i)
		}
	}
	p.raw = dup
	p.detached = true
	client.Close() // the descriptor only: the socket is still p.raw[0]'s
	server.Close()
	p.client, p.server = nil, nil
	for i := range p.dirs {
		d := &p.dirs[i]
		d.src, d.dst, d.rc = nil, nil, &p.raw[i]
	}
}

// attachLocked makes the tunnel's connections again from its descriptors
// (p.mu held), on the goroutine of a way that woke: a way still parked waits
// on its new connection. On an error the descriptors are closed (the tunnel
// must be closed: closeConnsLocked).
func attachLocked(p *Pipe) error {
	k := parkers.all[p.parkID>>32] // a detached tunnel has its parker
	for i := range p.dirs {
		if d := &p.dirs[i]; d.parked {
			k.ctl(d.rc, unix.EPOLL_CTL_DEL, uint32(p.parkID), i)
		}
	}
	client, err := fileConn(&p.raw[0])
	if err != nil {
		closeRawLocked(p)
		return err
	}
	server, err := fileConn(&p.raw[1])
	if err != nil {
		client.Close() // the last descriptor of the client's socket
		closeRawLocked(p)
		return err
	}
	p.detached = false
	p.attachedAt = time.Now().UnixNano()
	p.client, p.server = client, server
	crc, src := rawConn(client), rawConn(server)
	p.dirs[0].src, p.dirs[0].dst, p.dirs[0].rc = client, server, crc
	p.dirs[1].src, p.dirs[1].dst, p.dirs[1].rc = server, client, src
	for i := range p.dirs {
		d := &p.dirs[i]
		if !d.parked {
			continue
		}
		if err := k.ctl(d.rc, unix.EPOLL_CTL_ADD, uint32(p.parkID), i); err != nil {
			// Cannot wait for it here: it runs (and parks again, or copies).
			d.parked = false
			p.startLocked(d)
		}
	}
	return nil
}

// fileConn makes a connection of s's socket, and gives s's descriptor up
// (closed: the connection has a duplicate of its own).
func fileConn(s *rawSock) (*net.TCPConn, error) {
	if s.fd < 0 {
		return nil, syscall.EBADF
	}
	f := os.NewFile(uintptr(s.fd), "tunnel")
	s.fd = -1 // f's now, and closed with it
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, syscall.EPROTOTYPE
	}
	// FileConn turns keep-alives on; tunnel sockets are made without them.
	tc.SetKeepAlive(false)
	return tc, nil
}

// closeRawLocked closes the descriptors a detached tunnel still holds
// (p.mu held), each once.
func closeRawLocked(p *Pipe) {
	dropRaw(&p.raw)
}

func dropRaw(r *[2]rawSock) {
	for i := range r {
		if fd := r[i].fd; fd >= 0 {
			r[i].fd = -1
			rawsys.Close(int(fd))
		}
	}
}

// dupOf returns a duplicate of c's descriptor (dupFD), for a connection or
// listener about to leave Go's poller.
func dupOf(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	return dupFD(rc)
}

// dupFD returns a duplicate of rc's descriptor (close-on-exec). Not
// (*TCPConn).File, which would register the duplicate with Go's poller.
func dupFD(rc syscall.RawConn) (int, error) {
	var (
		nfd  int
		derr error
	)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = rawsys.Dup(int(fd))
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}
