package conntrack

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/egress-proxy/egress/internal/rules"
)

// Conn is one client connection the tracker can close: tracked once, from
// accept to its end, whatever it carries (keep-alive requests, a CONNECT
// tunnel, a transparent flow). A reload closes it while its names are set
// and the new config denies them; a shutdown closes it at the end of the
// grace period (at once if it is idle between requests).
type Conn struct {
	Listener string
	closedBy atomic.Pointer[string] // "config_reload" or "shutdown"
	idle     atomic.Bool            // a keep-alive connection waiting for its next request

	// mu guards what a close closes. Set a few times in a connection's
	// life and read once, at its close; plain fields under a mutex, so
	// that setting them allocates nothing.
	mu sync.Mutex
	// conn is the client connection a close closes until a closer takes
	// over; nil once a tunnel owns the sockets (HandOver), which may keep
	// them as bare descriptors while it is parked.
	conn   net.Conn
	closer Closer
	onSwap Swapper
	// names are what a reload decides again while decided is set (not set:
	// nothing decided now, a pending hello or an idle keep-alive); under
	// mu too, so that setting them allocates nothing.
	names   rules.Names
	decided bool
}

// Swapper is told of every configuration swap (SetOnSwap).
type Swapper interface{ Swapped() }

// Closer closes a tracked connection its owner's way: a tunnel.Pipe, which
// must learn it was closed even while parked, or a flow on the event loops.
// Close must be safe to call from any goroutine, more than once.
type Closer interface{ Close() }

// CloserFunc is a func as a Closer.
type CloserFunc func()

// Close calls f.
func (f CloserFunc) Close() { f() }

// Decided sets the names the connection carries now: from here a reload that
// denies them closes it.
func (t *Conn) Decided(n rules.Names) {
	t.mu.Lock()
	t.names, t.decided = n, true
	t.mu.Unlock()
}

// Undecided clears the names (a keep-alive connection between requests).
func (t *Conn) Undecided() {
	t.mu.Lock()
	t.names, t.decided = rules.Names{}, false
	t.mu.Unlock()
}

// Names returns the names set by Decided, if any.
func (t *Conn) Names() (rules.Names, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.names, t.decided
}

// SetOnSwap makes every configuration swap call s.Swapped (a keep-alive
// connection drops its idle upstream connection: it was dialed under the old
// config). Swapped must be quick and safe to call from any goroutine. nil
// removes it (a connection handed to a tunnel keeps nothing of its request
// loop).
func (t *Conn) SetOnSwap(s Swapper) {
	t.mu.Lock()
	t.onSwap = s
	t.mu.Unlock()
}

// SetCloser makes close call c.Close instead of closing the connection; nil
// restores the default.
func (t *Conn) SetCloser(c Closer) {
	t.mu.Lock()
	t.closer = c
	t.mu.Unlock()
}

// HandOver gives the connection's sockets to a tunnel: close calls
// closer.Close from here on, and the entry no longer holds the connection
// (a parked tunnel gives its net.Conns back and keeps bare descriptors).
func (t *Conn) HandOver(closer Closer) {
	t.mu.Lock()
	t.closer, t.conn = closer, nil
	t.mu.Unlock()
}

// SetConn makes c the connection a close closes, with no closer (a
// connection that waited for its first bytes on the event loops, with a
// closer, and goes on as c on its goroutine).
func (t *Conn) SetConn(c net.Conn) {
	t.mu.Lock()
	t.closer, t.conn = nil, c
	t.mu.Unlock()
}

// Close closes the connection as the engine would, recording why (used when
// a decision made under one config meets a newer one).
func (t *Conn) Close(why string) { t.close(why) }

// SetIdle marks a keep-alive connection as waiting between requests: a
// shutdown closes it at once instead of waiting for the grace period.
func (t *Conn) SetIdle(idle bool) { t.idle.Store(idle) }

