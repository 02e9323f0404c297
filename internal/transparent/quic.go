package transparent

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/quicinitial"
	"github.com/egress-proxy/egress/internal/rules"
)

// QUIC flow limits. A flow is one client address and port; until its
// ClientHello is complete it holds copies of the datagrams it sent, for the
// replay.
const (
	// maxHelloDatagrams bounds the datagrams a flow buffers before its
	// hello is complete: a post-quantum hello takes two, a lossy path a few
	// retransmissions more, a client that coalesces 0-RTT a few more.
	maxHelloDatagrams = 16
	// maxHelloBytes bounds the bytes of those datagrams.
	maxHelloBytes = 32 << 10
	// flowQueue is how many datagrams wait for a flow's goroutine; past it
	// they are dropped (queue_full), as a congested router would. With
	// maxDatagram it bounds what a flooding client makes a flow hold.
	flowQueue = 64
	// maxDatagram is the largest UDP payload relayed either way: an
	// Ethernet jumbo frame's. QUIC stacks keep their datagrams under the
	// path MTU (1200 to 1500 bytes on the internet); a larger datagram is
	// dropped (too_large). Each relaying flow's download buffer is this.
	maxDatagram = 9216
	// QUICMaxIdle caps limits.idle_timeout for QUIC flows. A QUIC
	// connection is dead once it has been silent for its negotiated idle
	// timeout (30 s in Chrome, Firefox and quic-go); nothing tells the proxy
	// it ended (its CONNECTION_CLOSE is encrypted), and an idle flow keeps
	// its slot of limits.per_source. Two minutes covers every common stack
	// with room for keep-alives that stopped.
	QUICMaxIdle = 2 * time.Minute
	// refusedLinger is how long the address of a denied or refused flow
	// stays remembered, so that the client's retransmissions of the same
	// Initial are dropped rather than decided (and logged) again: a client
	// that got no close (a limit refusal, a lost close) retransmits until
	// its handshake timeout, 10 s in quic-go and Chrome. A new connection
	// comes from a new port, so nothing legitimate waits on it.
	refusedLinger = 10 * time.Second
	// maxRefused bounds the remembered addresses.
	maxRefused = 4096
)

// QUIC serves the transparent QUIC listener (transparent.quic_listen): UDP
// datagrams redirected from port 443, grouped into flows by client address
// and port. A flow's client Initial packets are decrypted
// (internal/quicinitial) until its ClientHello is complete; the hello is
// decided like transparent TLS (internal/tlsproxy's names and alert); an
// allowed flow gets its own UDP socket connected to the SNI's checked
// address at Port, and every datagram is relayed both ways until the flow
// is idle. A denied flow gets a server Initial with CONNECTION_CLOSE
// (CRYPTO_ERROR for the TLS alert) and nothing reaches the destination.
//
// The read loop owns the listener socket's reads and the flow table; each
// flow is owned by its own goroutine (quicFlow.serve), which receives the
// datagrams the loop hands it over a channel and is the only one to touch
// its state. Writes to the client go through the listener socket from the
// flow's goroutines (UDP writes are safe concurrently).
type QUIC struct {
	Port    uint16 // transparent.quic_port
	Active  *active.Store
	Track   *conntrack.Tracker
	Record  *outcome.Recorder
	Metrics *metrics.Metrics

	conn    *net.UDPConn
	mu      sync.Mutex
	flows   map[netip.AddrPort]*quicFlow
	refused map[netip.AddrPort]refusal
	pending int // flows still collecting their hello
	wg      sync.WaitGroup
}

// refusal is a remembered address of a denied or refused flow.
type refusal struct {
	until time.Time // when it is forgotten
	close []byte    // the CONNECTION_CLOSE it was sent, if any: sent again to each retransmission
}

// maxPending is how many flows may be collecting their hello at once: a
// quarter of limits.max_connections (at least 64). A QUIC Initial's source
// address is not validated, so a client that spoofs many addresses could
// otherwise hold every connection slot for tls.hello_timeout, TCP clients'
// included.
func maxPending(maxConnections int) int { return max(64, maxConnections/4) }

// ServeQUIC reads datagrams from conn until it is closed (by Close).
func (s *QUIC) ServeQUIC(conn *net.UDPConn) error {
	s.mu.Lock()
	s.conn = conn
	s.flows = map[netip.AddrPort]*quicFlow{}
	s.refused = map[netip.AddrPort]refusal{}
	s.mu.Unlock()
	buf := make([]byte, maxDatagram+1) // one byte more: a datagram that fills it was cut
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(5 * time.Millisecond) // a transient error (ICMP feedback): keep serving
			continue
		}
		if n > maxDatagram {
			s.drop(metrics.QUICDropTooLarge)
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.guarded(src, buf[:n])
	}
}

// guarded handles one datagram; a panic (a bug in the parsing of a hostile
// packet) costs that datagram, not the listener.
func (s *QUIC) guarded(src netip.AddrPort, b []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.Track.Panicked(audit.ListenerTransparentQUIC, v)
		}
	}()
	s.datagram(src, b)
}

// Close closes the listener socket, which ends ServeQUIC. Call it after the
// tracker has closed the flows (conntrack.Tracker.CloseAll): until then
// their clients' datagrams arrive on it. Wait waits for the flows.
func (s *QUIC) Close() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Wait blocks until every flow's goroutine has returned.
func (s *QUIC) Wait() { s.wg.Wait() }

