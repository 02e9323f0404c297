package tunnel

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// The parkers: one epoll set and one goroutine each, one per P
// (GOMAXPROCS), shared by every tunnel of the process; a tunnel belongs to
// one for its life (Pipe.parkID names it). A parker waits for its set in
// Go's own poller (the set's descriptor is non-blocking and registered
// there), so waiting costs no thread of its own.
//
// A parker serves two kinds of ways:
//
//   - A parked way of a tunnel that keeps its connections: its copy had
//     nothing to read for ParkAfter, and its source is registered
//     level-triggered and one-shot for input. The first readable event
//     (data, EOF or error) starts that way's copy on a goroutine again.
//     Each way parks on its own, so a way whose copy is blocked in a write
//     (its peer stopped reading) never stops the other. Go's own poller
//     keeps its registration of the same sockets; an epoll set may hold a
//     socket that another one holds too.
//   - A way of a detached tunnel (its sockets held as bare descriptors,
//     detach_linux.go): registered edge-triggered, and copied by the parker
//     itself (relay_linux.go) as long as each write goes through whole and
//     the way stays short; a way that meets a slow peer or turns bulk gets
//     its goroutine and connections back.
//
// The idle timeout is the tunnel's watchdog (tunnel.go), parked or not.

type parker struct {
	epfd  int
	index uint32 // in parkers.all
	// rc is the epoll set's descriptor in Go's poller (nil: the parker
	// waits in a blocking epoll_wait instead); file keeps it open.
	file *os.File
	rc   syscall.RawConn

	mu    sync.Mutex
	next  uint32
	table map[uint32]waiter // tunnels with a parked way (by the low half of Pipe.parkID), and Watchers

	// again: a waiter served in this round left work behind and wants the
	// set polled again at once (only the parker's goroutine uses it).
	again bool

	// buf is the parker's copy buffer (relayLocked): only the parker's
	// goroutine uses it, one relay at a time.
	buf [inlineSize]byte
}

var parkers struct {
	once sync.Once
	err  error
	all  []*parker
	rr   atomic.Uint32 // the parker of the next tunnel, round robin
}

func initParkers() error {
	parkers.once.Do(func() {
		n := min(max(runtime.GOMAXPROCS(0), 1), 64)
		for i := 0; i < n; i++ {
			k, err := newParker()
			if err != nil {
				parkers.err = err
				return
			}
			k.index = uint32(i)
			parkers.all = append(parkers.all, k)
		}
		for _, k := range parkers.all {
			go k.loop()
		}
	})
	return parkers.err
}

func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	k := &parker{epfd: epfd, table: map[uint32]waiter{}}
	// In Go's poller when it can be (an epoll set is pollable): the parker
	// then parks like any goroutine instead of holding a thread in
	// epoll_wait, which the runtime would have to hand its P away from.
	if unix.SetNonblock(epfd, true) == nil {
		f := os.NewFile(uintptr(epfd), "tunnel-parker")
		if rc, err := f.SyscallConn(); err == nil {
			k.file, k.rc = f, rc
		}
	}
	return k, nil
}

func canPark(conns ...net.Conn) bool {
	for _, c := range conns {
		if _, ok := c.(syscall.Conn); !ok {
			return false
		}
	}
	return initParkers() == nil
}

// parkerOf returns p's parker, giving p one (and an id in its table) on the
// first call (p.mu held).
func parkerOf(p *Pipe) (*parker, error) {
	if p.parkID != 0 {
		return parkers.all[p.parkID>>32], nil
	}
	if err := initParkers(); err != nil {
		return nil, err
	}
	_, k := nextParker()
	joinLocked(p, k)
	return k, nil
}

// joinLocked gives p (which has none) the parker k and an id in its table
// (p.mu held).
func joinLocked(p *Pipe, k *parker) {
	p.parkID = uint64(k.index)<<32 | uint64(k.add(p))
}

// nextParker picks the parker of a new tunnel or Watcher, round robin.
func nextParker() (uint32, *parker) {
	i := parkers.rr.Add(1) % uint32(len(parkers.all))
	return i, parkers.all[i]
}

// add enters w in k's table under a new id.
func (k *parker) add(w waiter) uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.next++
	for k.table[k.next] != nil || k.next == 0 {
		k.next++
	}
	k.table[k.next] = w
	return k.next
}

// remove takes w (entered under id) out of k's table.
func (k *parker) remove(id uint32, w waiter) {
	k.mu.Lock()
	if k.table[id] == w {
		delete(k.table, id)
	}
	k.mu.Unlock()
}

