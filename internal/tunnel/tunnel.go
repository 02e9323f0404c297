// Package tunnel owns the copying of bytes between a client and its
// destination once a tunnel is allowed: both directions, half-close
// propagated, closed when idle, counted, and the socket options that bound
// what a tunnel holds in the kernel (sockopt_linux.go).
//
// Between two *net.TCPConn the kernel moves the bytes (io.Copy →
// TCPConn.ReadFrom → splice(2) on Linux): no user-space buffer per direction.
// A way (direction) that has nothing to read for ParkAfter gives its
// goroutine (and the splice pipe it holds) back and is parked: its source
// waits in one shared epoll set (park_linux.go), and the first byte starts
// its copy again. Each way parks on its own, so a way blocked in a write
// (its peer stopped reading) never stops the other. A tunnel with both ways
// parked costs a few hundred bytes, which is what lets one process hold tens
// of thousands of idle tunnels.
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
	"time"
)

// ErrIdle ends a tunnel in which no byte moved either way for the idle timeout.
var ErrIdle = errors.New("tunnel idle")

// DefaultParkAfter is how long a tunnel must be quiet before it is parked.
// Short, so that tunnels opened in a burst don't all hold goroutines at once;
// a park and a wake cost a few system calls.
const DefaultParkAfter = 250 * time.Millisecond

// Counter receives byte counts as they are known: upload is client → destination.
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
	OnDone    func(Result)  // called once, after both connections are closed
	OnPanic   func(any)     // a panic in the tunnel's goroutines (a bug): recovered, reported here
}

type halfCloser interface{ CloseWrite() error }

// direction is one way of a tunnel. At any time it is running (one
// goroutine copies it), parked (its source waits in the parker), done (its
// source reached EOF), or the tunnel is closed.
type direction struct {
	dst, src net.Conn
	upload   bool
	index    int // in Pipe.dirs
	n        atomic.Int64
	running  bool // guarded by Pipe.mu
	parked   bool // guarded by Pipe.mu
	done     bool // guarded by Pipe.mu
}

// Pipe is a running tunnel.
type Pipe struct {
	client, server net.Conn
	opt            Options
	dirs           [2]*direction // 0: upload (client → server), 1: download
	lastActive     atomic.Int64  // unix nanos of the last byte a copy reported either way

	// The idle watchdog's state: touched only by its timer's callback, which
	// never runs twice at once (it re-arms itself last).
	kMoved   uint64 // the kernel's byte counters (moved) at kMovedAt
	kMovedAt int64  // unix nanos when kMoved was last seen to change
	kOK      bool   // kMoved has been read

	mu       sync.Mutex
	watch    *time.Timer // the idle watchdog; nil without an idle timeout
	running  int         // ways with a goroutine
	parkID   uint64      // in the parker's table when non-zero
	parked   bool        // counted in Parked(): no goroutine, every open way parked
	closed   bool
	finished bool
	err      error
	doneCh   chan struct{}
}

// parkedTunnels counts the tunnels that hold no goroutine (Parked).
var parkedTunnels atomic.Int64

// Parked returns how many tunnels are parked now: no goroutine, every way
// that is still open waiting in the parker.
func Parked() int { return int(parkedTunnels.Load()) }

// Start copies client ↔ server in the background until both directions have
// ended, one fails, no byte moved either way for opt.Idle, or Close is
// called. It sets the tunnel's socket options on both connections (see
// notsentLowat, rcvbufCap). Both connections are closed before opt.OnDone is
// called.
func Start(client, server net.Conn, opt Options) *Pipe {
	if opt.ParkAfter == 0 {
		opt.ParkAfter = DefaultParkAfter
	}
	if opt.ParkAfter > 0 && !canPark(client, server) {
		opt.ParkAfter = -1
	}
	if opt.ParkAfter > 0 && opt.Idle > 0 && opt.Idle < 2*opt.ParkAfter {
		opt.ParkAfter = opt.Idle / 2
	}
	tune(client, opt.Idle)
	tune(server, opt.Idle)
	p := &Pipe{client: client, server: server, opt: opt, doneCh: make(chan struct{})}
	p.dirs[0] = &direction{dst: server, src: client, upload: true, index: 0}
	p.dirs[1] = &direction{dst: client, src: server, index: 1}
	now := time.Now().UnixNano()
	p.lastActive.Store(now)
	p.mu.Lock()
	if opt.Idle > 0 {
		// The kernel's counters are first read at the first look (a tunnel
		// quiet from the start closes a quarter of Idle late, not early).
		p.kMovedAt = now
		p.watch = time.AfterFunc(p.watchEvery(), p.checkIdle)
	}
	for _, d := range p.dirs {
		p.startLocked(d)
	}
	p.mu.Unlock()
	return p
}

// Pipe copies client ↔ server until the tunnel ends (see Start) and returns
// how. It closes both connections.
func Run(client, server net.Conn, idle time.Duration, c Counter) Result {
	var res Result
	p := Start(client, server, Options{Idle: idle, Counter: c, OnDone: func(r Result) { res = r }})
	<-p.doneCh
	return res
}

