// Package tunnel owns the copying of bytes between a client and its
// destination once a tunnel is allowed: both directions, half-close
// propagated, closed when idle, counted, and the socket options that bound
// what a tunnel holds in the kernel (sockopt_linux.go).
//
// A tunnel of two TCP connections starts relayed (relay_linux.go): its
// sockets are kept as bare descriptors and one of the process's parkers
// (an epoll loop per P, park_linux.go) copies both ways with read(2) and
// write(2) through the parker's buffer. No goroutine is made or woken per
// tunnel; a short tunnel (a handshake, a request, an answer) ends there. A
// way goes back to a goroutine of its own when its destination does not
// take a whole read (the goroutine writes the rest and blocks in its
// writes) or when it turns bulk.
//
// On a goroutine, each way (direction) is copied inline first: its first
// bulkAfter bytes with read(2)/write(2) through a pooled buffer that is
// held only while bytes are being copied (inline_linux.go). A way that
// passes bulkAfter is copied by the kernel from then on (io.Copy →
// TCPConn.ReadFrom → splice(2) on Linux): no user-space buffer. A way that
// has nothing to read for ParkAfter gives its goroutine (and the splice
// pipe it may hold) back and is parked: its source waits in its parker's
// epoll set, and the first byte starts its copy again. Each way parks on
// its own, so a way blocked in a write (its peer stopped reading) never
// stops the other. A tunnel with both ways parked also gives back its two
// net.TCPConns: it keeps the sockets as bare descriptors (detach_linux.go)
// and is relayed again. It costs a few hundred bytes, which is what lets
// one process hold tens of thousands of idle tunnels. Connections that are
// not TCP (tests' in-memory pipes, TLS) and other systems than Linux keep
// the goroutines throughout.
//
// The parkers also serve flows before they are tunnels (socket_linux.go:
// a Socket is a bare non-blocking descriptor, a Watcher delivers its
// events) and the accept of the listeners that run on them
// (accept_linux.go: Accept takes a listening socket out of Go's poller and
// accepts straight into Sockets).
//
// The idle timeout is a per-tunnel watchdog, not the copies: a copy blocked
// in a write cannot look up, and a write deadline cannot be used to make it
// (splice drops the bytes in its pipe when a write fails). The watchdog sees
// bytes move in the kernel's counters too, and closes the tunnel, which ends
// a blocked write, only when none moved either way for the idle timeout.
package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrIdle ends a tunnel in which no byte moved either way for the idle timeout.
var ErrIdle = errors.New("tunnel idle")

// DefaultParkAfter is how long a tunnel must be quiet before it is parked.
// Short, so that tunnels opened in a burst don't all hold goroutines at once;
// a park and a wake cost a few system calls.
const DefaultParkAfter = 250 * time.Millisecond

// Counter receives byte counts as they are known: upload is client → destination.
// Add may be called on a parker's goroutine, which relays many tunnels: it
// must not block.
type Counter interface {
	Add(upload, download int64)
}

// Result says how a tunnel ended.
type Result struct {
	Upload   int64 // client → destination
	Download int64 // destination → client
	Err      error // nil for a clean close by both sides; ErrIdle; the first I/O error; or ErrClosed
}

// ErrClosed: the tunnel was closed by its owner (Close).
var ErrClosed = errors.New("tunnel closed")

// Options tune a tunnel.
type Options struct {
	Idle      time.Duration // close after this long without a byte either way (0: never)
	ParkAfter time.Duration // park after this long quiet (0: DefaultParkAfter; < 0: never park)
	Counter   Counter       // may be nil
	OnDone    func(Result)  // called once, after both connections are closed; on a parker's goroutine when the tunnel ended relayed, so it must not block
	OnPanic   func(any)     // a panic in the tunnel's goroutines (a bug): recovered, reported here
}

type halfCloser interface{ CloseWrite() error }

// direction is one way of a tunnel. At any time it is running (one
// goroutine copies it), parked (its source waits in the parker), done (its
// source reached EOF), or the tunnel is closed.
type direction struct {
	// dst and src are nil while the tunnel is detached; rc is then src's
	// bare descriptor (Pipe.raw). Changed only under Pipe.mu with no way
	// running: a way's goroutine reads them without the lock.
	dst, src net.Conn
	rc       syscall.RawConn // src's descriptor; nil when src is not a socket
	n        atomic.Int64
	// pending: bytes the parker read but the destination did not take
	// (relay_linux.go); the way's goroutine writes them first. Set under
	// Pipe.mu before that goroutine starts.
	pending []byte
	// The one-byte fields together, after the 8-byte ones: no padding.
	upload  bool
	index   uint8 // in Pipe.dirs
	running bool  // guarded by Pipe.mu
	parked  bool  // guarded by Pipe.mu
	done    bool  // guarded by Pipe.mu
	bulk    bool  // copied with splice from now on; only the way's goroutine touches it
}