// waiter is what a parker's table holds: a tunnel (its parked or relayed
// ways) or a Watcher. event runs on the parker's goroutine and must not
// block.
type waiter interface {
	event(k *parker, way int, events uint32)
}

// parkLocked registers d's source in the epoll set (p.mu held); the parker
// calls p.unpark(d's index) when it is readable.
func parkLocked(p *Pipe, d *direction) error {
	k, err := parkerOf(p)
	if err != nil {
		return err
	}
	err = k.ctl(d.rc, unix.EPOLL_CTL_ADD, uint32(p.parkID), int(d.index))
	if err == unix.EEXIST {
		// Still in the set, disabled by its one-shot: arm it again.
		err = k.ctl(d.rc, unix.EPOLL_CTL_MOD, uint32(p.parkID), int(d.index))
	}
	if err != nil {
		return err
	}
	d.parked = true
	return nil
}

// unparkLocked takes d's source out of the epoll set (p.mu held).
func unparkLocked(p *Pipe, d *direction) {
	if !d.parked {
		return
	}
	d.parked = false
	parkers.all[p.parkID>>32].ctl(d.rc, unix.EPOLL_CTL_DEL, uint32(p.parkID), int(d.index)) // a closed socket left the set by itself
}

// forget removes a finished tunnel from its parker's table (p.mu held).
func forget(p *Pipe) {
	if p.parkID == 0 {
		return
	}
	parkers.all[p.parkID>>32].remove(uint32(p.parkID), p)
}

// ctl registers (op) rc's socket in k's set for way of tunnel id: a
// connection's one-shot and level-triggered (the event starts a goroutine,
// which re-arms it by parking again), a bare descriptor's edge-triggered and
// lasting (the parker copies that way itself, relay_linux.go).
func (k *parker) ctl(rc syscall.RawConn, op int, id uint32, way int) error {
	if rc == nil {
		return syscall.EINVAL
	}
	if r, raw := rc.(*rawSock); raw {
		// The relay's bare descriptor (used under the tunnel's mutex, as
		// Control would): no closure to allocate.
		if r.fd < 0 {
			return syscall.EBADF
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(id), Pad: int32(way)}
		return rawsys.EpollCtl(k.epfd, op, int(r.fd), &ev)
	}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id), Pad: int32(way)}
		cerr = rawsys.EpollCtl(k.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// loop is the parker's goroutine: it waits for its set (in Go's poller, or
// in epoll_wait when that could not be had) and serves every event.
//
// In Go's poller the events are served inside the poll callback, which then
// asks to wait (false) without polling again: the runtime resets the
// set's readiness only when a read starts, so an event that came while
// these were served has marked it ready and the wait returns at once. That
// is one epoll_wait per wake-up instead of two (the second one empty). A
// full batch, or a waiter that left work behind (k.again: an Acceptor that
// stopped at its batch bound on a level-triggered socket), polls again at
// once.
func (k *parker) loop() {
	events := make([]unix.EpollEvent, 256)
	var werr error
	poll := func(uintptr) bool {
		for {
			var n int
			n, werr = rawsys.EpollPoll(k.epfd, events)
			if werr != nil {
				return true
			}
			if n == 0 {
				return false
			}
			k.serve(events[:n])
			if n < len(events) && !k.again {
				return false
			}
		}
	}
	for {
		if k.rc != nil {
			if err := k.rc.Read(poll); err != nil {
				k.rc = nil // not pollable after all: wait in epoll_wait
				continue
			}
		} else {
			var n int
			n, werr = unix.EpollWait(k.epfd, events, -1)
			if werr == unix.EINTR {
				continue
			}
			if werr == nil {
				k.serve(events[:n])
			}
		}
		if werr != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// serve hands each event to its waiter.
func (k *parker) serve(events []unix.EpollEvent) {
	k.again = false
	for i := range events {
		id, way := uint32(events[i].Fd), int(events[i].Pad)
		k.mu.Lock()
		w := k.table[id]
		k.mu.Unlock()
		if w != nil {
			w.event(k, way, events[i].Events)
		}
	}
}

// event serves one event of way; a panic in it (a bug) ends that tunnel,
// reported to its OnPanic, and the parker goes on serving every other one.
func (p *Pipe) event(k *parker, way int, events uint32) {
	if way < 0 || way >= len(p.dirs) {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			if h := p.opt.OnPanic; h != nil {
				h(v)
			}
			go p.fail(fmt.Errorf("tunnel: panic: %v", v)) // p.mu was released on the way out (unpark defers it)
		}
	}()
	drain := events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if p.unpark(way, &k.buf, drain) {
		p.deliver()
	}
}