// Track registers a client connection from its accept on (conns: the
// connection a close closes, at most one; none for a flow that closes
// itself, SetCloser). Nothing is re-decided on reload until Decided.
func (tr *Tracker) Track(listener string, conns ...net.Conn) *Conn {
	t := &Conn{Listener: listener}
	switch len(conns) {
	case 0:
	case 1:
		t.conn = conns[0]
	default:
		panic("conntrack: Track takes at most one connection")
	}
	tr.mu.Lock()
	tr.open[t] = struct{}{}
	tr.mu.Unlock()
	return t
}

// Untrack removes a tunnel when it ends.
func (tr *Tracker) Untrack(t *Conn) {
	tr.mu.Lock()
	delete(tr.open, t)
	tr.mu.Unlock()
}

// ClosedBy says why the engine closed the tunnel ("" if it did not).
func (t *Conn) ClosedBy() string {
	if s := t.closedBy.Load(); s != nil {
		return *s
	}
	return ""
}

func (t *Conn) close(why string) {
	t.closedBy.CompareAndSwap(nil, &why)
	t.mu.Lock()
	closer, c := t.closer, t.conn
	t.mu.Unlock()
	switch {
	case closer != nil:
		closer.Close()
	case c != nil:
		c.Close()
	}
}

// Reloaded is called once cfg is the active configuration: every connection
// hears of it (SetOnSwap), and with limits.enforce_on_reload the connections
// whose names cfg denies are closed; it returns how many.
func (tr *Tracker) Reloaded(cfg *rules.Config) int {
	tr.swapped()
	if !cfg.Limits.EnforceOnReload {
		return 0
	}
	return tr.enforce(cfg)
}

// swapped tells every tracked connection that the configuration changed.
func (tr *Tracker) swapped() {
	tr.mu.Lock()
	var hooks []Swapper
	for t := range tr.open {
		t.mu.Lock()
		if s := t.onSwap; s != nil {
			hooks = append(hooks, s)
		}
		t.mu.Unlock()
	}
	tr.mu.Unlock()
	for _, s := range hooks {
		s.Swapped()
	}
}

// enforce closes the open tunnels that cfg denies.
func (tr *Tracker) enforce(cfg *rules.Config) int {
	tr.mu.Lock()
	all := make([]*Conn, 0, len(tr.open))
	for t := range tr.open {
		all = append(all, t)
	}
	tr.mu.Unlock()
	// Each Conn's names under its own mutex, not under tr.mu: a close
	// holds the Conn's and may come to the tracker's.
	var victims []*Conn
	for _, t := range all {
		if n, ok := t.Names(); ok && cfg.DecideAll(n).Action == rules.Deny {
			victims = append(victims, t)
		}
	}
	for _, t := range victims {
		t.close(string(rules.ReasonReload))
	}
	if len(victims) > 0 {
		tr.metrics.TunnelsClosedOnReload.Add(float64(len(victims)))
		tr.log.Info("reload closed tunnels the new config denies", "count", len(victims), "config_version", cfg.Version)
	}
	return len(victims)
}

// CloseAll closes every open tunnel (end of the shutdown grace period) and
// returns how many there were.
func (tr *Tracker) CloseAll() int {
	tr.mu.Lock()
	var all []*Conn
	for t := range tr.open {
		all = append(all, t)
	}
	tr.mu.Unlock()
	for _, t := range all {
		t.close("shutdown")
	}
	if len(all) > 0 {
		tr.metrics.ShutdownForced.Add(float64(len(all)))
	}
	return len(all)
}

// CloseIdle closes the keep-alive connections that wait between requests, and
// marks the engine as draining: connections close after their current request.
func (tr *Tracker) CloseIdle() int {
	tr.draining.Store(true)
	tr.mu.Lock()
	var idle []*Conn
	for t := range tr.open {
		if t.idle.Load() {
			idle = append(idle, t)
		}
	}
	tr.mu.Unlock()
	for _, t := range idle {
		t.close("shutdown")
	}
	return len(idle)
}

// Draining reports whether a shutdown has begun.
func (tr *Tracker) Draining() bool { return tr.draining.Load() }

// Open is the number of tracked connections.
func (tr *Tracker) Open() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.open)
}
