package tunnel

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// Acceptor accepts connections from a listening TCP socket on the parkers,
// so that a connection is never in Go's poller, not even for its accept:
// the listening socket leaves Go's poller (its descriptor duplicated, the
// *net.TCPListener closed: the socket stays open and keeps its queue),
// is registered in every parker's set (EPOLLEXCLUSIVE: an arrival wakes
// one parker, not all), and each connection is accepted with accept4
// straight into a non-blocking Socket.
//
// Ownership: the Acceptor owns the listening descriptor; it is used and
// closed only under a.mu, and serve runs under a.mu too, so after Close
// returns serve is never called again. serve owns each Socket it is given
// (it must close it or hand it on) and runs on a parker's goroutine: it
// must not block.
type Acceptor struct {
	mu      sync.Mutex
	fd      int      // -1 once closed
	ids     []uint32 // its id in each parker's table
	armed   bool     // registered in the parkers' sets (false while backing off)
	backoff time.Duration
	timer   *time.Timer
	done    chan struct{}
	// every connection's own address, when the listener's is one address
	// (zero and nil: a wildcard); local is localAP as a net.Addr, shared by
	// every connection's Socket.
	localAP netip.AddrPort
	local   net.Addr

	serve   func(s *Socket, peer netip.AddrPort)
	onError func(err error, retryIn time.Duration)
	onPanic func(any)
}

// acceptBatch bounds the connections one event accepts: the rest of the
// queue is reported again (level-triggered) after the parker has served
// its other events.
const acceptBatch = 16

// Accept takes ln's socket and accepts from it on the parkers until Close.
// serve gets each connection (peer: its address, IPv4 unmapped); onError
// is told of an accept error that pauses accepting (out of descriptors or
// memory) and for how long; a panic in serve goes to onPanic. On an error
// ln is untouched.
func Accept(ln *net.TCPListener, serve func(s *Socket, peer netip.AddrPort), onError func(error, time.Duration), onPanic func(any)) (*Acceptor, error) {
	if err := initParkers(); err != nil {
		return nil, err
	}
	fd, err := dupOf(ln)
	if err != nil {
		return nil, err
	}
	a := &Acceptor{fd: fd, done: make(chan struct{}), serve: serve, onError: onError, onPanic: onPanic}
	if la, ok := ln.Addr().(*net.TCPAddr); ok && !la.IP.IsUnspecified() {
		a.localAP, a.local = la.AddrPort(), la
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range parkers.all {
		a.ids = append(a.ids, k.add(a))
	}
	if err := a.armLocked(); err != nil {
		a.closeLocked()
		return nil, err
	}
	ln.Close() // out of Go's poller; the duplicate keeps the socket
	return a, nil
}

// armLocked registers the listening socket in every parker's set.
func (a *Acceptor) armLocked() error {
	for i, k := range parkers.all {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(a.ids[i])}
		err := rawsys.EpollCtl(k.epfd, unix.EPOLL_CTL_ADD, a.fd, &ev)
		if err == unix.EINVAL {
			// A kernel before 4.5: every parker is woken, one accepts.
			ev.Events = unix.EPOLLIN
			err = rawsys.EpollCtl(k.epfd, unix.EPOLL_CTL_ADD, a.fd, &ev)
		}
		if err != nil {
			a.disarmLocked()
			return err
		}
	}
	a.armed = true
	return nil
}

// disarmLocked takes the listening socket out of every parker's set.
func (a *Acceptor) disarmLocked() {
	for _, k := range parkers.all {
		rawsys.EpollCtl(k.epfd, unix.EPOLL_CTL_DEL, a.fd, nil) // ENOENT where it was not yet added
	}
	a.armed = false
}

// event accepts up to acceptBatch connections, serving each.
func (a *Acceptor) event(k *parker, _ int, _ uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; a.fd >= 0 && a.armed; i++ {
		if i == acceptBatch {
			k.again = true // the rest after this round's other events
			return
		}
		fd, peer, err := accept4(a.fd)
		switch {
		case err == nil:
			a.backoff = 0
			a.serveLocked(fd, peer)
		case err == unix.EAGAIN:
			return
		case retryable(err):
			// A connection that died in the queue, or the network error
			// Linux passes on from it: the next one may be fine.
		default:
			// Out of descriptors or memory: the queue stays readable, so
			// stop listening for it a while rather than spin (as Go's
			// accept loop would have slept).
			a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
			a.disarmLocked()
			a.timer = time.AfterFunc(a.backoff, a.rearm)
			if a.onError != nil {
				a.onError(err, a.backoff)
			}
			return
		}
	}
}

// accept4 is rawsys.Accept4 (a variable for the tests' failures).
var accept4, rawAccept4 = rawsys.Accept4, rawsys.Accept4

// retryable: accept(2)'s errors that belong to one connection, not the
// listener.
func retryable(err error) bool {
	switch err {
	case unix.ECONNABORTED, unix.EPROTO, unix.ENETDOWN, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET,
		unix.EHOSTUNREACH, unix.EOPNOTSUPP, unix.ENETUNREACH, unix.EPERM, unix.ETIMEDOUT:
		return true
	}
	return false
}

// serveLocked hands one accepted descriptor to serve; a panic in serve (a
// bug) goes to onPanic and the parker accepts on.
func (a *Acceptor) serveLocked(fd int, peer netip.AddrPort) {
	defer func() {
		if v := recover(); v != nil && a.onPanic != nil {
			a.onPanic(v)
		}
	}()
	s := NewSocket(fd, a.localAP, peer)
	s.local = a.local // shared: no net.Addr made per connection
	a.serve(s, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()))
}

// rearm listens again after a back-off.
func (a *Acceptor) rearm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fd < 0 || a.armed {
		return
	}
	if err := a.armLocked(); err != nil {
		a.backoff = time.Second
		a.timer = time.AfterFunc(a.backoff, a.rearm)
		if a.onError != nil {
			a.onError(err, a.backoff)
		}
	}
}

// Close stops accepting and closes the listening socket; connections in
// its queue are reset by the kernel. After Close returns, serve is not
// called again.
func (a *Acceptor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fd < 0 {
		return net.ErrClosed
	}
	a.closeLocked()
	return nil
}

func (a *Acceptor) closeLocked() {
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.armed {
		a.disarmLocked()
	}
	for i, k := range parkers.all {
		if i < len(a.ids) {
			k.remove(a.ids[i], a)
		}
	}
	rawsys.Close(a.fd)
	a.fd = -1
	close(a.done)
}

// Done is closed when the Acceptor is.
func (a *Acceptor) Done() <-chan struct{} { return a.done }
