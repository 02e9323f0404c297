package tlsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/rawsys"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/sni"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/egress-proxy/egress/internal/upstream"
	"golang.org/x/sys/unix"
)

// The evented flow: a TLS connection (transparent, from its accept; a
// CONNECT tunnel, from its 200) served to its end on the tunnel package's
// parkers (epoll loops), with no goroutine
// and no Go poller of its own. The steps are the flow's (steps.go: the
// hello's record, helloFailed, decide, resolve, register, start); only the
// waiting differs. The client and the destination are tunnel.Sockets
// (bare non-blocking descriptors) watched by one tunnel.Watcher; the hello
// is read as its bytes arrive, the destination is dialed with a
// non-blocking connect, the bytes the client sent are replayed as the
// destination takes them, and the tunnel adopts both descriptors and is
// relayed by a parker. Timeouts (hello_timeout, the dial, the replay) are
// one timer, set again for each step's deadline. A name that is neither an
// address nor in upstream.hosts is looked up on a goroutine of its own,
// which hands the flow back.
//
// Ownership: everything of the flow is touched only under evented.mu: by
// the parker's events, the timer, the lookup's goroutine and the
// registry's close (which takes the lock on a goroutine of its own, since a
// step may close the flow while it holds the lock). A step that ends the
// flow sets state to done; every later event, timer or close sees it and
// does nothing.

type eventedState uint8

const (
	stateHello eventedState = iota
	stateResolving
	stateConnecting
	stateReplaying
	stateDone
)

type evented struct {
	mu     sync.Mutex
	fl     flow
	state  eventedState
	w      *tunnel.Watcher
	client *tunnel.Socket
	server *tunnel.Socket // nil until the dial
	timer  *time.Timer    // fires at deadline (timedOut); one for all the steps
	// deadline is the current step's (zero: none). A timer set for an
	// earlier step may still fire after it was set again: timedOut acts
	// only once deadline has passed.
	deadline time.Time
	d        rules.Decision
	sent     int // bytes of fl.raw the destination took
	dialed   time.Time
}

// ServeEvented serves a flow whose client is a *tunnel.Socket (the
// transparent listener's accept, or a CONNECT's client after its 200, on
// Linux) to its end, as Serve would, on the parkers. It returns at once;
// f.Done is called when the flow is over. f.Conn's closer is the flow's
// from here.
func (p *Proxy) ServeEvented(f *Flow) {
	e := &evented{fl: flow{p: p, f: f}, client: f.Client.(*tunnel.Socket)}
	e.step(func() {
		w, err := tunnel.NewWatcherOf(e, e.client) // a CONNECT's client: on the parker that waited for its request
		if err != nil {
			e.fl.helloRead(nil, nil, err)
			e.fl.deny(rules.ReasonMalformedHello, 0, err.Error())
			e.finish()
			return
		}
		e.w = w
		f.Conn.SetCloser(e)
		if why := f.Conn.ClosedBy(); why != "" {
			go e.closedNow() // a shutdown that came before the closer
		}
		e.deadline = f.Start.Add(p.Active.Config().TLS.HelloTimeout)
		e.timer = time.AfterFunc(time.Until(e.deadline), e.timedOut)
		// The bytes read with a CONNECT request are the hello's first (or
		// all of it: then no event may come, so they are looked at now).
		e.fl.raw, f.Buffered = f.Buffered, nil
		if err := w.AddInput(e.client, 0); err != nil {
			e.fl.helloRead(nil, e.fl.raw, err)
			e.fl.helloFailed(err)
			e.finish()
			return
		}
		if len(e.fl.raw) > 0 {
			e.readHello()
		}
		// A hello that is in the socket already is reported by the Add.
	})
}

// step runs fn under e.mu; a panic in it (a bug) is counted and ends the
// flow, not the process.
func (e *evented) step(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			e.SocketPanic(v)
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	fn()
}

// SocketPanic (tunnel.Watched) reports a panic in one of the flow's steps
// and ends the flow.
// The flow may be over already (start empties e.fl when it hands the
// sockets to the tunnel), so the hook is looked up only where there is one:
// a panic while reporting a panic would end the process.
func (e *evented) SocketPanic(v any) {
	if p, f := e.fl.p, e.fl.f; p != nil && f != nil && p.Panicked != nil {
		p.Panicked(f.Listener, v)
	}
	go e.step(func() {
		if e.state != stateDone {
			e.finish()
		}
	})
}

