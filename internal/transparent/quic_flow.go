package transparent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/quicinitial"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/sni"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/upstream"
)

var (
	errHelloTimeout = errors.New("quic: timeout collecting the client hello")
	// errVersionNegotiation ends a flow whose server answered with a
	// Version Negotiation packet: the client's next attempt is another
	// connection, in another version, with a hello of its own.
	errVersionNegotiation = errors.New("quic: version negotiation")
)

// quicFlow is one client address's QUIC flow: collecting its hello, then
// decided, then relaying. Its goroutine (serve) owns every field but in,
// stop and the atomics; the read loop only sends on in.
type quicFlow struct {
	s       *QUIC
	src     netip.AddrPort
	start   time.Time
	in      chan []byte // datagrams from the read loop; each one is the flow's from receipt
	stop    chan struct{}
	stopped sync.Once
	release func() // the admission slot

	// Collecting.
	version  uint32
	scid     []byte // the client's Source Connection ID: where a close is addressed
	op       *quicinitial.Opener
	col      quicinitial.Collector
	helloErr error
	closePkt []byte   // the CONNECTION_CLOSE sent, if any
	buffered [][]byte // every datagram of the client's so far, in order, for the replay
	bufBytes int
	received int64 // bytes received from the client before the decision (the amplification budget)

	// Decided.
	t        *conntrack.Conn
	st       *active.State
	o        *outcome.Outcome
	seg      *rules.Segment
	hello    *sni.Hello
	helloMsg []byte // the ClientHello decided on: the only one the flow may carry
	names    rules.Names
	dest     netip.Addr
	openers  []*quicinitial.Opener // keys the relay checks client Initials with (relay loop only)

	// Relaying.
	upBytes, downBytes atomic.Int64
	last               atomic.Int64             // unix nanoseconds of the last datagram either way
	retrySCIDs         atomic.Pointer[[][]byte] // connection IDs of the server's Retry packets, set by download
}

// maxRetries bounds the Retry connection IDs a flow remembers.
const maxRetries = 4

// addRetry remembers a Retry's connection ID (download's goroutine only:
// the one writer; the relay loop reads).
func (f *quicFlow) addRetry(scid []byte) {
	var cur [][]byte
	if r := f.retrySCIDs.Load(); r != nil {
		cur = *r
	}
	if len(cur) >= maxRetries {
		return
	}
	next := append(append([][]byte(nil), cur...), append([]byte(nil), scid...))
	f.retrySCIDs.Store(&next)
}

// cancel is the flow's closer (conntrack): a reload that denies it, or the
// end of a shutdown's grace period.
func (f *quicFlow) cancel() { f.stopped.Do(func() { close(f.stop) }) }

// keep appends a datagram to the replay buffer.
func (f *quicFlow) keep(d []byte) {
	f.buffered = append(f.buffered, d)
	f.bufBytes += len(d)
}

// serve runs the flow to its end and writes its one event.
func (f *quicFlow) serve() {
	s := f.s
	const listener = audit.ListenerTransparentQUIC
	f.t = s.Track.Track(listener)
	f.t.SetCloser(conntrack.CloserFunc(f.cancel))
	denied := true
	defer func() {
		if v := recover(); v != nil {
			s.Track.Panicked(listener, v)
		}
		s.ended(f, denied)
		s.Track.Untrack(f.t)
		f.release()
		if f.o != nil {
			f.o.Event.Duration = time.Since(f.start)
			f.o.Finish()
		}
		s.wg.Done()
	}()
	f.collect()
	if f.helloErr != nil {
		f.helloFailed()
		return
	}
	d, ok := f.decide()
	if !ok || !f.resolve(d) || !f.register() {
		return
	}
	up, ok := f.dial()
	if !ok {
		return
	}
	denied = false
	f.relay(up)
}

// collect takes datagrams until the ClientHello is complete, fails, or
// hello_timeout (counted from the first datagram) expires.
func (f *quicFlow) collect() {
	defer f.s.decided()
	timeout := f.s.Active.Config().TLS.HelloTimeout
	timer := time.NewTimer(time.Until(f.start.Add(timeout)))
	defer timer.Stop()
	for f.helloErr == nil && f.col.Hello() == nil {
		select {
		case d := <-f.in:
			f.received += int64(len(d))
			f.absorb(d)
		case <-timer.C:
			f.helloErr = errHelloTimeout
		case <-f.stop:
			f.helloErr = net.ErrClosed
		}
	}
	f.s.Metrics.ClientHello.Observe(time.Since(f.start).Seconds())
	if f.helloErr == nil {
		f.helloMsg = append([]byte(nil), f.col.Hello()...)
		f.hello, f.helloErr = sni.ParseQUIC(f.helloMsg)
	}
	f.col = quicinitial.Collector{}
}