// Done is closed when the tunnel has ended and OnDone has returned.
func (p *Pipe) Done() <-chan struct{} { return p.doneCh }

// Close ends the tunnel now (reload enforcement, shutdown). Safe to call more
// than once and after the tunnel ended.
func (p *Pipe) Close() {
	p.fail(ErrClosed)
}

func (p *Pipe) startLocked(d *direction) {
	d.running = true
	p.running++
	p.setParkedLocked(false)
	if d.upload {
		go copyUpload(p, d)
	} else {
		go copyDownload(p, d)
	}
}

// Named functions so that stack dumps say which way a tunnel is busy.
func copyUpload(p *Pipe, d *direction) {
	defer p.recoverCopy(d)
	p.run(d)
}

func copyDownload(p *Pipe, d *direction) {
	defer p.recoverCopy(d)
	p.run(d)
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
	p.fail(fmt.Errorf("tunnel: panic: %v", v))
	p.mu.Lock()
	p.stopLocked(d)
	p.mu.Unlock()
}

func (p *Pipe) other(d *direction) *direction {
	return p.dirs[1-d.index]
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

func (p *Pipe) run(d *direction) {
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
		if k > 0 {
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
		switch {
		case err == nil: // EOF from src: pass the half-close on
			if hc, ok := d.dst.(halfCloser); ok {
				hc.CloseWrite()
			} else {
				d.dst.Close()
			}
			p.mu.Lock()
			d.done = true
			p.stopLocked(d)
			p.mu.Unlock()
			return
		case !errors.Is(err, os.ErrDeadlineExceeded):
			p.fail(err)
			p.mu.Lock()
			p.stopLocked(d)
			p.mu.Unlock()
			return
		}
		// A wake-up: the deadline passed.
		p.mu.Lock()
		if p.closed {
			p.stopLocked(d)
			p.mu.Unlock()
			return
		}
		if k > 0 || p.opt.ParkAfter <= 0 || time.Duration(now-p.lastActive.Load()) < p.opt.ParkAfter {
			p.mu.Unlock()
			continue
		}
		// Quiet long enough: park this way (its source is watched from now
		// on, whatever the other way does), and have the other way look up
		// now, so that it parks too if it is quiet. A way blocked in a write
		// does not see the nudge and needs not: it is not waiting for this one.
		if err := parkLocked(p, d); err != nil {
			p.mu.Unlock() // could not park: keep copying
			continue
		}
		if o := p.other(d); o.running {
			o.src.SetReadDeadline(time.Now())
		}
		p.stopLocked(d)
		p.mu.Unlock()
		return
	}
}

// stopLocked records that d's goroutine ends, and finishes the tunnel, or
// counts it as parked, when it was the last one.
func (p *Pipe) stopLocked(d *direction) {
	if !d.running {
		return
	}
	d.running = false
	p.running--
	if p.running > 0 {
		return
	}
	switch {
	case p.closed:
		p.finishLocked()
	case p.dirs[0].done && p.dirs[1].done:
		p.closeConnsLocked(nil)
		p.finishLocked()
	default:
		// Every way that is still open is parked (a way stops only at EOF,
		// on an error that closes the tunnel, or parked).
		p.setParkedLocked(true)
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
// closed): its copy starts again.
func (p *Pipe) unpark(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.dirs[i]
	if !d.parked || p.closed {
		return
	}
	unparkLocked(p, d)
	p.startLocked(d)
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
	if sum, ok := moved(p.client, p.server); ok {
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
	if p.running == 0 {
		p.finishLocked()
	}
}

// closeConnsLocked closes both connections, which also ends a copy blocked
// in a read or a write.
func (p *Pipe) closeConnsLocked(err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.err = err
	for _, d := range p.dirs {
		unparkLocked(p, d)
	}
	if errors.Is(err, ErrIdle) {
		// Bytes still queued for a peer that took none for the idle timeout
		// are dropped with a reset, not kept by the kernel after the close.
		abortIfQueued(p.client)
		abortIfQueued(p.server)
	}
	p.client.Close()
	p.server.Close()
}

func (p *Pipe) finishLocked() {
	if p.finished {
		return
	}
	p.finished = true
	if p.watch != nil {
		p.watch.Stop()
	}
	p.setParkedLocked(false)
	forget(p)
	res := Result{Upload: p.dirs[0].n.Load(), Download: p.dirs[1].n.Load()}
	if p.err != nil && !errors.Is(p.err, net.ErrClosed) && !errors.Is(p.err, io.EOF) {
		res.Err = p.err
	}
	if done := p.opt.OnDone; done != nil {
		// Outside the lock: OnDone may take its time (write an event).
		go func() {
			defer close(p.doneCh)
			defer func() {
				if v := recover(); v != nil && p.opt.OnPanic != nil {
					p.opt.OnPanic(v)
				}
			}()
			done(res)
		}()
		return
	}
	close(p.doneCh)
}
