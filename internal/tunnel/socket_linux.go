package tunnel

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// Sockets and Watchers: what a flow needs to run on the parkers before it
// is a tunnel (the transparent listener's accept, hello and dial,
// internal/tlsproxy's evented flow), so that a connection is never in Go's
// poller and never has a goroutine of its own. A Socket is the descriptor;
// a Watcher delivers its events on a parker's goroutine; a tunnel made of
// two Sockets adopts their descriptors and relays them (relay_linux.go).

// ErrWouldBlock: a Socket has nothing to read now, or takes no more bytes
// now; its Watcher reports when that changes.
var ErrWouldBlock = errors.New("tunnel: socket not ready")

// Socket is a TCP socket held as a bare non-blocking descriptor, outside
// Go's poller. Read and Write never wait (ErrWouldBlock); deadlines are
// no-ops (its owner's timers bound it). It is a net.Conn so that code
// written for connections (a TLS alert to a client, tunnel.New) takes it.
// Every use of the descriptor, and its close, is under the Socket's mutex,
// so a Close from another goroutine never closes a number in use. A tunnel
// made of two Sockets adopts their descriptors (New): from then on Close of
// a Socket does nothing, and the tunnel closes them.
type Socket struct {
	mu sync.Mutex
	fd int // -1 once closed or adopted
	// set is the parker whose epoll set holds fd, entered by a Watcher
	// (nil when none): a Watcher that stops leaves it there for the tunnel
	// that adopts the Socket to take over with one EPOLL_CTL_MOD.
	set *parker
	// The addresses: remoteAP as given, localAP as given or asked of the
	// kernel on first use; local and remote are them as net.Addrs, made on
	// first use (mu), since most flows never ask.
	localAP, remoteAP netip.AddrPort
	local, remote     net.Addr
}

// NewSocket takes ownership of fd, a connected or connecting non-blocking
// TCP socket; local may be the zero AddrPort (asked of the kernel when
// needed).
func NewSocket(fd int, local, remote netip.AddrPort) *Socket {
	return &Socket{fd: fd, localAP: local, remoteAP: remote}
}

// SocketOf takes c's socket out of Go's poller: its descriptor duplicated
// (close-on-exec; non-blocking, as the flag belongs to the socket's open
// file) as a Socket, and c closed, which sends nothing. On an error c is
// untouched.
func SocketOf(c *net.TCPConn) (*Socket, error) {
	fd, err := dupOf(c)
	if err != nil {
		return nil, err
	}
	s := NewSocket(fd, addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
	c.Close()
	return s, nil
}

// NetConn turns the Socket into a net.Conn in Go's poller, for code that
// must wait on it: net.FileConn registers a duplicate of the descriptor,
// and the Socket's own is closed. The Socket is closed either way.
func (s *Socket) NetConn() (net.Conn, error) {
	fd, set := s.take()
	if fd < 0 {
		return nil, net.ErrClosed
	}
	if set != nil {
		// The duplicate below would keep the registration alive.
		rawsys.EpollCtl(set.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	// Blocking for os.NewFile, so that it does not register the descriptor
	// in Go's poller itself; net.FileConn's duplicate is made non-blocking
	// again (the flag is the socket's, shared by both).
	unix.SetNonblock(fd, false)
	f := os.NewFile(uintptr(fd), "socket")
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}

// FD returns the descriptor (-1 once closed or adopted), for a Watcher.
func (s *Socket) FD() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fd
}

// addrPort is a's address and port (zero if a is not a *net.TCPAddr).
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// opError is err of op as Go's net reports it (s.mu held).
func (s *Socket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.localLocked(), Addr: s.remoteLocked(), Err: os.NewSyscallError(op, err)}
}

// Read reads what is there: io.EOF at the peer's end, ErrWouldBlock when
// nothing is.
func (s *Socket) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	for {
		n, err := rawsys.Read(s.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, ErrWouldBlock
		case err != nil:
			return 0, s.opError("read", err)
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes as much of b as the socket takes now: ErrWouldBlock with
// the count when not all of it.
func (s *Socket) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	w, err := writeFD(s.fd, b)
	switch {
	case err == unix.EAGAIN:
		return w, ErrWouldBlock
	case err != nil:
		return w, s.opError("write", err)
	}
	return w, nil
}

// Close closes the descriptor, once; nothing once a tunnel adopted it.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := rawsys.Close(s.fd)
	s.fd = -1
	return err
}

// CloseWrite shuts the sending half.
func (s *Socket) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	return rawsys.Shutdown(s.fd, unix.SHUT_WR)
}

