package httpproxy

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/tunnel"
	"golang.org/x/sys/unix"
)

// The explicit proxy listener on the parkers (Linux, without proxy_protocol,
// not the TLS proxy listener): tunnel.Accept accepts each connection into a
// tunnel.Socket, which waits for its first bytes on a parker (waiting) with
// no goroutine and no request reader; header_timeout or a shutdown closes it
// there without a word, as the request loop would. Its first bytes start its
// goroutine, which runs the request loop as always over an evConn: the
// Socket until the loop must wait for it, a connection in Go's poller from
// then on. A CONNECT read whole with its first bytes (the usual case) never
// enters Go's poller: its 200 is written on the Socket, which then goes on
// to the evented TLS flow as it is.
//
// Such a CONNECT is served on the parker itself, with no goroutine at all,
// when nothing in it can wait (inlineState): the header is all there, and
// it carries no credentials for a configured identity source to check (an
// LDAP bind or a Kerberos check may take seconds). The loop then runs with its evConn in no-wait mode, and the
// first step that would wait goes on on a worker (conn.next): a DNS lookup
// for the target, the connection's next request (after a 407). A write the
// fresh socket does not take at once fails there, as a client gone would.

// eventedOK: the parkers can run here.
func eventedOK() bool { return tunnel.CanWatch() }

// serveEvented accepts from ln on the parkers until CloseAccept
// (conntrack's ServeEvented: the back-off, the fallback to a goroutine per
// connection).
func (s *Server) serveEvented(ln *net.TCPListener) error {
	return s.Track.ServeEvented(&s.ev, ln, s.listener(), s.acceptEvented,
		func() error {
			return s.Track.Accept(ln, s.listener(), &s.wg, func(c net.Conn, _ time.Time) { s.serveConn(c) })
		})
}

// acceptEvented takes one accepted connection, on a parker: tracked (a
// shutdown closes it while it waits: it is idle), admitted, and waiting for
// its first bytes. One over a limit is answered (503) on a goroutine.
func (s *Server) acceptEvented(sock *tunnel.Socket, src netip.AddrPort) {
	s.wg.Add(1)
	wt := &waiting{s: s, sock: sock}
	adm := &wt.adm
	adm.release, adm.limit = s.Track.Admit(s.listener(), src.Addr())
	wt.mu.Lock()
	defer wt.mu.Unlock()
	// The closer before the connection counts as idle, so that a shutdown
	// that sees it idle closes it; one that came before the closer is
	// caught by ClosedBy.
	wt.t = s.Track.Track(s.listener())
	wt.t.SetCloser(wt)
	wt.t.SetIdle(true)
	if wt.t.ClosedBy() != "" {
		wt.closeLocked()
		return
	}
	if adm.release == nil {
		wt.handOnLocked(nil, true)
		return
	}
	wt.parkLocked(s.Active.Config().Limits.HeaderTimeout)
}

// parkLocked makes the connection wait for its first bytes on a parker, at
// most wait; where it cannot, it goes on on a worker.
func (wt *waiting) parkLocked(wait time.Duration) {
	w, err := tunnel.NewWatcherOf(wt, wt.sock)
	if err != nil {
		wt.handOnLocked(nil, true)
		return
	}
	wt.w = w
	wt.timer = time.AfterFunc(wait, wt.timedOut)
	if err := w.AddInput(wt.sock, 0); err != nil {
		wt.handOnLocked(nil, true)
	}
}

