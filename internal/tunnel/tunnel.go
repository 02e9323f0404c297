// Package tunnel owns the copying of bytes between a client and its
// destination once a tunnel is allowed: both directions, half-close
// propagated, closed when idle, counted.
//
// Between two *net.TCPConn the kernel moves the bytes (io.Copy →
// TCPConn.ReadFrom → splice(2) on Linux): no user-space buffer per direction.
// A tunnel that carries nothing for ParkAfter gives its goroutines (and the
// splice pipes they hold) back and is parked: its sockets wait in one shared
// epoll set (park_linux.go), and the first byte either way starts the copy
// again. A parked tunnel costs a few hundred bytes, which is what lets one
// process hold tens of thousands of idle tunnels.
package tunnel

import (
	"errors"
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
}

type halfCloser interface{ CloseWrite() error }

// direction is one half of a tunnel.
type direction struct {
	dst, src  net.Conn
	upload    bool
	n         atomic.Int64
	running   bool  // guarded by Pipe.mu
	done      bool  // src reached EOF (guarded by Pipe.mu)
	idleSince int64 // without parking: unix nanos since this way is quiet (guarded by Pipe.mu)
}

// Pipe is a running tunnel.
type Pipe struct {
	client, server net.Conn
	opt            Options
	dirs           [2]*direction // 0: upload (client → server), 1: download
	lastActive     atomic.Int64  // unix nanos of the last byte either way

	mu       sync.Mutex
	running  int
	parked   bool
	parkID   uint64
	closed   bool
	finished bool
	err      error
	doneCh   chan struct{}
}

// Start copies client ↔ server in the background until both directions have
// ended, one fails, the tunnel is idle for opt.Idle, or Close is called. Both
// connections are closed before opt.OnDone is called.
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
	p := &Pipe{client: client, server: server, opt: opt, doneCh: make(chan struct{})}
	p.dirs[0] = &direction{dst: server, src: client, upload: true}
	p.dirs[1] = &direction{dst: client, src: server}
	p.lastActive.Store(time.Now().UnixNano())
	p.mu.Lock()
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
	if d.upload {
		go copyUpload(p, d)
	} else {
		go copyDownload(p, d)
	}
}

// Named functions so that stack dumps say which way a tunnel is busy.
func copyUpload(p *Pipe, d *direction)   { p.run(d) }
func copyDownload(p *Pipe, d *direction) { p.run(d) }

func (p *Pipe) other(d *direction) *direction {
	if d == p.dirs[0] {
		return p.dirs[1]
	}
	return p.dirs[0]
}

// wake is how often a copy looks up from a quiet socket.
func (p *Pipe) wake() time.Duration {
	w := p.opt.Idle
	if p.opt.ParkAfter > 0 && (w <= 0 || p.opt.ParkAfter < w) {
		w = p.opt.ParkAfter
	}
	return w
}

func (p *Pipe) run(d *direction) {
	wake := p.wake()
	for {
		if wake > 0 {
			d.src.SetReadDeadline(time.Now().Add(wake))
		}
		// splice(2) between two TCP sockets: the bytes never enter user space.
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
			if o := p.other(d); !o.running && !o.done && !p.closed {
				p.startLocked(o) // never leave a way unwatched
			}
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
		o := p.other(d)
		if k > 0 {
			d.idleSince = 0
			// Busy: make sure the other way is watched too.
			if !o.running && !o.done {
				p.startLocked(o)
			}
			p.mu.Unlock()
			continue
		}
		if p.opt.ParkAfter <= 0 {
			// No parking: idle when both ways have been quiet for Idle.
			if d.idleSince == 0 {
				d.idleSince = now
			}
			theirs := o.idleSince
			if o.done && theirs == 0 {
				theirs = d.idleSince
			}
			if p.opt.Idle > 0 && theirs != 0 && now-d.idleSince >= int64(p.opt.Idle)/2 && now-theirs >= int64(p.opt.Idle)/2 {
				p.mu.Unlock()
				p.fail(ErrIdle)
				p.mu.Lock()
				p.stopLocked(d)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			continue
		}
		if time.Duration(now-p.lastActive.Load()) < p.opt.ParkAfter {
			p.mu.Unlock()
			continue
		}
		// Quiet long enough: stop, and have the other way look up now; it
		// restarts this one if it moved bytes, or stops too, and the last one
		// out parks the tunnel. The idle timeout of a parked tunnel is the
		// parker's (a parked tunnel has had no readable byte since).
		if o.running {
			o.src.SetReadDeadline(time.Now())
		}
		p.stopLocked(d)
		p.mu.Unlock()
		return
	}
}

// stopLocked records that d's goroutine ends, and parks or finishes the
// tunnel when it was the last one.
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
		if err := park(p); err != nil {
			// Could not park: keep copying with goroutines.
			p.opt.ParkAfter = -1
			for _, x := range p.dirs {
				if !x.done {
					p.startLocked(x)
				}
			}
		}
	}
}

// unpark is called by the parker when a parked socket is readable (or
// closed): the copies start again.
func (p *Pipe) unpark() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.parked {
		return
	}
	p.parked = false
	unregister(p)
	if p.closed {
		p.finishLocked()
		return
	}
	for _, d := range p.dirs {
		if !d.done {
			p.startLocked(d)
		}
	}
}

// expire is called by the parker for a parked tunnel quiet for opt.Idle.
func (p *Pipe) expire(now time.Time) bool {
	if p.opt.Idle <= 0 || now.UnixNano()-p.lastActive.Load() < int64(p.opt.Idle) {
		return false
	}
	p.fail(ErrIdle)
	return true
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
		if p.parked {
			p.parked = false
			unregister(p)
		}
		p.finishLocked()
	}
}

func (p *Pipe) closeConnsLocked(err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.err = err
	p.client.Close()
	p.server.Close()
}

func (p *Pipe) finishLocked() {
	if p.finished {
		return
	}
	p.finished = true
	res := Result{Upload: p.dirs[0].n.Load(), Download: p.dirs[1].n.Load()}
	if p.err != nil && !errors.Is(p.err, net.ErrClosed) && !errors.Is(p.err, io.EOF) {
		res.Err = p.err
	}
	if done := p.opt.OnDone; done != nil {
		// Outside the lock: OnDone may take its time (write an event).
		go func() {
			done(res)
			close(p.doneCh)
		}()
		return
	}
	close(p.doneCh)
}