// absorb decrypts one more datagram of the client's and keeps it for the
// replay.
func (f *quicFlow) absorb(d []byte) {
	if len(f.buffered) >= maxHelloDatagrams || f.bufBytes+len(d) > maxHelloBytes {
		f.helloErr = fmt.Errorf("%w: the hello is not complete after %d datagrams (%d bytes)", quicinitial.ErrTooLarge, len(f.buffered), f.bufBytes)
		return
	}
	n, err := f.op.OpenDatagram(d, f.col.AddPayload)
	switch {
	case n == 0 && errors.Is(err, quicinitial.ErrAuth):
		// Not the client's (a spoofed or corrupted packet): the server
		// would drop it too.
		f.s.drop(metrics.QUICDropDecryptFailed)
		return
	case errors.Is(err, quicinitial.ErrOtherConnection):
		// A second connection from the same address and port: never
		// forwarded (it would reach this flow's destination undecided).
		f.s.drop(metrics.QUICDropSecondConnection)
		return
	case n == 0 && errors.Is(err, quicinitial.ErrVersion):
		f.s.drop(metrics.QUICDropUnknownVersion)
		return
	case errors.Is(err, quicinitial.ErrNotInitial):
		// 0-RTT or Handshake packets of the same connection ID, a short
		// header: nothing that starts a connection; the server judges
		// them, replayed as they came.
	case err != nil:
		f.helloErr = err
		return
	}
	f.keep(d)
}

// begin opens the flow's outcome under the configuration in force now.
func (f *quicFlow) begin() {
	f.st = f.s.Active.Load()
	f.seg, _ = f.st.Config.Policy.SegmentFor(f.src.Addr())
	f.o = f.s.Record.Begin(audit.ListenerTransparentQUIC, f.st.Config.Version, f.src, f.start)
	f.o.Event.DestPort = int(f.s.Port)
	if h := f.hello; h != nil {
		ech := h.ECH
		f.o.Event.SNI, f.o.Event.JA4, f.o.Event.ECH = h.ServerName, h.JA4, &ech
	}
}

// helloFailed records a hello that could not be collected or parsed, and
// closes the client's connection attempt when the hello was malformed.
func (f *quicFlow) helloFailed() {
	f.begin()
	err := f.helloErr
	count := func(kind string) {
		f.s.Metrics.ClientHelloErrors.WithLabelValues(audit.ListenerTransparentQUIC, kind).Inc()
	}
	deny := func(reason rules.Reason, alert uint8) {
		f.o.Deny(reason, f.seg, nil)
		f.o.Event.Error = err.Error()
		if alert != 0 {
			f.sendClose(alert)
		}
	}
	switch {
	case f.t.ClosedBy() != "":
		f.o.Deny(rules.ReasonShutdown, f.seg, nil)
		f.o.Event.Error = "closed: " + f.t.ClosedBy()
	case errors.Is(err, errHelloTimeout):
		count(metrics.HelloTimeout)
		deny(rules.ReasonHelloTimeout, 0)
	case errors.Is(err, quicinitial.ErrClosed):
		count(metrics.HelloTruncated) // the client gave up
		deny(rules.ReasonMalformedHello, 0)
	case errors.Is(err, quicinitial.ErrTooLarge), errors.Is(err, sni.ErrTooLarge):
		count(metrics.HelloTooLarge)
		deny(rules.ReasonMalformedHello, sni.AlertDecodeError)
	default:
		count(metrics.HelloMalformed)
		deny(rules.ReasonMalformedHello, sni.AlertDecodeError)
	}
}

// decide decides the hello's names with the same rules and tls.* settings
// as transparent TLS.
func (f *quicFlow) decide() (rules.Decision, bool) {
	f.begin()
	f.names = tlsproxy.HelloNames(f.src.Addr(), f.s.Port, f.hello)
	if f.names.HasInner {
		f.o.Event.DestDomain, _, _ = hostname.Normalize(f.names.Inner)
	}
	d := f.st.Config.DecideInner(nil, f.names)
	if d.Action == rules.Deny {
		f.o.Decide(d)
		f.sendClose(tlsproxy.DenyAlert(d, true))
		return d, false
	}
	return d, true
}