// Pipe is a running tunnel.
type Pipe struct {
	client, server net.Conn // nil while detached
	opt            Options
	dirs           [2]direction // 0: upload (client → server), 1: download
	lastActive     atomic.Int64 // unix nanos of the last byte a copy reported either way

	// The idle watchdog's state: touched only by its timer's callback, which
	// never runs twice at once (it re-arms itself last).
	kMoved   uint64 // the kernel's byte counters (moved) at kMovedAt
	kMovedAt int64  // unix nanos when kMoved was last seen to change
	kOK      bool   // kMoved has been read
	looked   bool   // the first look happened (tuneLate)

	mu      sync.Mutex
	watch   *time.Timer // the idle watchdog; nil without an idle timeout
	running int         // ways with a goroutine
	parkID  uint64      // in the parker's table when non-zero
	err     error
	// doneCh is made by Done, only when asked for (most tunnels never are):
	// a parked tunnel holds no channel. delivered: deliver has run.
	doneCh chan struct{}
	// raw holds the sockets (client, server) as bare descriptors while
	// detached: the tunnel gave its net.Conns back until a way wakes
	// (detach_linux.go). The descriptors are the tunnel's, made and closed
	// under mu, each once: given to the new connections by a wake, or
	// closed by closeConnsLocked.
	raw [2]rawSock
	// attachedAt: unix nanos of the last wake of the detached sockets (0:
	// none); a tunnel that parks soon after one keeps its connections
	// (redetachAfter).
	attachedAt int64
	// The one-byte fields together.
	parked    bool // counted in Parked(): no goroutine, every open way parked
	detached  bool // the sockets are raw's
	closed    bool
	finished  bool
	delivered bool
}

// closedCh is what Done returns once a tunnel whose Done was never asked for
// has ended.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// parkedTunnels counts the tunnels that hold no goroutine (Parked).
var parkedTunnels atomic.Int64

// Parked returns how many tunnels are parked now: no goroutine, every way
// that is still open waiting in the parker.
func Parked() int { return int(parkedTunnels.Load()) }

// Start copies client ↔ server in the background until both directions have
// ended, one fails, no byte moved either way for opt.Idle, or Close is
// called. It sets the tunnel's socket options on both connections as they
// start to matter (see sockopt.go; the client's SO_RCVBUF comes from its
// listener, ListenControl). Both connections are closed before opt.OnDone is
// called.
func Start(client, server net.Conn, opt Options) *Pipe {
	p := New(client, server, opt)
	if began, relayed := p.begin(); began {
		if !relayed {
			p.startLocked(&p.dirs[0])
		}
		p.mu.Unlock()
	}
	return p
}

// Serve runs a tunnel made by New as Start would. A relayed tunnel
// (relay_linux.go) needs no goroutine of the caller's: Serve returns at
// once. Otherwise it copies the upload way (client → destination) on the
// caller's goroutine, so a tunnel takes one goroutine more than its
// connection's, not two, and returns when that way stops (the client's EOF,
// an error, parked when quiet, or the tunnel closed); the tunnel goes on
// without it, and a parked upload way wakes on a goroutine of its own.
// Called once, instead of Start.
func (p *Pipe) Serve() {
	began, relayed := p.begin()
	if !began {
		return
	}
	if relayed {
		p.mu.Unlock()
		return
	}
	d := &p.dirs[0]
	d.running = true
	p.running++
	p.mu.Unlock()
	copyUpload(p, d, false)
}

// begin arms the idle watchdog and starts the tunnel relayed by its parker
// (relay_linux.go: relayed true, both ways), or else starts the download
// way on a goroutine. It returns with p.mu held, began true, or began false
// (without the lock) when the tunnel was closed before it began.
func (p *Pipe) begin() (began, relayed bool) {
	p.mu.Lock()
	if p.closed || p.finished {
		p.mu.Unlock()
		return false, false
	}
	if p.opt.Idle > 0 {
		// The kernel's counters are first read at the first look (a tunnel
		// quiet from the start closes a quarter of Idle late, not early).
		p.kMovedAt = time.Now().UnixNano()
		p.watch = time.AfterFunc(p.watchEvery(), p.checkIdle)
	}
	if startDetachedLocked(p) {
		return true, true
	}
	p.startLocked(&p.dirs[1])
	return true, false
}

