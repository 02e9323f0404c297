package transparent

import (
	"net"
	"net/netip"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/tunnel"
)

// eventedOK: the parkers can run here (an epoll set could be made).
func eventedOK() bool { return tunnel.CanWatch() }

// serveEvented serves ln on the parkers until CloseTLS: its socket taken
// out of Go's poller and accepted from by tunnel.Accept, each connection a
// tunnel.Socket from its accept4 on, served by tlsproxy.ServeEvented with
// no goroutine (conntrack's ServeEvented: the back-off, the fallback to a
// goroutine per connection).
func (s *Server) serveEvented(ln *net.TCPListener) error {
	const listener = audit.ListenerTransparentHTTPS
	return s.Track.ServeEvented(&s.tlsEv, ln, listener, s.serveEventedConn,
		func() error { return s.Track.Accept(ln, listener, &s.wg, s.serveTLSConn) })
}

// serveEventedConn admits one accepted connection and hands its socket to
// the evented TLS flow, on a parker's goroutine. A panic in it (a bug) is
// counted and closes that connection only.
func (s *Server) serveEventedConn(sock *tunnel.Socket, src netip.AddrPort) {
	const listener = audit.ListenerTransparentHTTPS
	accepted := time.Now()
	s.wg.Add(1)
	handedOff := false
	defer func() {
		v := recover()
		if v != nil {
			s.Track.Panicked(listener, v) // counted before the client can see the close
		}
		if !handedOff {
			sock.Close()
			s.wg.Done()
		}
	}()
	// Tracked from accept: a shutdown closes it even while its ClientHello
	// is pending (the flow's closer, set by ServeEvented).
	t := s.Track.Track(listener)
	st := s.Active.Load()
	release, limit := s.Track.Admit(listener, src.Addr())
	if release == nil {
		// Over a limit: close without a word (counted by Admit), and log the
		// refusal like the explicit proxy's 503.
		s.Track.Untrack(t)
		s.refused(st, src, accepted, limit)
		return
	}
	handedOff = true
	s.TLS.ServeEvented(&tlsproxy.Flow{Listener: listener, Client: sock, Src: src, Start: accepted, Port: s.HTTPSPort,
		OrigDest: originalDst(sock), Conn: t, Done: func() { s.Track.Untrack(t); release(); s.wg.Done() }})
}