// resolve finds and checks the SNI's address, as transparent TLS does: a
// refused address is a deny, a name that does not resolve an allow that
// failed.
func (f *quicFlow) resolve(d rules.Decision) bool {
	dest, alert := tlsproxy.ResolveAllowed(f.st, f.o, f.s.Metrics, d, f.seg, nil, f.names.Inner)
	if alert != 0 {
		f.sendClose(alert)
		return false
	}
	f.dest = dest
	return true
}

// register tells the tracker which names the flow carries before anything
// is sent: from here a reload that denies them closes the flow, and one that
// landed since the hello is caught by deciding again.
func (f *quicFlow) register() bool {
	f.t.Decided(f.names)
	if cur := f.s.Active.Load(); cur != f.st && cur.Config.DecideAll(f.names).Action == rules.Deny {
		f.t.Close(string(rules.ReasonReload))
	}
	if why := f.t.ClosedBy(); why != "" {
		f.o.Cut(why)
		return false
	}
	return true
}

// dial opens the flow's own UDP socket, connected to the checked address at
// quic_port, and replays the client's datagrams in order.
func (f *quicFlow) dial() (*net.UDPConn, bool) {
	t0 := time.Now()
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.dest, f.s.Port)))
	f.s.Metrics.UpstreamDial.Observe(time.Since(t0).Seconds())
	if err == nil {
		for _, d := range f.buffered {
			if _, err = up.Write(d); err != nil {
				up.Close()
				break
			}
			f.count(true, len(d))
		}
	}
	if err != nil {
		// A refusal may come back (ICMP) while the replay is under way.
		f.o.Event.SourceBytes = f.upBytes.Load()
		f.s.Metrics.UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable).Inc()
		f.o.Fail(rules.ReasonUpstreamError, fmt.Errorf("%w: %w", upstream.ErrUnavailable, err))
		f.sendClose(sni.AlertInternalError)
		return nil, false
	}
	f.buffered, f.hello = nil, nil
	f.op.AnyDCID = true // from here the client's Initials go to the server's connection ID
	f.openers = []*quicinitial.Opener{f.op}
	return up, true
}

// continues reports whether a client datagram of a relaying flow belongs to
// the connection that was decided. Only Initial packets can carry a
// ClientHello, so each Initial packet in the datagram must open with this
// connection's keys (those of its first connection ID, or after a Retry the
// Retry's; of either version, for a compatible version upgrade) and carry no
// CRYPTO data but the decided hello's own bytes. So a client cannot start a
// second connection with another SNI on a flow whose destination was
// allowed for the first (two names on one CDN address), nor reuse the first
// connection's ID with another hello once the server has forgotten it.
func (f *quicFlow) continues(d []byte) bool {
	for rest := d; len(rest) > 0; {
		h, err := quicinitial.ParseLongHeader(rest)
		if err != nil {
			return true // a short header (1-RTT data), or nothing a server could read as a hello
		}
		pkt := rest[:h.Len()]
		rest = rest[h.Len():]
		if h.IsInitial() && !f.sameConnection(h, pkt) {
			return false
		}
	}
	return true
}

// sameConnection checks one client Initial packet (see continues).
func (f *quicFlow) sameConnection(h quicinitial.Header, pkt []byte) bool {
	match := func(p []byte) error { return quicinitial.MatchHello(p, f.helloMsg) }
	dcids := [][]byte{f.op.DCID}
	if r := f.retrySCIDs.Load(); r != nil {
		dcids = append(dcids, *r...)
	}
	for _, dcid := range dcids {
		op := f.opener(h.Version, dcid)
		if op == nil {
			continue
		}
		_, err := op.OpenDatagram(pkt, match)
		if err == nil {
			return true
		}
		if !errors.Is(err, quicinitial.ErrAuth) {
			return false // another hello, or malformed
		}
	}
	return false
}

// opener returns the cached Opener of (version, dcid): the flow's first
// connection ID and its Retries', under v1 and v2.
func (f *quicFlow) opener(v uint32, dcid []byte) *quicinitial.Opener {
	for _, o := range f.openers {
		if o.Version == v && string(o.DCID) == string(dcid) {
			return o
		}
	}
	if len(f.openers) >= 2*(1+maxRetries) {
		return nil
	}
	o, err := quicinitial.NewOpenerFor(v, dcid)
	if err != nil {
		return nil
	}
	o.AnyDCID = true
	f.openers = append(f.openers, o)
	return o
}

// count adds a relayed datagram to the flow's and the process's byte counts.
func (f *quicFlow) count(upload bool, n int) {
	if upload {
		f.upBytes.Add(int64(n))
		f.s.Record.Add(int64(n), 0)
	} else {
		f.downBytes.Add(int64(n))
		f.s.Record.Add(0, int64(n))
	}
	f.last.Store(time.Now().UnixNano())
}