// repark puts a keep-alive connection whose request was served on a parker
// (a 407 to a CONNECT without credentials) back to waiting there for its
// next request, as an accepted connection waits for its first
// (acceptEvented), for idle_timeout: between requests it holds no goroutine
// and no request reader. It reports false, and the loop goes on on a
// worker, when something of the loop must carry over: bytes read already
// (a pipelined request), an identity, an upstream connection, a connection
// in Go's poller, one closed meanwhile.
func (cn *conn) repark() bool {
	e, ok := cn.c.(*evConn)
	if !ok || cn.br.Buffered() > 0 || cn.who.leaf != nil || cn.who.id.Known() || cn.who.cert.Known() ||
		cn.up.Load() != nil || cn.s.ProxyProtocol || cn.s.ProxyTLS || cn.release == nil {
		return false
	}
	sock, _ := e.take() // nil when in Go's poller, closed, or bytes of e.pre are unread
	if sock == nil {
		return false
	}
	// From here the waiting owns the connection: the loop's cleanup ends
	// nothing (handedOff), and the registry closes it through the waiting.
	cn.handedOff = true
	cn.t.SetOnSwap(nil)
	wt := &waiting{s: cn.s, sock: sock, t: cn.t, adm: admission{release: cn.release}}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.t.HandOver(wt)
	wt.t.SetIdle(true)
	// A close that came while the socket changed hands found nothing to
	// close: ClosedBy catches it, as a shutdown that began meanwhile.
	if wt.t.ClosedBy() != "" || cn.s.Track.Draining() {
		wt.closeLocked()
		return true
	}
	wt.parkLocked(cn.s.Active.Config().Limits.IdleTimeout)
	return true
}

// waiting is a connection of the explicit listener waiting on a parker for
// its first bytes. Everything of it is under mu; over once it is handed on
// or closed, each exactly once.
type waiting struct {
	mu    sync.Mutex
	s     *Server
	sock  *tunnel.Socket
	w     *tunnel.Watcher // nil when none could be had
	t     *conntrack.Conn
	adm   admission
	timer *time.Timer
	over  bool
	ec    *evConn // once handed on
}

// SocketEvent (tunnel.Watched): the socket has something to report.
func (wt *waiting) SocketEvent(int, uint32) {
	if st, ec, t, adm := wt.readFirst(); st != nil {
		// Served here, once wt.mu is let go: a shutdown's Close meanwhile
		// closes the evConn, and the loop sees it closed.
		wt.s.serveGuarded(ec, t, &adm, st)
	}
}

// readFirst reads the connection's first bytes and hands them on: to a
// worker, or (st set) to this parker, for the caller to serve with the
// connection's evConn, registry entry and admission.
func (wt *waiting) readFirst() (st *active.State, ec *evConn, t *conntrack.Conn, adm admission) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.over {
		return nil, nil, nil, adm
	}
	var buf [4096]byte // what the loop's reader takes in one read (readerPool)
	n, err := wt.sock.Read(buf[:])
	switch {
	case err == nil && n > 0:
		pre := append([]byte(nil), buf[:n]...)
		if st = wt.s.inlineState(pre); st != nil {
			wt.handOnLocked(pre, false)
			return st, wt.ec, wt.t, wt.adm
		}
		wt.handOnLocked(pre, true)
	case errors.Is(err, tunnel.ErrWouldBlock):
	default:
		wt.closeLocked() // gone before a byte: nothing to answer
	}
	return nil, nil, nil, adm
}

// inlineState is the state under which a request read whole on the parker
// (pre) is served there (nil: on a worker): a CONNECT whose header is all in
// pre and carries no credentials for a configured identity source, so that
// neither reading nor identifying it can wait. A CONNECT without
// credentials is answered here even when an identity source is configured
// (a 407, the first answer a browser gets, or a decision for an
// unidentified client); the loop checks the parsed header again
// (inlineWaits), so this is only the cheap first look.
func (s *Server) inlineState(pre []byte) *active.State {
	end := bytes.Index(pre, []byte("\r\n\r\n"))
	if !bytes.HasPrefix(pre, []byte("CONNECT ")) || end < 0 {
		return nil
	}
	st := s.Active.Load()
	if st.Auth != nil && containsFold(pre[:end], "proxy-authorization") {
		return nil
	}
	return st
}

// containsFold reports whether b holds s in any case (s in lower case).
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if b[i]|0x20 == s[0] && bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// handOnLocked gives the connection, with what was read, to its request
// loop: on a worker (start), or on this parker (the caller runs it).
func (wt *waiting) handOnLocked(pre []byte, start bool) {
	wt.over = true
	wt.stopLocked()
	wt.ec = &evConn{sock: wt.sock, pre: pre, local: wt.sock.LocalAddr(), remote: wt.sock.RemoteAddr(), inline: !start}
	wt.t.SetConn(wt.ec) // and no closer: the evConn is closed from here
	wt.t.SetIdle(false)
	if !start {
		return
	}
	// The closure holds a copy of the admission, not the waiting.
	s, ec, t, adm := wt.s, wt.ec, wt.t, wt.adm
	s.workers.run(func() {
		a := adm
		s.serveGuarded(ec, t, &a, nil)
	})
}