// LocalAddr is the socket's own address; for an accepted one, asked of
// the kernel on the first call (most flows never need it).
func (s *Socket) LocalAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localLocked()
}

func (s *Socket) localLocked() net.Addr {
	if s.local == nil {
		if ap := s.localAPLocked(); ap.IsValid() {
			s.local = net.TCPAddrFromAddrPort(ap)
		}
	}
	return s.local
}

// LocalAddrPort is LocalAddr without making a net.Addr (the zero AddrPort
// if it cannot be had).
func (s *Socket) LocalAddrPort() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localAPLocked()
}

func (s *Socket) localAPLocked() netip.AddrPort {
	if !s.localAP.IsValid() && s.fd >= 0 {
		if ap, err := rawsys.Getsockname(s.fd); err == nil {
			s.localAP = ap
		}
	}
	return s.localAP
}

// RemoteAddr is the peer's address (nil if none was given).
func (s *Socket) RemoteAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteLocked()
}

func (s *Socket) remoteLocked() net.Addr {
	if s.remote == nil && s.remoteAP.IsValid() {
		s.remote = net.TCPAddrFromAddrPort(s.remoteAP)
	}
	return s.remote
}

// RemoteAddrPort is the peer's address as given (the zero AddrPort if
// none was), without making a net.Addr.
func (s *Socket) RemoteAddrPort() netip.AddrPort { return s.remoteAP }

// Control runs f on the descriptor under the Socket's mutex (net.ErrClosed
// once it is closed or adopted): SyscallConn's Control, for callers that
// hold a *Socket and would rather not allocate a RawConn and a closure.
func (s *Socket) Control(f func(fd uintptr)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(s.fd))
	return nil
}
func (s *Socket) SetDeadline(time.Time) error      { return nil }
func (s *Socket) SetReadDeadline(time.Time) error  { return nil }
func (s *Socket) SetWriteDeadline(time.Time) error { return nil }

// SyscallConn gives the descriptor to socket options (Control only, under
// the Socket's mutex).
func (s *Socket) SyscallConn() (syscall.RawConn, error) { return socketRaw{s}, nil }

// take gives the descriptor to a tunnel: -1 if it was closed.
func (s *Socket) take() (fd int, set *parker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd, set = s.fd, s.set
	s.fd, s.set = -1, nil
	return fd, set
}

// epollCtl enters (set k) or removes (set nil) the descriptor in k's set,
// under the Socket's mutex as every use of it.
func (s *Socket) epollCtl(k *parker, op int, ev *unix.EpollEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	if op == unix.EPOLL_CTL_ADD {
		if op = enterOp(s.set, k, s.fd); op == unix.EPOLL_CTL_ADD {
			s.set = nil // in no set now
		}
	}
	err := rawsys.EpollCtl(k.epfd, op, s.fd, ev)
	switch {
	case op == unix.EPOLL_CTL_DEL:
		s.set = nil
	case err == nil:
		s.set = k
	}
	return err
}

type socketRaw struct{ s *Socket }

func (r socketRaw) Control(f func(fd uintptr)) error { return r.s.Control(f) }

func (socketRaw) Read(func(fd uintptr) bool) error  { return syscall.EINVAL }
func (socketRaw) Write(func(fd uintptr) bool) error { return syscall.EINVAL }

// Watcher delivers the events of a flow's sockets on a parker's goroutine
// to the flow (its Watched): SocketEvent(way, events) for each event of a
// descriptor Added as way (edge-triggered: input, output, the peer's close,
// an error). SocketEvent must not block; a panic in it goes to SocketPanic
// and the parker goes on.
type Watcher struct {
	k  *parker
	id uint32
	h  Watched
}