// New makes a tunnel between client and server and sets its socket options;
// nothing is copied until Serve (or use Start). Close may be called from
// here on: a tunnel closed before Serve ends without copying a byte.
//
// The tunnel owns client and server from here on: the caller must not use
// them (nor keep them, if it wants the memory back). When both are
// *net.TCPConn and both ways park, the tunnel closes these two connections
// and keeps their sockets as bare descriptors; the sockets stay open (no
// FIN is sent) and are connections again when a way wakes. Close the
// tunnel (Close), not the connections.
func New(client, server net.Conn, opt Options) *Pipe {
	if opt.ParkAfter == 0 {
		opt.ParkAfter = DefaultParkAfter
	}
	if opt.ParkAfter > 0 && !canPark(client, server) {
		opt.ParkAfter = -1
	}
	if opt.ParkAfter > 0 && opt.Idle > 0 && opt.Idle < 2*opt.ParkAfter {
		opt.ParkAfter = opt.Idle / 2
	}
	p := &Pipe{client: client, server: server, opt: opt, raw: [2]rawSock{{-1}, {-1}}}
	// One RawConn per socket for the tunnel's life (socket options, the
	// inline reads, the parker, the watchdog's counters).
	crc, src := rawConn(client), rawConn(server)
	p.dirs[0] = direction{dst: server, src: client, rc: crc, upload: true, index: 0}
	p.dirs[1] = direction{dst: client, src: server, rc: src, index: 1}
	tune(crc, false, opt.Idle) // its SO_RCVBUF is its listener's (ListenControl)
	tune(src, true, opt.Idle)
	p.lastActive.Store(time.Now().UnixNano())
	return p
}

// rawConn returns c's RawConn, nil when c is not a socket.
func rawConn(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// Pipe copies client ↔ server until the tunnel ends (see Start) and returns
// how. It closes both connections.
func Run(client, server net.Conn, idle time.Duration, c Counter) Result {
	var res Result
	p := Start(client, server, Options{Idle: idle, Counter: c, OnDone: func(r Result) { res = r }})
	<-p.Done()
	return res
}

// Done is closed when the tunnel has ended and OnDone has returned.
func (p *Pipe) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.doneCh == nil {
		if p.delivered {
			return closedCh
		}
		p.doneCh = make(chan struct{})
	}
	return p.doneCh
}

// Close ends the tunnel now (reload enforcement, shutdown). Safe to call more
// than once and after the tunnel ended.
func (p *Pipe) Close() {
	p.fail(ErrClosed)
}

func (p *Pipe) startLocked(d *direction) {
	d.running = true
	p.running++
	p.setParkedLocked(false)
	// A way woken while the tunnel is detached makes the connections
	// again on its own goroutine (attach), not on the parker's.
	attach := p.detached
	if d.upload {
		go copyUpload(p, d, attach)
	} else {
		go copyDownload(p, d, attach)
	}
}

// Named functions so that stack dumps say which way a tunnel is busy.
func copyUpload(p *Pipe, d *direction, attach bool) {
	defer p.recoverCopy(d)
	if !attach || p.attach(d) {
		p.run(d)
	}
}

func copyDownload(p *Pipe, d *direction, attach bool) {
	defer p.recoverCopy(d)
	if !attach || p.attach(d) {
		p.run(d)
	}
}

// attach makes the connections of a detached tunnel again before d's copy
// runs (detach_linux.go); false when d must not run: the tunnel was closed
// meanwhile, or its connections could not be made (then it is closed).
// Another way woken at the same time may have done it already.
func (p *Pipe) attach(d *direction) bool {
	p.mu.Lock()
	if !p.closed && p.detached {
		if err := attachLocked(p); err != nil {
			p.closeConnsLocked(err)
		}
	}
	if !p.closed {
		p.mu.Unlock()
		return true
	}
	deliver := p.stopLocked(d)
	p.mu.Unlock()
	if deliver {
		p.deliver()
	}
	return false
}

