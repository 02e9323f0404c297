package conntrack

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/egress-proxy/egress/internal/rules"
)

// countingConn is a net.Conn whose Close is counted.
type countingConn struct {
	net.Conn
	closes atomic.Int32
}

func (c *countingConn) Close() error { c.closes.Add(1); return nil }

// countingCloser is a Closer whose Close is counted.
type countingCloser struct{ closes, swaps atomic.Int32 }

func (c *countingCloser) Close() { c.closes.Add(1) }

// Swapped counts configuration swaps (a conntrack.Swapper).
func (c *countingCloser) Swapped() { c.swaps.Add(1) }

// What a close closes: the tracked connection by default, the closer once
// one is set (and not the connection), the connection again after SetConn,
// nothing but the closer after HandOver; and why it was closed, once.
func TestConnCloseWhat(t *testing.T) {
	tr := testEngine(t, "")
	conn, closer := &countingConn{}, &countingCloser{}

	c := tr.Track("proxy", conn)
	c.Close("shutdown")
	if conn.closes.Load() != 1 || c.ClosedBy() != "shutdown" {
		t.Fatalf("default: conn closed %d times, ClosedBy %q", conn.closes.Load(), c.ClosedBy())
	}

	c.SetCloser(closer)
	c.Close("config_reload")
	if closer.closes.Load() != 1 || conn.closes.Load() != 1 {
		t.Fatalf("with a closer: closer %d, conn %d", closer.closes.Load(), conn.closes.Load())
	}
	if c.ClosedBy() != "shutdown" {
		t.Fatalf("ClosedBy changed to %q: the first reason stays", c.ClosedBy())
	}

	c.SetCloser(nil)
	c.Close("shutdown")
	if conn.closes.Load() != 2 || closer.closes.Load() != 1 {
		t.Fatalf("closer removed: closer %d, conn %d", closer.closes.Load(), conn.closes.Load())
	}

	other := &countingConn{}
	c.SetCloser(closer)
	c.SetConn(other) // replaces the closer too
	c.Close("shutdown")
	if other.closes.Load() != 1 || closer.closes.Load() != 1 || conn.closes.Load() != 2 {
		t.Fatalf("SetConn: other %d, closer %d, conn %d", other.closes.Load(), closer.closes.Load(), conn.closes.Load())
	}

	c.HandOver(closer)
	c.Close("shutdown")
	if closer.closes.Load() != 2 || other.closes.Load() != 1 {
		t.Fatalf("HandOver: closer %d, other %d", closer.closes.Load(), other.closes.Load())
	}

	var calls int
	c.SetCloser(CloserFunc(func() { calls++ }))
	c.Close("shutdown")
	if calls != 1 {
		t.Fatalf("CloserFunc called %d times", calls)
	}

	none := tr.Track("transparent_https") // a flow that closes itself, no closer yet
	none.Close("shutdown")                // nothing to close: no panic
	if none.ClosedBy() != "shutdown" {
		t.Fatalf("ClosedBy %q", none.ClosedBy())
	}
}

// Setting what a close closes allocates nothing: a connection sets it two to
// four times in its life (the hello, the registration, the tunnel).
func TestConnSetAllocs(t *testing.T) {
	tr := testEngine(t, "")
	c := tr.Track("proxy")
	conn, closer := &countingConn{}, &countingCloser{}
	allocs := testing.AllocsPerRun(100, func() {
		c.SetCloser(closer)
		c.SetConn(conn)
		c.HandOver(closer)
		c.SetCloser(nil)
		c.SetOnSwap(closer)
		c.SetOnSwap(nil)
		c.Decided(rules.Names{Inner: "a.test", HasInner: true, TLS: true, Port: 443})
		c.Undecided()
	})
	if n, ok := c.Names(); ok || n.Inner != "" {
		t.Fatalf("names after Undecided: %+v, %v", n, ok)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per set", allocs)
	}
}

// A configuration swap tells each connection that has a Swapper, once, and
// none that removed it.
func TestConnSwapped(t *testing.T) {
	tr := testEngine(t, "")
	a, b := &countingCloser{}, &countingCloser{}
	ca, cb := tr.Track("proxy"), tr.Track("proxy")
	ca.SetOnSwap(a)
	cb.SetOnSwap(b)
	cb.SetOnSwap(nil)
	tr.Reloaded(tr.config())
	if a.swaps.Load() != 1 || b.swaps.Load() != 0 {
		t.Fatalf("swaps: %d and %d, want 1 and 0", a.swaps.Load(), b.swaps.Load())
	}
	tr.Untrack(ca)
	tr.Reloaded(tr.config())
	if a.swaps.Load() != 1 {
		t.Fatalf("an untracked connection heard of a swap (%d)", a.swaps.Load())
	}
}