func (s *QUIC) drop(reason string) {
	s.Metrics.QUICPacketsDropped.WithLabelValues(reason).Inc()
}

// datagram gives one datagram (b, the read loop's buffer: copied before it is
// kept) to its flow, or starts a flow with it.
func (s *QUIC) datagram(src netip.AddrPort, b []byte) {
	s.mu.Lock()
	f := s.flows[src]
	var r refusal
	refused := false
	if f == nil {
		if r, refused = s.refused[src]; refused && !time.Now().Before(r.until) {
			delete(s.refused, src)
			refused = false
		}
	}
	s.mu.Unlock()
	switch {
	case f != nil:
		d := append([]byte(nil), b...)
		select {
		case f.in <- d:
		default:
			s.drop(metrics.QUICDropQueueFull)
		}
		return
	case refused:
		s.drop(metrics.QUICDropClosedFlow)
		if r.close != nil && len(b) >= quicinitial.MinDatagram {
			// The close may have been lost: this retransmission gets it
			// again (far under three times its size).
			s.conn.WriteToUDPAddrPort(r.close, src)
		}
		return
	}
	s.newFlow(src, b)
}

// newFlow starts a flow with its first datagram, which must be a client
// Initial of a known version whose first packet authenticates: anything else
// from an address without a flow is dropped and counted, never logged.
func (s *QUIC) newFlow(src netip.AddrPort, b []byte) {
	h, err := quicinitial.ParseLongHeader(b)
	switch {
	case errors.Is(err, quicinitial.ErrNotInitial):
		s.drop(metrics.QUICDropUnknownFlow)
		return
	case errors.Is(err, quicinitial.ErrVersion):
		s.drop(metrics.QUICDropUnknownVersion)
		return
	case err != nil:
		s.drop(metrics.QUICDropMalformed)
		return
	case !h.IsInitial():
		s.drop(metrics.QUICDropUnknownFlow) // 0-RTT or Handshake of no flow
		return
	case len(b) < quicinitial.MinDatagram:
		s.drop(metrics.QUICDropMalformed)
		return
	}
	op, err := quicinitial.NewOpener(h)
	if err != nil {
		s.drop(metrics.QUICDropMalformed)
		return
	}
	f := &quicFlow{s: s, src: src, start: time.Now(), op: op, in: make(chan []byte, flowQueue), stop: make(chan struct{}),
		version: h.Version, scid: append([]byte(nil), h.SCID...)}
	// The first packet must authenticate before the address gets a flow:
	// garbage that merely looks like an Initial costs one decryption.
	_, err = op.OpenDatagram(b, f.col.AddPayload)
	if errors.Is(err, quicinitial.ErrAuth) {
		s.drop(metrics.QUICDropDecryptFailed)
		return
	}
	f.helloErr = err // a malformed hello: decided (denied) and logged by the flow
	if s.Track.Draining() {
		s.drop(metrics.QUICDropDraining)
		return
	}
	s.mu.Lock()
	full := s.pending >= maxPending(s.Active.Config().Limits.MaxConnections)
	s.mu.Unlock()
	if full {
		s.drop(metrics.QUICDropFlowTable)
		return
	}
	release, limit := s.Track.Admit(audit.ListenerTransparentQUIC, src.Addr())
	if release == nil {
		// Over a limit (counted by Admit): logged like a refused TCP
		// connection, once; the retransmissions that follow are dropped.
		st := s.Active.Load()
		o := s.Record.Begin(audit.ListenerTransparentQUIC, st.Config.Version, src, f.start)
		seg, _ := st.Config.Policy.SegmentFor(src.Addr())
		o.Deny(rules.ReasonLimit, seg, nil)
		o.Event.Error = "limit: " + limit
		o.Finish()
		s.mu.Lock()
		s.remember(src, nil)
		s.mu.Unlock()
		return
	}
	f.release = release
	f.received = int64(len(b))
	f.keep(append([]byte(nil), b...))
	s.mu.Lock()
	s.flows[src] = f
	s.pending++
	s.mu.Unlock()
	s.wg.Add(1)
	go f.serve()
}

// remember keeps src as refused for refusedLinger, with the close it was
// sent (nil: none). s.mu must be held.
func (s *QUIC) remember(src netip.AddrPort, closePkt []byte) {
	if len(s.refused) >= maxRefused {
		now := time.Now()
		for a, r := range s.refused {
			if now.After(r.until) {
				delete(s.refused, a)
			}
		}
		if len(s.refused) >= maxRefused {
			s.drop(metrics.QUICDropFlowTable)
			return
		}
	}
	s.refused[src] = refusal{until: time.Now().Add(refusedLinger), close: closePkt}
}

// decided says f has stopped collecting its hello.
func (s *QUIC) decided() {
	s.mu.Lock()
	s.pending--
	s.mu.Unlock()
}

// forget removes f from the table while it ends: the address's next
// datagram starts a new flow.
func (s *QUIC) forget(f *quicFlow) {
	s.mu.Lock()
	if s.flows[f.src] == f {
		delete(s.flows, f.src)
	}
	s.mu.Unlock()
}

// ended removes f from the table; a denied flow's address is remembered.
func (s *QUIC) ended(f *quicFlow, denied bool) {
	s.mu.Lock()
	if s.flows[f.src] == f {
		delete(s.flows, f.src)
	}
	if denied {
		s.remember(f.src, f.closePkt)
	}
	s.mu.Unlock()
}