// recoverCopy ends the tunnel, not the process, when its copy panics (a bug):
// the panic goes to Options.OnPanic and the tunnel fails with it.
func (p *Pipe) recoverCopy(d *direction) {
	v := recover()
	if v == nil {
		return
	}
	if h := p.opt.OnPanic; h != nil {
		h(v)
	}
	if p.failWay(d, fmt.Errorf("tunnel: panic: %v", v)) {
		p.deliver()
	}
}

func (p *Pipe) other(d *direction) *direction {
	return &p.dirs[1-int(d.index)]
}

// wake is how often a copy looks up from a quiet socket: to park, or (when
// it cannot park) to report its bytes to the watchdog. A copy blocked in a
// write does not look up; that is the watchdog's business.
func (p *Pipe) wake() time.Duration {
	if p.opt.ParkAfter > 0 {
		return p.opt.ParkAfter
	}
	return p.opt.Idle / 2
}

// run copies one way until it ends, fails or parks: inline first, then, if
// the way turned out to carry bulk, with splice.
func (p *Pipe) run(d *direction) {
	if b := d.pending; b != nil {
		// What the parker read and the destination did not take yet.
		d.pending = nil
		w, err := d.dst.Write(b)
		p.moved(d, int64(w), time.Now().UnixNano())
		if err != nil {
			if p.failWay(d, err) {
				p.deliver()
			}
			return
		}
	}
	if !d.bulk {
		if stop, deliver := p.runInline(d); stop {
			if deliver {
				p.deliver()
			}
			return
		}
		d.bulk = true
		tuneBulk(p.other(d).rc) // the socket d writes to
	}
	if p.runSplice(d) {
		p.deliver()
	}
}

// Inline copying: the first bulkAfter bytes of a way are copied with plain
// read(2) and write(2) through a pooled buffer, on the way's goroutine. A
// short tunnel (a handshake, a request, an answer: a few kilobytes each way)
// never needs more, and so never takes a splice pipe pair (the system calls
// per chunk are the same: read, write and the EAGAIN read before a wait,
// against two splices and the EAGAIN splice). A way that passes bulkAfter
// bytes switches to splice for the rest of its life (no user-space copy).
// A buffer is held by a write blocked on a peer that does not read: one
// per way at most, until the peer reads or the tunnel closes.
const (
	bulkAfter  = 128 << 10
	inlineSize = 16 << 10 // one TLS record (16 KiB of plaintext) in one read
)

// inlineBufs holds the inline buffers: one is held only while bytes are
// being copied (inlineReader), never while a way waits or is parked.
var inlineBufs = sync.Pool{New: func() any { return new([inlineSize]byte) }}

// runInline copies d inline until it passes bulkAfter bytes (stop false:
// continue with splice) or stops (stop true: EOF, error, parked or closed).
// deliver: the caller must call p.deliver (the tunnel finished with it).
func (p *Pipe) runInline(d *direction) (stop, deliver bool) {
	// The reader lives while the way runs: a parked way holds none.
	r := new(inlineReader)
	r.init(d.src, d.rc)
	wake := p.wake()
	armed := false
	for d.n.Load() < bulkAfter {
		// The read deadline is how the way looks up from a quiet socket; it
		// is set again only after it passed, not before every read.
		if wake > 0 && !armed {
			d.src.SetReadDeadline(time.Now().Add(wake))
			armed = true
		}
		buf, n, rerr := r.read()
		if n > 0 {
			// No write deadline, as with splice: only closing the tunnel
			// ends a blocked write.
			w, werr := d.dst.Write(buf[:n])
			inlineBufs.Put(buf)
			p.moved(d, int64(w), time.Now().UnixNano())
			if werr != nil {
				return true, p.failWay(d, werr)
			}
			continue
		}
		switch {
		case rerr == io.EOF:
			return true, p.eof(d)
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			armed = false
			if stop, deliver := p.lookUp(d, false, time.Now().UnixNano()); stop {
				return true, deliver
			}
		default:
			return true, p.failWay(d, rerr)
		}
	}
	return false, false
}

// readPlain reads src into a buffer from inlineBufs (a source that is not a
// socket: the buffer is held while the read waits).
func readPlain(src net.Conn) (*[inlineSize]byte, int, error) {
	buf := inlineBufs.Get().(*[inlineSize]byte)
	n, err := src.Read(buf[:])
	if n > 0 {
		return buf, n, nil // an error with bytes comes again at the next read
	}
	inlineBufs.Put(buf)
	if err == nil {
		err = io.ErrNoProgress
	}
	return nil, 0, err
}

