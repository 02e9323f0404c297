package conntrack

import (
	"io"
	"sync"
)

// EventedListener is a listener whose socket is accepted from on the tunnel
// package's parkers (Tracker.ServeEvented, Linux): the accept has taken the
// socket from the *net.TCPListener it was given, so closing that one does
// nothing, and Close stops it instead, before or after ServeEvented.
type EventedListener struct {
	mu       sync.Mutex
	acceptor io.Closer
	closed   bool
}

// Close stops the accept; a ServeEvented not yet started returns at once.
func (e *EventedListener) Close() {
	e.mu.Lock()
	e.closed = true
	a := e.acceptor
	e.mu.Unlock()
	if a != nil {
		a.Close()
	}
}

// started records the parkers' accept: false when Close came first.
func (e *EventedListener) started(a io.Closer) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.acceptor = a
	return !e.closed
}
