// Package transparent owns the listeners for firewall-redirected traffic
// (transparent.https_listen and http_listen): raw TLS routed by the SNI of its
// ClientHello to transparent.https_port, and plain HTTP routed by its Host
// header to transparent.http_port. There is no CONNECT: the SNI or the Host is
// the only name, so a TLS connection without SNI is always denied. On
// Linux, without proxy_protocol, a TLS connection leaves Go's poller at its
// accept and is served on the tunnel package's event loops
// (evented_linux.go).
package transparent

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/httpproxy"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
)

// Server serves both transparent listeners.
type Server struct {
	ProxyProtocol bool
	HTTPSPort     uint16
	HTTPPort      uint16

	Active  *active.Store
	Track   *conntrack.Tracker
	Record  *outcome.Recorder
	Metrics *metrics.Metrics
	TLS     *tlsproxy.Proxy

	wg   sync.WaitGroup
	http *httpproxy.Server
	once sync.Once

	// tlsEv: the HTTPS listener's accept on the parkers
	// (evented_linux.go), which takes the socket from the listener ServeTLS
	// was given.
	tlsEv conntrack.EventedListener
}

// ServeHTTP serves the transparent HTTP listener until ln is closed: the HTTP
// loop of internal/httpproxy in its transparent mode.
func (s *Server) ServeHTTP(ln net.Listener) error {
	s.once.Do(func() {
		s.http = &httpproxy.Server{Mode: httpproxy.Transparent, Port: s.HTTPPort, ProxyProtocol: s.ProxyProtocol,
			Active: s.Active, Track: s.Track, Record: s.Record, Metrics: s.Metrics, TLS: s.TLS}
	})
	return s.http.Serve(ln)
}

// ServeTLS serves the transparent HTTPS listener until ln is closed, or
// CloseTLS. On Linux, without proxy_protocol, every connection is accepted
// and served on the tunnel package's parkers (evented_linux.go): ln's
// socket is theirs, and CloseTLS stops it. Otherwise each connection has a
// goroutine (serveTLSConn).
func (s *Server) ServeTLS(ln net.Listener) error {
	if !s.ProxyProtocol {
		if tl, ok := ln.(*net.TCPListener); ok && eventedOK() {
			return s.serveEvented(tl)
		}
	}
	return s.Track.Accept(ln, audit.ListenerTransparentHTTPS, &s.wg, s.serveTLSConn)
}

// CloseTLS stops the HTTPS listener served on the parkers, whose accept
// took its socket from the listener ServeTLS was given (closing that one
// does nothing then); ServeTLS returns. Before ServeTLS, it makes ServeTLS
// return at once.
func (s *Server) CloseTLS() { s.tlsEv.Close() }

// Wait blocks until every connection handler has returned.
func (s *Server) Wait() {
	s.wg.Wait()
	if s.http != nil {
		s.http.Wait()
	}
}

// refused logs a connection over a limit (closed without a word, counted by
// Admit) like the explicit proxy's 503.
func (s *Server) refused(st *active.State, src netip.AddrPort, accepted time.Time, limit string) {
	o := s.Record.Begin(audit.ListenerTransparentHTTPS, st.Config.Version, src, accepted)
	seg, _ := st.Config.Policy.SegmentFor(src.Addr())
	o.Deny(rules.ReasonLimit, seg, nil)
	o.Event.Error = "limit: " + limit
	o.Finish()
}

// serveTLSConn admits one connection and hands it to the TLS flow.
func (s *Server) serveTLSConn(c net.Conn, accepted time.Time) {
	const listener = audit.ListenerTransparentHTTPS
	// Tracked from accept: a shutdown closes it even while its PROXY header
	// or its ClientHello is pending.
	t := s.Track.Track(listener, c)
	handedOff := false
	defer func() {
		if !handedOff {
			s.Track.Untrack(t)
			c.Close()
			s.wg.Done()
		}
	}()
	st := s.Active.Load()
	src := conntrack.PeerAddr(c)
	var buffered []byte
	if s.ProxyProtocol {
		// Only a peer in proxy_protocol_from may send a header, and it must
		// arrive within hello_timeout; what the reader holds past it is the
		// start of the ClientHello. A refusal is counted and logged there.
		br := bufio.NewReaderSize(c, 512)
		claimed, err := s.Track.ProxyHeader(st.Config, listener, c, br)
		if err != nil {
			return
		}
		src = claimed
		if n := br.Buffered(); n > 0 {
			peek, _ := br.Peek(n)
			buffered = append([]byte(nil), peek...)
		}
	}
	release, limit := s.Track.Admit(listener, src.Addr())
	if release == nil {
		s.refused(st, src, accepted, limit)
		return
	}
	// The TLS flow owns the connection from here, and its tunnel outlives
	// this goroutine: Done releases the slot when it is all over.
	handedOff = true
	var origDst netip.AddrPort
	if !s.ProxyProtocol {
		origDst = originalDst(c) // behind a balancer, its own address: unknown
	}
	s.TLS.Serve(&tlsproxy.Flow{Listener: listener, Client: c, Buffered: buffered, Src: src, Start: accepted, Port: s.HTTPSPort,
		OrigDest: origDst, Conn: t, Done: func() { s.Track.Untrack(t); release(); s.wg.Done() }})
}