// runSplice copies d with splice(2) until it ends, fails, parks or the
// tunnel closes; true when the caller must call p.deliver.
func (p *Pipe) runSplice(d *direction) bool {
	wake := p.wake()
	for {
		if wake > 0 {
			d.src.SetReadDeadline(time.Now().Add(wake))
		}
		// splice(2) between two TCP sockets: the bytes never enter user space.
		// No write deadline: a failed splice write drops the bytes in its
		// pipe, so only closing the tunnel ends a blocked write.
		k, err := io.Copy(d.dst, d.src)
		now := time.Now().UnixNano()
		p.moved(d, k, now)
		switch {
		case err == nil: // EOF from src
			return p.eof(d)
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return p.failWay(d, err)
		}
		if stop, deliver := p.lookUp(d, k > 0, now); stop {
			return deliver
		}
	}
}

// moved accounts k bytes copied on d at now.
func (p *Pipe) moved(d *direction, k int64, now int64) {
	if k <= 0 {
		return
	}
	d.n.Add(k)
	p.lastActive.Store(now)
	if c := p.opt.Counter; c != nil {
		if d.upload {
			c.Add(k, 0)
		} else {
			c.Add(0, k)
		}
	}
}

// eof ends d after EOF from its source: the half-close is passed on, unless
// the other way has ended too (then both connections are closed at once,
// and a close sends the FIN that a shutdown would). True: call p.deliver.
func (p *Pipe) eof(d *direction) bool {
	p.mu.Lock()
	skip := p.other(d).done || p.closed
	p.mu.Unlock()
	if !skip {
		if hc, ok := d.dst.(halfCloser); ok {
			hc.CloseWrite()
		} else {
			d.dst.Close()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d.done = true
	return p.stopLocked(d)
}

// failWay ends the tunnel with err, seen by d's copy. True: call p.deliver.
func (p *Pipe) failWay(d *direction, err error) bool {
	p.fail(err)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked(d)
}

// lookUp decides, when d's read deadline passed, whether d goes on copying
// (stop false) or stops: the tunnel is closed, or d was quiet long enough and
// is parked. active: d moved bytes since it last looked up. deliver: call
// p.deliver.
func (p *Pipe) lookUp(d *direction, active bool, now int64) (stop, deliver bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return true, p.stopLocked(d)
	}
	if active || p.opt.ParkAfter <= 0 || time.Duration(now-p.lastActive.Load()) < p.opt.ParkAfter {
		return false, false
	}
	// Quiet long enough: park this way (its source is watched from now
	// on, whatever the other way does), and have the other way look up
	// now, so that it parks too if it is quiet. A way blocked in a write
	// does not see the nudge and needs not: it is not waiting for this one.
	if err := parkLocked(p, d); err != nil {
		return false, false // could not park: keep copying
	}
	if o := p.other(d); o.running {
		o.src.SetReadDeadline(time.Now())
	}
	return true, p.stopLocked(d)
}

// stopLocked records that d's goroutine ends, and finishes the tunnel, or
// counts it as parked, when it was the last one. True: the tunnel finished,
// and d's goroutine must call p.deliver once it released p.mu.
func (p *Pipe) stopLocked(d *direction) bool {
	if !d.running {
		return false
	}
	d.running = false
	p.running--
	if p.running > 0 {
		return false
	}
	switch {
	case p.closed:
		return p.finishLocked()
	case p.dirs[0].done && p.dirs[1].done:
		p.closeConnsLocked(nil)
		return p.finishLocked()
	default:
		// Every way that is still open is parked (a way stops only at EOF,
		// on an error that closes the tunnel, or parked): the connections
		// can go, the sockets stay as descriptors.
		p.setParkedLocked(true)
		detachLocked(p, false)
		return false
	}
}

func (p *Pipe) setParkedLocked(v bool) {
	if p.parked == v {
		return
	}
	p.parked = v
	if v {
		parkedTunnels.Add(1)
	} else {
		parkedTunnels.Add(-1)
	}
}

// unpark is called by the parker when way i's parked source is readable (or
// closed): a detached tunnel's parker copies it (relay_linux.go, with the
// parker's buf; drain: the event said the source is closed); otherwise its
// copy starts again on a goroutine. True: the tunnel finished, deliver.
func (p *Pipe) unpark(i int, buf *[inlineSize]byte, drain bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &p.dirs[i]
	if !d.parked || p.closed {
		return false
	}
	if p.detached && p.running == 0 {
		return p.relayLocked(d, buf, drain)
	}
	unparkLocked(p, d)
	p.startLocked(d)
	return false
}

// watchEvery is how often the idle watchdog looks: a quarter of the idle
// timeout, so a tunnel closes between Idle and 1.25 × Idle after its last
// byte moved.
func (p *Pipe) watchEvery() time.Duration {
	return max(p.opt.Idle/4, time.Millisecond)
}

// checkIdle is the idle watchdog: it closes the tunnel when no byte moved
// either way for opt.Idle, whether its ways are parked, waiting to read, or
// blocked in a write. A blocked copy reports nothing until its write ends,
// so the kernel's byte counters (acknowledged by a peer, received from one)
// count too: a slow reader that takes a byte now and then keeps its tunnel.
func (p *Pipe) checkIdle() {
	now := time.Now().UnixNano()
	// The sockets are read under p.mu: a park or a wake may change them.
	p.mu.Lock()
	if p.finished || p.closed {
		p.mu.Unlock()
		return
	}
	if !p.looked {
		p.looked = true
		tuneLate(p.dirs[0].rc, p.opt.Idle)
		tuneLate(p.dirs[1].rc, p.opt.Idle)
	}
	sum, ok := moved(p.dirs[0].rc, p.dirs[1].rc)
	if p.parked && !p.detached {
		detachLocked(p, true) // parked again too soon after a wake to detach then
	}
	p.mu.Unlock()
	if ok {
		if !p.kOK || sum != p.kMoved {
			p.kMoved, p.kMovedAt = sum, now
		}
		p.kOK = true
	}
	quiet := max(p.lastActive.Load(), p.kMovedAt)
	if time.Duration(now-quiet) >= p.opt.Idle {
		p.fail(ErrIdle)
		return
	}
	p.mu.Lock()
	if !p.finished && !p.closed {
		p.watch.Reset(p.watchEvery())
	}
	p.mu.Unlock()
}

// fail closes both connections with err as the result (the first error wins),
// and finishes the tunnel if no goroutine is running.
func (p *Pipe) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.closeConnsLocked(err)
	if p.running == 0 && p.finishLocked() {
		// No copy runs to deliver the result (the tunnel was parked): not
		// on the caller, which may be closing many tunnels (a reload).
		go p.deliver()
	}
}

