package tunnel

import (
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The parker: one epoll set, one goroutine, for every parked tunnel of the
// process. A parked tunnel's sockets are registered level-triggered and
// one-shot for input; the first readable one (data, EOF or error) wakes the
// tunnel. Four times a second it also closes parked tunnels past their idle
// timeout. Go's own poller keeps its registration of the same sockets; an
// epoll set may hold a socket that another one holds too.

type parker struct {
	once  sync.Once
	err   error
	epfd  int
	mu    sync.Mutex
	next  uint32
	pipes map[uint32]*Pipe
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

// Parked returns how many tunnels are parked now.
func Parked() int {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return len(pk.pipes)
}

func canPark(conns ...net.Conn) bool {
	for _, c := range conns {
		if _, ok := c.(syscall.Conn); !ok {
			return false
		}
	}
	return pk.init() == nil
}

// park registers p's open sources; called with p.mu held and no goroutine
// running.
func park(p *Pipe) error {
	if err := pk.init(); err != nil {
		return err
	}
	pk.mu.Lock()
	pk.next++
	for pk.pipes[pk.next] != nil || pk.next == 0 {
		pk.next++
	}
	id := pk.next
	pk.pipes[id] = p
	pk.mu.Unlock()
	p.parkID = uint64(id)
	p.parked = true
	n := 0
	for _, d := range p.dirs {
		if d.done {
			continue
		}
		if err := ctl(d.src, unix.EPOLL_CTL_ADD, id); err != nil {
			unregister(p)
			p.parked = false
			return err
		}
		n++
	}
	if n == 0 {
		unregister(p)
		p.parked = false
		return net.ErrClosed
	}
	return nil
}

// unregister removes p from the epoll set and the table (p.mu held).
func unregister(p *Pipe) {
	id := uint32(p.parkID)
	for _, d := range p.dirs {
		ctl(d.src, unix.EPOLL_CTL_DEL, id) // a closed socket left the set by itself
	}
	pk.mu.Lock()
	if pk.pipes[id] == p {
		delete(pk.pipes, id)
	}
	pk.mu.Unlock()
}

func ctl(c net.Conn, op int, id uint32) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return syscall.EINVAL
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id)}
		cerr = unix.EpollCtl(pk.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

func parkerLoop(k *parker) {
	events := make([]unix.EpollEvent, 256)
	lastSweep := time.Now()
	for {
		n, err := unix.EpollWait(k.epfd, events, 250)
		if err != nil && err != unix.EINTR {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := 0; i < n; i++ {
			id := uint32(events[i].Fd)
			k.mu.Lock()
			p := k.pipes[id]
			k.mu.Unlock()
			if p != nil {
				p.unpark()
			}
		}
		if now := time.Now(); now.Sub(lastSweep) >= 250*time.Millisecond {
			lastSweep = now
			k.mu.Lock()
			parked := make([]*Pipe, 0, len(k.pipes))
			for _, p := range k.pipes {
				parked = append(parked, p)
			}
			k.mu.Unlock()
			for _, p := range parked {
				p.expire(now)
			}
		}
	}
}
