package transparent

import (
	"errors"
	"net"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/tunnel"
)

// eventedOK: the parkers can run here (an epoll set could be made).
func eventedOK() bool { return tunnel.CanWatch() }

// serveEvented accepts from ln until it is closed and serves each
// connection with tlsproxy.ServeEvented on the parkers: no goroutine per
// connection. The accept is Go's (this goroutine, waiting in Go's poller
// for the listener, as conntrack.Accept does); the accepted socket then
// leaves Go's poller (its descriptor duplicated, the connection closed:
// the socket stays open) and is a tunnel.Socket from there on. Errors such
// as running out of descriptors back off (5 ms doubling to 1 s).
func (s *Server) serveEvented(ln *net.TCPListener) error {
	const listener = audit.ListenerTransparentHTTPS
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Track.Log().Warn("accept failed", "listener", listener, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		s.serveEventedConn(c)
	}
}

// serveEventedConn admits one accepted connection and hands its socket to
// the evented TLS flow. A panic in it (a bug) is counted and closes that
// connection only.
func (s *Server) serveEventedConn(c *net.TCPConn) {
	const listener = audit.ListenerTransparentHTTPS
	accepted := time.Now()
	handedOff := false
	var sock *tunnel.Socket
	defer func() {
		v := recover()
		if !handedOff {
			c.Close()
			if sock != nil {
				sock.Close()
			}
			s.wg.Done()
		}
		if v != nil {
			s.Track.Panicked(listener, v)
		}
	}()
	src := conntrack.PeerAddr(c)
	var err error
	sock, err = tunnel.SocketOf(c) // c is closed: the socket is sock's now
	if err != nil {
		s.Track.Log().Warn("accept failed", "listener", listener, "err", err)
		return
	}
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