// Watched is what a Watcher delivers to: the flow itself, so that a
// Watcher allocates no closures.
type Watched interface {
	SocketEvent(way int, events uint32)
	SocketPanic(v any)
}

// NewWatcher enters h in a parker.
func NewWatcher(h Watched) (*Watcher, error) { return NewWatcherOf(h, nil) }

// NewWatcherOf enters h in the parker whose set holds s already (left
// there by a Watcher that stopped; Add then changes its registration with
// one EPOLL_CTL_MOD), or in the next one when none does (s may be nil).
func NewWatcherOf(h Watched, s *Socket) (*Watcher, error) {
	if err := initParkers(); err != nil {
		return nil, err
	}
	k := s.parker()
	if k == nil {
		_, k = nextParker()
	}
	w := &Watcher{k: k, h: h}
	w.id = k.add(w)
	return w, nil
}

// Add registers s's descriptor as way, for input, output, the peer's close
// and errors. A socket with something to report already is reported at
// once: a connected socket that can be written is.
func (w *Watcher) Add(s *Socket, way int) error {
	return w.add(s, way, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP)
}

// AddInput registers s's descriptor as way for input, the peer's close and
// errors only: a socket that can merely be written is not reported. For a
// socket the flow only reads (a client whose first bytes are awaited), that
// is one event and one empty read fewer.
func (w *Watcher) AddInput(s *Socket, way int) error {
	return w.add(s, way, unix.EPOLLIN|unix.EPOLLRDHUP)
}

func (w *Watcher) add(s *Socket, way int, events uint32) error {
	ev := unix.EpollEvent{Events: events | unix.EPOLLET, Fd: int32(w.id), Pad: int32(way)}
	return s.epollCtl(w.k, unix.EPOLL_CTL_ADD, &ev)
}

// enterOp is how to enter fd, which a stopped Watcher may have left in the
// set of from (nil: in none), in k's set: EPOLL_CTL_MOD when it is in k's
// already (which also reports what is ready now, as ADD does), else
// EPOLL_CTL_ADD, after taking it out of from's.
func enterOp(from, k *parker, fd int) int {
	switch from {
	case nil:
	case k:
		return unix.EPOLL_CTL_MOD
	default:
		rawsys.EpollCtl(from.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	return unix.EPOLL_CTL_ADD
}

// parker is the parker whose set holds s (nil when none, or s is nil).
func (s *Socket) parker() *parker {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// Remove takes s's descriptor out of the Watcher's set.
func (w *Watcher) Remove(s *Socket) { s.epollCtl(w.k, unix.EPOLL_CTL_DEL, nil) }

// Stop takes the Watcher out of its parker: from the parker's next event
// on, SocketEvent is not called again. A descriptor it still watches stays
// in the parker's set, its events dropped, until the Socket is closed, is
// made a connection (NetConn), is added to another Watcher (best one of
// NewWatcherOf, on the same parker), or is adopted by a tunnel (New): the
// Watcher or the tunnel then takes the registration over with one
// EPOLL_CTL_MOD, which also reports whatever is ready at that moment, so
// an event the stopped Watcher dropped is not lost.
func (w *Watcher) Stop() { w.k.remove(w.id, w) }

func (w *Watcher) event(_ *parker, way int, events uint32) {
	defer func() {
		if v := recover(); v != nil {
			w.h.SocketPanic(v)
		}
	}()
	w.h.SocketEvent(way, events)
}

// EPOLL event bits SocketEvent sees.
const (
	EventIn    = unix.EPOLLIN
	EventOut   = unix.EPOLLOUT
	EventRDHUP = unix.EPOLLRDHUP
	EventHUP   = unix.EPOLLHUP
	EventErr   = unix.EPOLLERR
)

// CanWatch reports whether Watchers can run here (the parkers' epoll sets
// could be made).
func CanWatch() bool { return initParkers() == nil }