// relay copies datagrams both ways until the flow is idle for
// min(limits.idle_timeout, QUICMaxIdle), the upstream socket fails, or the
// tracker closes the flow. It owns up and closes it.
func (f *quicFlow) relay(up *net.UDPConn) {
	idle := min(f.st.Config.Limits.IdleTimeout, QUICMaxIdle)
	f.last.Store(time.Now().UnixNano())
	down := make(chan error, 1)
	go f.download(up, down)
	timer := time.NewTimer(idle)
	defer timer.Stop()
	var err error
	downDone := false
loop:
	for {
		select {
		case d := <-f.in:
			if !f.continues(d) {
				f.s.drop(metrics.QUICDropSecondConnection)
				continue
			}
			if _, werr := up.Write(d); werr != nil {
				err = werr
				break loop
			}
			f.count(true, len(d))
		case err = <-down:
			downDone = true
			break loop
		case <-timer.C:
			quiet := time.Since(time.Unix(0, f.last.Load()))
			if quiet >= idle {
				break loop
			}
			timer.Reset(idle - quiet)
		case <-f.stop:
			break loop
		}
	}
	up.Close()
	if !downDone {
		<-down
	}
	ev := f.o.Event
	ev.SourceBytes, ev.DestBytes = f.upBytes.Load(), f.downBytes.Load()
	switch why := f.t.ClosedBy(); {
	case why != "":
		f.o.Cut(why)
	case errors.Is(err, errVersionNegotiation):
	case err != nil && !errors.Is(err, net.ErrClosed) && ev.DestBytes == 0:
		// The destination never answered and refused (an ICMP
		// unreachable: nothing listens at quic_port): a failed allow, as a
		// refused TCP dial is, and the client hears it at once.
		f.s.Metrics.UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable).Inc()
		f.o.Fail(rules.ReasonUpstreamError, fmt.Errorf("%w: %w", upstream.ErrUnavailable, err))
		f.sendClose(sni.AlertInternalError)
	case err != nil && !errors.Is(err, net.ErrClosed):
		ev.Error = err.Error()
	}
}

// download copies the destination's datagrams to the client until up is
// closed or fails (an ICMP unreachable: nothing listens at quic_port). Retry
// and Version Negotiation packets pass through unchanged; a Version
// Negotiation as the server's first answer also ends the flow.
func (f *quicFlow) download(up *net.UDPConn, done chan<- error) {
	var err error
	defer func() {
		if v := recover(); v != nil {
			f.s.Track.Panicked(audit.ListenerTransparentQUIC, v)
			err = fmt.Errorf("panic: %v", v)
		}
		done <- err
	}()
	buf := make([]byte, maxDatagram+1)
	for {
		var n int
		n, err = up.Read(buf)
		if err != nil {
			return
		}
		if n > maxDatagram {
			f.s.drop(metrics.QUICDropTooLarge)
			continue
		}
		if f.downBytes.Load() == 0 && quicinitial.IsVersionNegotiation(buf[:n]) {
			// The flow is over before the client hears of it: its next
			// Initial starts a new flow, decided again.
			f.s.forget(f)
			f.s.conn.WriteToUDPAddrPort(buf[:n], f.src)
			f.count(false, n)
			err = errVersionNegotiation
			return
		}
		if scid, ok := quicinitial.RetrySCID(buf[:n]); ok {
			// Passed through unchanged; the client's next Initials are
			// protected with the keys of its connection ID. A server
			// answers each Initial datagram without a token with a Retry
			// of its own (a post-quantum hello: two) and the client takes
			// one of them: every one is remembered, up to maxRetries.
			f.addRetry(scid)
		}
		if _, werr := f.s.conn.WriteToUDPAddrPort(buf[:n], f.src); werr != nil && errors.Is(werr, net.ErrClosed) {
			err = werr
			return
		}
		f.count(false, n)
	}
}

// sendClose answers the client with a server Initial carrying
// CONNECTION_CLOSE with CRYPTO_ERROR for alert, within three times what the
// client sent (the source address is not validated: it may be spoofed).
func (f *quicFlow) sendClose(alert uint8) {
	pkt, err := quicinitial.AppendClose(nil, f.version, f.op.DCID, f.scid, quicinitial.CryptoError(alert), 3*int(f.received))
	if err != nil {
		return
	}
	f.s.conn.WriteToUDPAddrPort(pkt, f.src)
	f.closePkt = pkt
}
