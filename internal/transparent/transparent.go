// Package transparent owns the listeners for firewall-redirected traffic
// (transparent.https_listen and http_listen): raw TLS routed by the SNI of its
// ClientHello to transparent.https_port, and plain HTTP routed by its Host
// header to transparent.http_port. There is no CONNECT: the SNI or the Host is
// the only name, so a TLS connection without SNI is always denied.
package transparent

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/engine"
	"github.com/egress-proxy/egress/internal/proxy"
	"github.com/egress-proxy/egress/internal/rules"
)

// Server serves both transparent listeners.
type Server struct {
	Engine        *engine.Engine
	ProxyProtocol bool
	HTTPSPort     uint16
	HTTPPort      uint16

	wg   sync.WaitGroup
	http *proxy.Server
	once sync.Once
}

// ServeHTTP serves the transparent HTTP listener until ln is closed. The
// HTTP handling (keep-alive, one decision per request, block page) is the
// explicit proxy's, in transparent mode.
func (s *Server) ServeHTTP(ln net.Listener) error {
	s.once.Do(func() {
		s.http = &proxy.Server{Engine: s.Engine, ProxyProtocol: s.ProxyProtocol, TransparentPort: s.HTTPPort}
	})
	return s.http.Serve(ln)
}

// ServeTLS serves the transparent HTTPS listener until ln is closed.
func (s *Server) ServeTLS(ln net.Listener) error {
	return s.Engine.Accept(ln, audit.ListenerTransparentHTTPS, &s.wg, s.serveTLSConn)
}

// Wait blocks until every connection handler has returned.
func (s *Server) Wait() {
	s.wg.Wait()
	if s.http != nil {
		s.http.Wait()
	}
}

func (s *Server) serveTLSConn(c net.Conn, accepted time.Time) {
	const listener = audit.ListenerTransparentHTTPS
	// Tracked from accept: a shutdown closes it even while its PROXY header
	// or its ClientHello is pending.
	t := s.Engine.Track(listener, c)
	handedOff := false
	defer func() {
		if !handedOff {
			s.Engine.Untrack(t)
			s.wg.Done()
		}
	}()
	st := s.Engine.State()
	src := engine.PeerAddr(c)
	var buffered []byte
	if s.ProxyProtocol {
		// Only a peer in proxy_protocol_from may send a header, and it must
		// arrive within hello_timeout; what the reader holds past it is the
		// start of the ClientHello. A refusal is counted and logged there.
		br := bufio.NewReaderSize(c, 512)
		claimed, err := s.Engine.ProxyHeader(st, listener, c, br)
		if err != nil {
			c.Close()
			return
		}
		src = claimed
		if n := br.Buffered(); n > 0 {
			peek, _ := br.Peek(n)
			buffered = append([]byte(nil), peek...)
		}
	}
	release, limit := s.Engine.Admit(listener, src.Addr())
	if release == nil {
		// Over a limit: close without a word (counted by Admit), and log the
		// refusal like the explicit proxy's 503.
		c.Close()
		d := rules.Decision{Action: rules.Deny, Reason: rules.ReasonLimit}
		d.Segment, _ = st.Config.Policy.SegmentFor(src.Addr())
		s.Engine.Count(listener, &d)
		ev := s.Engine.NewEvent(st, listener, src, &d, accepted)
		ev.Error = "limit: " + limit
		s.Engine.Emit(ev)
		return
	}
	// ServeTLS owns the connection from here, and the tunnel outlives this
	// goroutine: Done releases the slot when it is all over.
	handedOff = true
	var origDst netip.AddrPort
	if !s.ProxyProtocol {
		origDst = originalDst(c) // behind a balancer, its own address: unknown
	}
	s.Engine.ServeTLS(st, &engine.TLSFlow{Listener: listener, Client: c, Buffered: buffered, Src: src, Start: accepted, Port: s.HTTPSPort, OrigDest: origDst,
		Tracked: t, Done: func() { s.Engine.Untrack(t); release(); s.wg.Done() }})
}
