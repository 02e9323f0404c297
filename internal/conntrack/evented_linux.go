package conntrack

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/egress-proxy/egress/internal/tunnel"
)

// ServeEvented accepts from ln on the parkers (tunnel.Accept) until e is
// closed, and returns nil then. serve gets each connection on a parker and
// must not block; a panic in it is counted like a connection handler's.
// Out of descriptors or memory, accepting pauses (5 ms doubling to 1 s,
// logged). If the parkers cannot take ln's socket, ln is served by
// fallback (a goroutine per connection) instead.
func (tr *Tracker) ServeEvented(e *EventedListener, ln *net.TCPListener, listener string,
	serve func(s *tunnel.Socket, peer netip.AddrPort), fallback func() error) error {
	a, err := tunnel.Accept(ln, serve,
		func(err error, retry time.Duration) {
			tr.log.Warn("accept failed", "listener", listener, "err", err, "retry_in", retry)
		},
		func(v any) { tr.Panicked(listener, v) })
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			tr.log.Warn("accepting on the event loops failed, a goroutine per connection instead", "listener", listener, "err", err)
		}
		return fallback()
	}
	if !e.started(a) {
		a.Close()
	}
	<-a.Done()
	return nil
}
