package tunnel

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The parker: one epoll set, one goroutine, for every parked way of every
// tunnel of the process. A way is parked when its copy had nothing to read
// for ParkAfter: its source socket is registered level-triggered and
// one-shot for input, and the first readable event (data, EOF or error)
// starts that way's copy again. Each way parks on its own, so a way whose
// copy is blocked in a write (its peer stopped reading) never stops the
// other: that one is parked and watched here. Go's own poller keeps its
// registration of the same sockets; an epoll set may hold a socket that
// another one holds too. The idle timeout is the tunnel's watchdog
// (tunnel.go), parked or not.

type parker struct {
	once  sync.Once
	err   error
	epfd  int
	mu    sync.Mutex
	next  uint32
	pipes map[uint32]*Pipe // tunnels with a parked way, by Pipe.parkID
}

var pk parker

func (k *parker) init() error {
	k.once.Do(func() {
		k.epfd, k.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if k.err != nil {
			return
		}
		k.pipes = map[uint32]*Pipe{}
		go parkerLoop(k)
	})
	return k.err
}

func canPark(conns ...net.Conn) bool {
	for _, c := range conns {
		if _, ok := c.(syscall.Conn); !ok {
			return false
		}
	}
	return pk.init() == nil
}

// parkLocked registers d's source in the epoll set (p.mu held); the parker
// calls p.unpark(d's index) when it is readable.
func parkLocked(p *Pipe, d *direction) error {
	if err := pk.init(); err != nil {
		return err
	}
	if p.parkID == 0 {
		pk.mu.Lock()
		pk.next++
		for pk.pipes[pk.next] != nil || pk.next == 0 {
			pk.next++
		}
		p.parkID = uint64(pk.next)
		pk.pipes[pk.next] = p
		pk.mu.Unlock()
	}
	err := ctl(d.rc, unix.EPOLL_CTL_ADD, uint32(p.parkID), int(d.index))
	if err == unix.EEXIST {
		// Still in the set, disabled by its one-shot: arm it again.
		err = ctl(d.rc, unix.EPOLL_CTL_MOD, uint32(p.parkID), int(d.index))
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
	ctl(d.rc, unix.EPOLL_CTL_DEL, uint32(p.parkID), int(d.index)) // a closed socket left the set by itself
}

// forget removes a finished tunnel from the parker's table (p.mu held).
func forget(p *Pipe) {
	if p.parkID == 0 {
		return
	}
	pk.mu.Lock()
	if pk.pipes[uint32(p.parkID)] == p {
		delete(pk.pipes, uint32(p.parkID))
	}
	pk.mu.Unlock()
}

func ctl(rc syscall.RawConn, op int, id uint32, way int) error {
	if rc == nil {
		return syscall.EINVAL
	}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id), Pad: int32(way)}
		cerr = unix.EpollCtl(pk.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

func parkerLoop(k *parker) {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(k.epfd, events, -1)
		if err != nil && err != unix.EINTR {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := 0; i < n; i++ {
			id, way := uint32(events[i].Fd), int(events[i].Pad)
			k.mu.Lock()
			p := k.pipes[id]
			k.mu.Unlock()
			if p != nil && way >= 0 && way < len(p.dirs) {
				unparkGuarded(p, way)
			}
		}
	}
}

// unparkGuarded wakes one direction; a panic in it (a bug) ends that tunnel,
// reported to its OnPanic, and the parker goes on serving every other one.
func unparkGuarded(p *Pipe, way int) {
	defer func() {
		if v := recover(); v != nil {
			if h := p.opt.OnPanic; h != nil {
				h(v)
			}
			go p.fail(fmt.Errorf("tunnel: panic: %v", v)) // not under this goroutine: p.mu may be held
		}
	}()
	p.unpark(way)
}