// closeLocked closes a connection that never sent a byte.
func (wt *waiting) closeLocked() {
	wt.over = true
	wt.stopLocked()
	wt.sock.Close()
	wt.s.end(wt.t, nil, wt.adm.release, false)
}

func (wt *waiting) stopLocked() {
	if wt.timer != nil {
		wt.timer.Stop()
	}
	if wt.w != nil {
		// The socket stays in the parker's set (its events dropped): a
		// close takes it out, NetConn does, and the evented TLS flow of a
		// CONNECT changes it in place (tunnel.NewWatcherOf).
		wt.w.Stop()
	}
}

// timedOut: header_timeout passed without a byte.
func (wt *waiting) timedOut() {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if !wt.over {
		wt.closeLocked()
	}
}

// Close is the connection's closer in the registry (conntrack.Closer)
// while it waits (a shutdown); once handed on, its evConn is the registry's
// (SetConn), and a close that raced the hand-on closes that.
func (wt *waiting) Close() {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	switch {
	case !wt.over:
		wt.closeLocked()
	case wt.ec != nil:
		wt.ec.Close()
	}
}

// SocketPanic (tunnel.Watched): a panic in SocketEvent (a bug) is counted
// and closes the connection.
func (wt *waiting) SocketPanic(v any) {
	wt.s.Track.Panicked(wt.s.listener(), v)
	go wt.Close() // wt.mu was released as the panic unwound
}

// serveGuarded runs the request loop of a connection handed on from the
// parkers (on a worker, or on the parker itself with first set:
// serveTracked); a panic in it (a bug) is counted and closes that
// connection. serveTracked counts a panic in the loop itself before its
// cleanup closes the connection (finish); this guards the rest.
func (s *Server) serveGuarded(c net.Conn, t *conntrack.Conn, adm *admission, first *active.State) {
	defer func() {
		if v := recover(); v != nil {
			s.Track.Panicked(s.listener(), v) // counted before the client can see the close
			c.Close()
		}
	}()
	s.serveTracked(c, t, adm, first)
}

// evConn is a client connection handed on from the parkers with the bytes
// read there (pre). It is the tunnel.Socket until the request loop must wait
// for it: a read that finds nothing, or a write the socket does not take
// whole, first turns it into a connection in Go's poller
// (tunnel.(*Socket).NetConn) with the deadlines set so far, and the read or
// write goes on there. Reads and writes come from the connection's
// goroutine; Close, deadlines and the linger may come from any.
type evConn struct {
	mu            sync.Mutex
	sock          *tunnel.Socket // nil once turned into conn, taken, or closed
	conn          net.Conn       // once the loop had to wait
	pre           []byte         // read on the parker, not yet read by the loop (its goroutine only)
	rd, wd        time.Time
	closed        bool
	inline        bool // served on a parker: a read or write that would wait fails (errWouldWait)
	local, remote net.Addr
}

// current is what the connection is now.
func (e *evConn) current() (*tunnel.Socket, net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sock, e.conn
}

func (e *evConn) Read(b []byte) (int, error) {
	if len(e.pre) > 0 {
		n := copy(b, e.pre)
		e.pre = e.pre[n:]
		if len(e.pre) == 0 {
			e.pre = nil
		}
		return n, nil
	}
	sock, c := e.current()
	if c != nil {
		return c.Read(b)
	}
	if sock == nil {
		return 0, net.ErrClosed
	}
	n, err := sock.Read(b)
	if !errors.Is(err, tunnel.ErrWouldBlock) {
		return n, err
	}
	if c, err = e.wait(); err != nil {
		return 0, err
	}
	return c.Read(b)
}

func (e *evConn) Write(b []byte) (int, error) {
	sock, c := e.current()
	if c != nil {
		return c.Write(b)
	}
	if sock == nil {
		return 0, net.ErrClosed
	}
	n, err := sock.Write(b)
	if !errors.Is(err, tunnel.ErrWouldBlock) {
		return n, err
	}
	if c, err = e.wait(); err != nil {
		return n, err
	}
	m, err := c.Write(b[n:])
	return n + m, err
}

