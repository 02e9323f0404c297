package tunnel

import (
	"net"
	"os"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// Relaying: a short tunnel copied by its parker, with no goroutine of its
// own. A tunnel made of two *net.TCPConn starts detached (startDetachedLocked):
// its sockets are kept as bare descriptors, registered edge-triggered in its
// parker's epoll set, and the parker copies each way (relayLocked) with
// read(2) and write(2) through the parker's one buffer, as long as
//
//   - each write goes through whole: a destination that does not take all
//     of it (a peer slower than its sender) gets the rest as the way's
//     pending bytes, and the way goes back to a goroutine of its own, which
//     makes the connections again (attach), writes them and blocks in its
//     writes as any copy does;
//   - the way stays short: past bulkAfter bytes it goes back to a goroutine
//     too, which copies with splice(2) from then on.
//
// This is HAProxy's model for the part of a tunnel's life that most
// tunnels never leave (a TLS handshake, a request, an answer): no goroutine
// is made, parked or woken per tunnel, and no event waits in Go's poller,
// only in the parker's set. Everything else about a tunnel holds as for a
// parked one: the idle watchdog, Close, the byte counts and the half-close
// (a way's EOF is passed on with shutdown(2); the second EOF closes both
// sockets). A tunnel parked later in its life is detached and relayed the
// same way (detachLocked).
//
// Ownership: the buffer is the parker's, used only on its goroutine; the
// descriptors are the tunnel's (Pipe.raw), read, written and closed only
// under Pipe.mu, so Close (another goroutine) never closes a descriptor
// the parker is using.

// startDetachedLocked starts a new tunnel detached, both ways relayed by its
// parker (p.mu held); false (nothing changed) when the tunnel cannot be:
// parking is off, a connection is not a *net.TCPConn, or a system call
// failed. Both ways are then copied by goroutines as before.
func startDetachedLocked(p *Pipe) bool {
	if p.opt.ParkAfter <= 0 || p.dirs[0].rc == nil || p.dirs[1].rc == nil {
		return false
	}
	if cs, ok := p.client.(*Socket); ok {
		if ss, ok := p.server.(*Socket); ok {
			return adoptLocked(p, cs, ss)
		}
	}
	client, ok1 := p.client.(*net.TCPConn)
	server, ok2 := p.server.(*net.TCPConn)
	if !ok1 || !ok2 {
		return false
	}
	k, err := parkerOf(p)
	if err != nil {
		return false
	}
	var dup [2]rawSock
	for i := range dup {
		dup[i].fd = -1
		fd, err := dupFD(p.dirs[i].rc) // dirs[i].src: 0 the client, 1 the server
		if err != nil {
			dropRaw(&dup)
			return false
		}
		dup[i].fd = int32(fd)
	}
	// A socket with bytes already waiting (the destination's first answer
	// may be here) is reported at once: edge-triggered registration of a
	// ready socket queues an event.
	for i := range dup {
		if err := k.ctl(&dup[i], unix.EPOLL_CTL_ADD, uint32(p.parkID), i); err != nil {
			dropRaw(&dup) // closing the last descriptor of a socket takes it out of the set
			return false
		}
	}
	p.raw = dup
	p.detached = true
	for i := range p.dirs {
		p.dirs[i].parked = true
	}
	p.setParkedLocked(true)
	client.Close() // the descriptor only: the socket is still p.raw[0]'s
	server.Close()
	p.client, p.server = nil, nil
	for i := range p.dirs {
		d := &p.dirs[i]
		d.src, d.dst, d.rc = nil, nil, &p.raw[i]
	}
	return true
}

// adoptLocked starts a tunnel of two Sockets (a flow that ran on the
// parkers from its accept) relayed, with their own descriptors: nothing to
// duplicate or close (p.mu held). It returns true: if the descriptors could
// not be had or registered, the tunnel is closed and its result delivered.
func adoptLocked(p *Pipe, cs, ss *Socket) bool {
	var sets [2]*parker
	cfd, cset := cs.take()
	sfd, sset := ss.take()
	p.raw, sets = [2]rawSock{{int32(cfd)}, {int32(sfd)}}, [2]*parker{cset, sset}
	p.detached = true
	p.client, p.server = nil, nil
	for i := range p.dirs {
		d := &p.dirs[i]
		d.src, d.dst, d.rc = nil, nil, &p.raw[i]
	}
	p.setParkedLocked(true)
	// Sockets a stopped Watcher left in its parker's set (the evented TLS
	// flow's): the tunnel joins that parker and changes their registration
	// (one EPOLL_CTL_MOD each, where a Remove and an ADD would be two).
	if p.parkID == 0 && sets[0] != nil && sets[0] == sets[1] {
		joinLocked(p, sets[0])
	}
	k, err := parkerOf(p)
	for i := range p.dirs {
		if err != nil {
			break
		}
		if p.raw[i].fd < 0 {
			err = net.ErrClosed
			break
		}
		op := enterOp(sets[i], k, int(p.raw[i].fd))
		if err = k.ctl(&p.raw[i], op, uint32(p.parkID), i); err == nil {
			p.dirs[i].parked = true
		}
	}
	if err != nil {
		p.closeConnsLocked(err)
		if p.finishLocked() {
			go p.deliver() // not under p.mu, nor on the caller's goroutine
		}
	}
	return true
}

// relayLocked copies what d's source has to its destination, on the parker's
// goroutine with its buffer (p.mu held; p detached, no way running, d
// parked). drain: the event said the source was closed or failed, so read it
// to its end even after a short read. True: the tunnel finished, and the
// caller must call p.deliver once it released p.mu.
func (p *Pipe) relayLocked(d *direction, buf *[inlineSize]byte, drain bool) bool {
	src, dst := int(p.raw[d.index].fd), int(p.raw[1-d.index].fd)
	for {
		n, err := readFD(src, buf[:])
		switch {
		case err == unix.EAGAIN:
			return false // edge-triggered: the next byte brings a new event
		case err != nil:
			return p.relayFailLocked(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)})
		case n == 0:
			return p.relayEOFLocked(d)
		}
		w, err := writeFD(dst, buf[:n])
		p.moved(d, int64(w), time.Now().UnixNano())
		if err != nil && err != unix.EAGAIN {
			return p.relayFailLocked(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)})
		}
		if w < n {
			// The destination's buffer is full: a goroutine takes the rest
			// and waits for it to drain. One copy per way at most, freed by
			// that write.
			d.pending = append([]byte(nil), buf[w:n]...)
			p.toGoroutineLocked(d)
			return false
		}
		if d.n.Load() >= bulkAfter {
			p.toGoroutineLocked(d) // bulk: splice from now on
			return false
		}
		if n < len(buf) && !drain {
			return false // the source is empty: its next bytes bring a new event
		}
	}
}