// closeConnsLocked closes both connections, which also ends a copy blocked
// in a read or a write; or, detached, both descriptors.
func (p *Pipe) closeConnsLocked(err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.err = err
	for i := range p.dirs {
		unparkLocked(p, &p.dirs[i])
	}
	if errors.Is(err, ErrIdle) {
		// Bytes still queued for a peer that took none for the idle timeout
		// are dropped with a reset, not kept by the kernel after the close.
		abortIfQueued(p.dirs[0].rc)
		abortIfQueued(p.dirs[1].rc)
	}
	if p.detached {
		closeRawLocked(p)
		return
	}
	p.client.Close()
	p.server.Close()
}

// finishLocked marks the tunnel finished and computes its result; true the
// first time, when the caller must call p.deliver after releasing p.mu (the
// copy that finished it, on its own goroutine: no goroutine more per tunnel).
func (p *Pipe) finishLocked() bool {
	if p.finished {
		return false
	}
	p.finished = true
	if p.watch != nil {
		p.watch.Stop()
	}
	p.setParkedLocked(false)
	forget(p)
	return true
}

// result is how the tunnel ended; final once it finished (no copy runs).
func (p *Pipe) result() Result {
	res := Result{Upload: p.dirs[0].n.Load(), Download: p.dirs[1].n.Load()}
	if p.err != nil && !errors.Is(p.err, net.ErrClosed) && !errors.Is(p.err, io.EOF) {
		res.Err = p.err
	}
	return res
}

// deliver calls OnDone with the result (a panic in it goes to OnPanic) and
// closes Done. Called once, by whoever finishLocked told to, without p.mu.
func (p *Pipe) deliver() {
	defer func() {
		p.mu.Lock()
		p.delivered = true
		ch := p.doneCh
		p.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}()
	done := p.opt.OnDone
	if done == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil && p.opt.OnPanic != nil {
			p.opt.OnPanic(v)
		}
	}()
	done(p.result())
}