// SocketEvent (tunnel.Watched): way 0 is the client, 1 the destination.
func (e *evented) SocketEvent(way int, events uint32) {
	e.step(func() {
		switch {
		case e.state == stateHello && way == 0:
			e.readHello()
		case e.state == stateConnecting && way == 1 && events&(tunnel.EventOut|tunnel.EventErr|tunnel.EventHUP) != 0:
			e.connected(events&(tunnel.EventErr|tunnel.EventHUP) != 0)
		case e.state == stateReplaying && way == 1:
			e.replay()
		}
		// Anything else (bytes behind the hello while the destination is
		// dialed) waits in the socket: the tunnel's registration reports
		// it when the tunnel starts.
	})
}

// readHello reads what the client sent and goes on once the hello is
// complete (or cannot be).
func (e *evented) readHello() {
	hello, raw, err := sni.ReadBuffered(e.client, e.fl.raw)
	if errors.Is(err, tunnel.ErrWouldBlock) {
		e.fl.raw = raw // the rest is to come
		return
	}
	e.disarm()
	e.fl.helloRead(hello, raw, err)
	if err != nil && !e.fl.helloFailed(err) {
		e.finish()
		return
	}
	d, ok := e.fl.decide()
	if !ok {
		e.finish()
		return
	}
	e.d = d
	e.resolve()
}

// arm sets the current step's deadline d from now.
func (e *evented) arm(d time.Duration) {
	e.deadline = time.Now().Add(d)
	if e.timer == nil {
		e.timer = time.AfterFunc(d, e.timedOut)
		return
	}
	e.timer.Reset(d)
}

// disarm clears the current step's deadline.
func (e *evented) disarm() {
	e.deadline = time.Time{}
	if e.timer != nil {
		e.timer.Stop()
	}
}

// timedOut is the timer's: the current step's deadline passed.
func (e *evented) timedOut() {
	e.step(func() {
		if e.deadline.IsZero() || time.Now().Before(e.deadline) {
			return // set for an earlier step, or stopped, as it fired
		}
		e.deadline = time.Time{}
		switch e.state {
		case stateHello: // hello_timeout passed before the hello was complete
			err := fmt.Errorf("%w: %w", sni.ErrTimeout, &net.OpError{Op: "read", Net: "tcp", Source: e.client.LocalAddr(), Addr: e.client.RemoteAddr(), Err: os.ErrDeadlineExceeded})
			e.fl.helloRead(nil, e.fl.raw, err)
			e.fl.helloFailed(err)
			e.finish()
		case stateConnecting: // the connect did not complete within upstream's timeout
			e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.ErrDeadlineExceeded})
		case stateReplaying: // the destination took no byte of the replay for the idle timeout
			e.dialFailed(&net.OpError{Op: "write", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.ErrDeadlineExceeded})
		}
	})
}

// resolve finds the address to dial: none to find for a CONNECT whose
// target was checked before its 200 under this configuration; at once for
// an address, a name in upstream.hosts or a name the DNS cache holds
// (ResolveNow); on a goroutine for a DNS lookup. The name is the CONNECT
// target's, or the SNI's (fl.resolve's rules).
func (e *evented) resolve() {
	if e.fl.dest.IsValid() {
		e.fl.o.Decide(e.d)
		e.registered()
		return
	}
	st := e.fl.st
	target := e.fl.names.Target
	if target == "" {
		target = e.fl.names.Inner
	}
	name, ip, _ := hostname.Normalize(target)
	if dest, ok, err := st.Dialer.ResolveNow(name, ip); ok {
		e.resolved(name, dest, err)
		return
	}
	e.state = stateResolving
	go func() {
		dest, err := st.Dialer.Resolve(context.Background(), name, ip)
		e.step(func() {
			if e.state == stateResolving {
				e.resolved(name, dest, err)
			}
		})
	}()
}

// resolved records the lookup (a refused address is a deny, a failed
// lookup an allow that failed) and dials.
func (e *evented) resolved(name string, dest netip.Addr, err error) {
	var monitor []*rules.Rule
	if c := e.fl.f.Connect; c != nil {
		monitor = c.Outer.Decision.Monitor
	}
	dest, alert := recordResolved(e.fl.o, e.fl.p.Metrics, e.d, e.fl.seg, monitor, name, dest, err)
	if alert != 0 {
		e.fl.alert(alert)
		e.finish()
		return
	}
	e.fl.dest = dest
	e.registered()
}

// registered registers the flow's names and dials.
func (e *evented) registered() {
	if !e.fl.register() {
		e.finish()
		return
	}
	e.fl.f.Conn.SetCloser(e) // register set the goroutine flow's
	e.dial()
}

