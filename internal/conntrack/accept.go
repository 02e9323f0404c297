package conntrack

import (
	"errors"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// Accept accepts connections from ln until it is closed, and runs serve on
// each in a goroutine counted in wg (serve must call wg.Done). Errors such as
// running out of file descriptors back off (5 ms doubling to 1 s) instead of
// spinning. It returns nil once ln is closed.
func (tr *Tracker) Accept(ln net.Listener, listener string, wg *sync.WaitGroup, serve func(c net.Conn, accepted time.Time)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			tr.log.Warn("accept failed", "listener", listener, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		wg.Add(1)
		go tr.serveGuarded(c, listener, serve)
	}
}

// serveGuarded runs serve on one connection. A panic in it is a bug, and it
// ends that connection only: it is recovered here, logged with its stack and
// counted in egress_panics_total; the connection is closed. serve's own
// deferred cleanups (limit slots, wg.Done) have run by then as the stack
// unwound.
func (tr *Tracker) serveGuarded(c net.Conn, listener string, serve func(c net.Conn, accepted time.Time)) {
	defer func() {
		if v := recover(); v != nil {
			tr.Panicked(listener, v) // counted before the client can see the close
			c.Close()
		}
	}()
	serve(c, time.Now())
}

// Panicked records a panic recovered in a connection's goroutine.
func (tr *Tracker) Panicked(listener string, v any) {
	tr.metrics.Panics.WithLabelValues(listener).Inc()
	tr.log.Error("panic in a connection handler; that connection was closed", "listener", listener, "panic", v, "stack", string(debug.Stack()))
}