// errWouldWait is a read or write of a connection served on a parker that
// would have to wait for the client.
var errWouldWait = errors.New("the client did not take the answer at once")

// setInline puts e in no-wait mode (on a parker), or takes it out.
func (e *evConn) setInline(on bool) {
	e.mu.Lock()
	e.inline = on
	e.mu.Unlock()
}

// wait turns the Socket into a connection in Go's poller.
func (e *evConn) wait() (net.Conn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		return e.conn, nil
	}
	if e.inline {
		return nil, errWouldWait
	}
	if e.sock == nil {
		return nil, net.ErrClosed
	}
	c, err := e.sock.NetConn()
	e.sock = nil
	if err != nil {
		return nil, err
	}
	if !e.rd.IsZero() {
		c.SetReadDeadline(e.rd)
	}
	if !e.wd.IsZero() {
		c.SetWriteDeadline(e.wd)
	}
	e.conn = c
	return c, nil
}

// settled returns the connection in Go's poller for the loop to use from
// here on (its Socket turned into one if need be), or e itself while bytes
// read on the parker are still unread.
func (e *evConn) settled() (net.Conn, error) {
	if len(e.pre) > 0 {
		return e, nil
	}
	return e.wait()
}

// take gives the Socket to the evented TLS flow (nil when e is a
// connection in Go's poller by now, which it returns, or bytes read on the
// parker are still unread).
func (e *evConn) take() (*tunnel.Socket, net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pre) > 0 {
		return nil, nil
	}
	sock := e.sock
	e.sock = nil
	return sock, e.conn
}

func (e *evConn) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	if e.conn != nil {
		return e.conn.Close()
	}
	if e.sock != nil {
		err := e.sock.Close()
		e.sock = nil
		return err
	}
	return nil
}

// SetLinger as (*net.TCPConn).SetLinger (resetOnClose).
func (e *evConn) SetLinger(sec int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if tc, ok := e.conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	if e.sock == nil {
		return net.ErrClosed
	}
	rc, _ := e.sock.SyscallConn()
	var serr error
	if err := rc.Control(func(fd uintptr) {
		l := unix.Linger{Onoff: 1, Linger: int32(sec)}
		if sec < 0 {
			l = unix.Linger{}
		}
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &l)
	}); err != nil {
		return err
	}
	return serr
}

func (e *evConn) LocalAddr() net.Addr  { return e.local }
func (e *evConn) RemoteAddr() net.Addr { return e.remote }

func (e *evConn) SetDeadline(t time.Time) error {
	e.SetReadDeadline(t)
	return e.SetWriteDeadline(t)
}

func (e *evConn) SetReadDeadline(t time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rd = t
	if e.conn != nil {
		return e.conn.SetReadDeadline(t)
	}
	return nil
}

func (e *evConn) SetWriteDeadline(t time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wd = t
	if e.conn != nil {
		return e.conn.SetWriteDeadline(t)
	}
	return nil
}

// settle makes cn's connection one in Go's poller, for everything but a
// CONNECT (a body, a response of any size, an upgrade's tunnel that parks):
// false when the connection is gone.
func (cn *conn) settle() bool {
	e, ok := cn.c.(*evConn)
	if !ok {
		return true
	}
	c, err := e.settled()
	if err != nil {
		return false
	}
	cn.c, cn.lr.c = c, c
	return true
}

// eventedSocket takes a CONNECT's client connection out of Go's poller for
// the evented TLS flow (internal/tlsproxy ServeEvented, on the tunnel
// package's event loops): an evConn's Socket as it is; a TCP connection's
// descriptor duplicated as a tunnel.Socket, the connection closed (the
// socket stays open). nil (c untouched) when c is not a plain TCP
// connection (the TLS proxy listener's) or the loops cannot run.
func eventedSocket(c net.Conn) net.Conn {
	if e, ok := c.(*evConn); ok {
		sock, conn := e.take()
		if sock != nil {
			return sock
		}
		if conn == nil {
			return nil
		}
		c = conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok || !tunnel.CanWatch() {
		return nil
	}
	s, err := tunnel.SocketOf(tc)
	if err != nil {
		return nil
	}
	return s
}