// dial starts a non-blocking connect to the checked address.
func (e *evented) dial() {
	st := e.fl.st
	if st.Dialer.DialConn != nil {
		e.dialFailed(errors.New("an evented flow dials TCP only"))
		return
	}
	dest := netip.AddrPortFrom(e.fl.dest, e.fl.f.Port)
	e.dialed = time.Now()
	fd, err := rawsys.Socket(dest)
	if err != nil {
		e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dest), Err: os.NewSyscallError("socket", err)})
		return
	}
	rawsys.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as Go's net does
	e.server = tunnel.NewSocket(fd, netip.AddrPort{}, dest)
	err = rawsys.Connect(fd, dest)
	switch err {
	case nil:
		e.connected(false)
	case unix.EINPROGRESS:
		e.state = stateConnecting
		if err := e.w.Add(e.server, 1); err != nil {
			e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.NewSyscallError("epoll_ctl", err)})
			return
		}
		if st.Dialer.Timeout > 0 {
			e.arm(st.Dialer.Timeout)
		}
	default:
		e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.NewSyscallError("connect", err)})
	}
}

// connected: the connect completed. failed: the socket reported an error
// or a hang-up, and SO_ERROR says which. A connect that returned 0, or a
// socket reported writable with neither, is established (the kernel reports
// a connecting socket writable only then): no system call to ask; an error
// that comes after it is the replay's write error.
func (e *evented) connected(failed bool) {
	if failed {
		var soerr int
		var gerr error
		if err := e.server.Control(func(fd uintptr) { soerr, gerr = rawsys.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) }); err != nil {
			gerr = err
		}
		if gerr == nil && soerr != 0 {
			gerr = syscall.Errno(soerr)
		}
		if gerr != nil {
			e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.NewSyscallError("connect", gerr)})
			return
		}
	}
	e.disarm()
	e.fl.p.Metrics.UpstreamDial.Observe(time.Since(e.dialed).Seconds())
	if why := e.fl.f.Conn.ClosedBy(); why != "" {
		// Closed by a reload or a shutdown while dialing: not a byte of
		// the client's reaches the destination.
		e.fl.o.Cut(why)
		e.finish()
		return
	}
	if e.state != stateConnecting { // connected at once: not watched yet
		if err := e.w.Add(e.server, 1); err != nil {
			e.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: e.server.RemoteAddr(), Err: os.NewSyscallError("epoll_ctl", err)})
			return
		}
	}
	e.state = stateReplaying
	e.arm(e.fl.st.Config.Limits.IdleTimeout)
	e.replay()
}

// replay writes what the client sent (the hello and what followed it) as
// the destination takes it, then starts the tunnel.
func (e *evented) replay() {
	n, err := e.server.Write(e.fl.raw[e.sent:])
	e.sent += n
	switch {
	case errors.Is(err, tunnel.ErrWouldBlock):
		return // the destination's next EventOut brings the rest
	case err != nil:
		e.dialFailed(err)
		return
	}
	e.disarm()
	e.start()
}

// dialFailed ends the flow after the destination could not be reached or
// written: counted, recorded, and the client told with internal_error.
func (e *evented) dialFailed(err error) {
	e.fl.dialFailed(fmt.Errorf("%w: %w", upstream.ErrUnavailable, err))
	e.finish()
}

// start hands both sockets to a tunnel, which adopts their descriptors and
// is relayed by a parker; the flow is over. The sockets stay in the
// stopped Watcher's set: the tunnel takes their registrations over
// (tunnel.Watcher.Stop), one epoll_ctl each instead of two.
func (e *evented) start() {
	e.w.Stop()
	e.state = stateDone
	e.fl.start(e.server)
}

// finish ends a flow that did not become a tunnel.
func (e *evented) finish() {
	e.state = stateDone
	e.disarm()
	if e.w != nil {
		e.w.Stop() // the closes below take the sockets out of its set
	}
	if e.server != nil {
		e.server.Close()
	}
	e.fl.finish()
}

// Close is the flow's closer in the registry (conntrack.Closer: a reload
// that denies its names, a shutdown). It may be called by a step that holds
// e.mu, so it closes on a goroutine of its own.
func (e *evented) Close() { go e.closedNow() }

func (e *evented) closedNow() {
	e.step(func() {
		if e.state == stateDone {
			// Over, or handed to the tunnel (a close that raced the
			// hand-over waited here for the lock): e.fl is empty then,
			// and the tunnel is the Conn's closer.
			return
		}
		why := e.fl.f.Conn.ClosedBy()
		switch e.state {
		case stateHello:
			err := fmt.Errorf("%w: %w", sni.ErrTruncated, net.ErrClosed)
			e.fl.helloRead(nil, e.fl.raw, err)
			e.fl.helloFailed(err) // records the close (ClosedBy) as the outcome
		default:
			e.fl.o.Cut(why)
		}
		e.finish()
	})
}