// toGoroutineLocked gives d back to a goroutine of its own, which makes the
// tunnel's connections again before it copies (p.mu held).
func (p *Pipe) toGoroutineLocked(d *direction) {
	unparkLocked(p, d)
	p.startLocked(d)
}

// relayEOFLocked ends d after its source's EOF: passed on as a half-close
// while the other way is open, or both sockets closed when it is the second
// EOF. True: deliver.
func (p *Pipe) relayEOFLocked(d *direction) bool {
	d.done = true
	if o := p.other(d); !o.done {
		unparkLocked(p, d)
		rawsys.Shutdown(int(p.raw[1-d.index].fd), unix.SHUT_WR)
		return false
	}
	// The close takes the descriptors out of the set: no DEL first.
	d.parked = false
	p.closeConnsLocked(nil)
	return p.finishLocked()
}

// relayFailLocked closes the tunnel after an error of the relay. True:
// deliver.
func (p *Pipe) relayFailLocked(err error) bool {
	p.closeConnsLocked(err)
	if p.running == 0 {
		return p.finishLocked()
	}
	return false
}

func readFD(fd int, b []byte) (int, error) {
	return rawsys.Read(fd, b)
}

// writeFD writes b to a non-blocking socket until it is written or the
// socket takes no more (EAGAIN, with the count written).
func writeFD(fd int, b []byte) (int, error) {
	w := 0
	for w < len(b) {
		n, err := rawsys.Write(fd, b[w:])
		if n > 0 {
			w += n
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return w, err
		}
		if n <= 0 {
			return w, unix.EAGAIN
		}
	}
	return w, nil
}
