package tlsproxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/sni"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/egress-proxy/egress/internal/upstream"
)

// readHello reads the ClientHello within hello_timeout, then takes the
// configuration in force and begins the flow's outcome.
func (fl *flow) readHello() error {
	f := fl.f
	f.Client.SetReadDeadline(f.Start.Add(fl.p.Active.Config().TLS.HelloTimeout))
	// The bytes read with the request go to the reader, which owns them from
	// here: raw is then every byte the client sent so far, the hello and
	// whatever followed it, in order, for the replay.
	buffered := f.Buffered
	f.Buffered = nil
	hello, raw, err := sni.ReadBuffered(f.Client, buffered)
	f.Client.SetReadDeadline(time.Time{})
	fl.helloRead(hello, raw, err)
	return err
}

// helloRead records what reading the hello gave (err: it failed; raw: every
// byte the client sent so far), then takes the configuration in force and
// begins the flow's outcome.
func (fl *flow) helloRead(hello *sni.Hello, raw []byte, err error) {
	f := fl.f
	fl.p.Metrics.ClientHello.Observe(time.Since(f.Start).Seconds())
	fl.hello, fl.raw = hello, raw

	fl.st = fl.p.Active.Load()
	fl.seg, _ = fl.st.Config.Policy.SegmentFor(f.Src.Addr())
	fl.o = fl.p.Record.Begin(f.Listener, fl.st.Config.Version, f.Src, f.Start)
	ev := fl.o.Event
	ev.DestPort = int(f.Port)
	if c := f.Connect; c != nil {
		ev.Method, ev.Status = http.MethodConnect, http.StatusOK
		ev.DestDomain = c.Outer.Name
		if id := c.Identity; id.Known() {
			ev.User, ev.UserDomain, ev.UserGroups, ev.AuthMethod = id.User, id.Domain, id.Groups, string(id.Method)
		}
		if c.State == fl.st && c.Dest.IsValid() {
			fl.dest = c.Dest // checked before the 200, under this same config
		}
		if c.Dest.IsValid() {
			ev.DestIP = c.Dest.String()
		}
	} else if f.OrigDest.IsValid() {
		ev.DestIP = f.OrigDest.Addr().String()
	}
	if hello != nil {
		// Only strings of the hello stay referenced: a tunnel may outlive
		// it by hours.
		ech := hello.ECH
		ev.SNI, ev.JA4, ev.ECH = hello.ServerName, hello.JA4, &ech
	}
}

// helloFailed records a hello that could not be read. It returns true only
// for a CONNECT whose first bytes are not TLS under tls.non_tls = allow: the
// CONNECT decision alone then stands.
func (fl *flow) helloFailed(err error) bool {
	if why := fl.f.Conn.ClosedBy(); why != "" {
		// Closed while the hello was pending (the end of a shutdown's grace
		// period): that is the outcome, not a bad hello.
		fl.deny(rules.ReasonShutdown, 0, "closed: "+why)
		return false
	}
	count := func(kind string) {
		fl.p.Metrics.ClientHelloErrors.WithLabelValues(fl.f.Listener, kind).Inc()
	}
	switch {
	case errors.Is(err, sni.ErrNotTLS):
		count(metrics.HelloNotTLS)
		if fl.f.Connect != nil && fl.st.Config.TLS.NonTLS != rules.Deny {
			fl.hello = nil
			return true
		}
		fl.deny(rules.ReasonNonTLS, 0, "")
	case errors.Is(err, sni.ErrTimeout):
		count(metrics.HelloTimeout)
		fl.deny(rules.ReasonHelloTimeout, 0, err.Error())
	case errors.Is(err, sni.ErrTooLarge):
		count(metrics.HelloTooLarge)
		fl.deny(rules.ReasonMalformedHello, sni.AlertDecodeError, err.Error())
	case errors.Is(err, sni.ErrMalformed):
		count(metrics.HelloMalformed)
		fl.deny(rules.ReasonMalformedHello, sni.AlertDecodeError, err.Error())
	default: // truncated, reset: the client went away mid-hello
		count(metrics.HelloTruncated)
		fl.deny(rules.ReasonMalformedHello, 0, err.Error())
	}
	return false
}

// decide decides every name under the configuration taken with the hello. A
// CONNECT's outer decision is reused when it was made under the same one.
func (fl *flow) decide() (rules.Decision, bool) {
	f, cfg := fl.f, fl.st.Config
	fl.names = HelloNames(f.Src.Addr(), f.Port, fl.hello)
	if f.Connect == nil && fl.names.HasInner {
		fl.o.Event.DestDomain, _, _ = hostname.Normalize(fl.names.Inner) // transparent: the SNI is the destination
	}
	var outer *rules.Outer
	if c := f.Connect; c != nil {
		// A copy: the CONNECT target is part of its request line, which a
		// tunnel's registry entry would otherwise keep whole.
		fl.names.Target = strings.Clone(c.Outer.Raw)
		fl.names.User, fl.names.Groups = c.Identity.User, c.Identity.Groups
		if c.State != fl.st {
			o := cfg.DecideOuterAs(f.Src.Addr(), c.Identity.User, c.Identity.Groups, c.Outer.Raw, f.Port) // the config changed since the 200
			outer = &o
		} else {
			outer = &c.Outer
		}
	}
	var d rules.Decision
	switch {
	case fl.hello == nil: // a non-TLS CONNECT under tls.non_tls = allow
		d = outer.Decision
	default:
		d = cfg.DecideInner(outer, fl.names)
	}
	if d.Action == rules.Deny {
		fl.o.Decide(d)
		fl.alert(DenyAlert(d, fl.hello != nil))
		return d, false
	}
	return d, true
}

// HelloNames are the names a ClientHello (nil: none was read) carries to the
// policy on a TLS flow from src to port: the transparent TLS listener's and
// the QUIC listener's, and the inner names of a CONNECT tunnel.
func HelloNames(src netip.Addr, port uint16, hello *sni.Hello) rules.Names {
	n := rules.Names{Source: src, TLS: true, Port: port}
	if hello != nil {
		n.Inner, n.HasInner, n.ECH = hello.ServerName, hello.HasSNI, hello.ECH
	}
	return n
}

// DenyAlert is the TLS alert that answers a denied hello: access_denied, or
// decode_error when the SNI is not a hostname (a malformed hello, SPEC §8).
func DenyAlert(d rules.Decision, hasHello bool) uint8 {
	if d.Reason == rules.ReasonInvalidHost && hasHello {
		return sni.AlertDecodeError
	}
	return sni.AlertAccessDenied
}

// resolve finds and checks the address to dial: the SNI's on the transparent
// listener, a CONNECT target's when the configuration changed since its 200.
// A refused address is a deny; a name that does not resolve an allow that
// failed.
func (fl *flow) resolve(d rules.Decision) bool {
	if fl.dest.IsValid() {
		fl.o.Decide(d)
		return true
	}
	target := fl.names.Target
	if target == "" {
		target = fl.names.Inner
	}
	var monitor []*rules.Rule
	if c := fl.f.Connect; c != nil {
		monitor = c.Outer.Decision.Monitor
	}
	dest, alert := ResolveAllowed(fl.st, fl.o, fl.p.Metrics, d, fl.seg, monitor, target)
	if alert != 0 {
		fl.alert(alert)
		return false
	}
	fl.dest = dest
	return true
}

// ResolveAllowed finds and checks the address of target (the name an allow
// decision d was made for) and records the outcome on o, for every path that
// relays by SNI (transparent TLS, a CONNECT's inner hello, QUIC): a refused
// (private) address turns the allow into a deny, a name that does not
// resolve is an allow that failed (counted as a DNS error), and otherwise d
// stands with the checked address in the event. It returns the address, or
// the TLS alert to answer the client with.
func ResolveAllowed(st *active.State, o *outcome.Outcome, m *metrics.Metrics, d rules.Decision, seg *rules.Segment,
	monitor []*rules.Rule, target string) (netip.Addr, uint8) {
	name, ip, _ := hostname.Normalize(target)
	dest, err := st.Dialer.Resolve(context.Background(), name, ip)
	return recordResolved(o, m, d, seg, monitor, name, dest, err)
}

// recordResolved records on o what resolving name gave (ResolveAllowed).
func recordResolved(o *outcome.Outcome, m *metrics.Metrics, d rules.Decision, seg *rules.Segment,
	monitor []*rules.Rule, name string, dest netip.Addr, err error) (netip.Addr, uint8) {
	o.Event.DestDomain = name
	if err != nil {
		if errors.Is(err, upstream.ErrPrivate) {
			o.Deny(rules.ReasonPrivateDestination, seg, monitor)
			o.Event.Error = err.Error()
			return netip.Addr{}, sni.AlertAccessDenied
		}
		o.Decide(d)
		o.Fail(rules.ReasonDNSError, err)
		m.UpstreamErrors.WithLabelValues(metrics.UpstreamDNSError).Inc()
		return netip.Addr{}, sni.AlertInternalError
	}
	o.Event.DestIP = dest.String()
	o.Decide(d)
	return dest, 0
}

// register tells the registry which names the flow carries, before anything
// is dialed: from here a reload that denies them closes the flow, and one
// that landed since the hello is caught by deciding again. A flow closed now
// (or during the dial) never sends its hello anywhere.
func (fl *flow) register() bool {
	f, c := fl.f, fl.f.Conn
	c.SetConn(f.Client)
	// A copy of the SNI: the hello's strings (SNI, ALPN, JA4) share one
	// allocation, which the registry entry would otherwise keep whole.
	fl.names.Inner = strings.Clone(fl.names.Inner)
	c.Decided(fl.names)
	if cur := fl.p.Active.Load(); cur != fl.st && cur.Config.DecideAll(fl.names).Action == rules.Deny {
		c.Close(string(rules.ReasonReload))
	}
	if why := c.ClosedBy(); why != "" {
		fl.o.Cut(why)
		return false
	}
	return true
}

// dial connects to the checked address and replays what the client sent.
func (fl *flow) dial() (net.Conn, bool) {
	if !fl.register() {
		return nil, false
	}
	t0 := time.Now()
	server, err := fl.st.Dialer.Dial(context.Background(), fl.dest, fl.f.Port)
	fl.p.Metrics.UpstreamDial.Observe(time.Since(t0).Seconds())
	if err == nil {
		client := fl.f.Client
		fl.f.Conn.SetCloser(conntrack.CloserFunc(func() { client.Close(); server.Close() }))
		if why := fl.f.Conn.ClosedBy(); why != "" {
			// Closed by a reload or a shutdown while dialing: not a byte
			// of the client's reaches the destination.
			server.Close()
			fl.o.Cut(why)
			return nil, false
		}
		server.SetWriteDeadline(time.Now().Add(fl.st.Config.Limits.IdleTimeout))
		_, err = server.Write(fl.raw)
		server.SetWriteDeadline(time.Time{})
		if err != nil {
			server.Close()
		}
	}
	if err != nil {
		fl.dialFailed(err)
		return nil, false
	}
	return server, true
}

// dialFailed records a destination that could not be reached or written
// (counted as a timeout or as unavailable) and answers the client with
// internal_error.
func (fl *flow) dialFailed(err error) {
	reason := metrics.UpstreamDestinationUnavailable
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		reason = metrics.UpstreamTimeout
	}
	fl.p.Metrics.UpstreamErrors.WithLabelValues(reason).Inc()
	fl.o.Fail(rules.ReasonUpstreamError, err)
	fl.alert(sni.AlertInternalError)
}

// start hands both connections to the tunnel, which ends the flow. It
// returns once the tunnel no longer needs this goroutine (tunnel.Pipe.Serve).
//
// A tunnel may be parked for hours: what it keeps of the flow is the
// sealed outcome (the event's fields), the registry entry and a tunnelEnd,
// nothing more.
// The Flow (and a CONNECT's request state behind it), the hello and the
// bytes replayed become garbage once Serve returns.
func (fl *flow) start(server net.Conn) bool {
	f, c := fl.f, fl.f.Conn
	rawLen := int64(len(fl.raw))
	fl.p.Record.Add(rawLen, 0)
	f.Client.SetWriteDeadline(time.Time{})
	end := &tunnelEnd{o: fl.o.Seal(), conn: c, done: f.Done, start: sinceEpoch(f.Start), rawLen: rawLen}
	var onPanic func(any)
	if h := fl.p.Panicked; h != nil {
		listener := f.Listener
		onPanic = func(v any) { h(listener, v) }
	}
	idle, rec := fl.st.Config.Limits.IdleTimeout, fl.p.Record
	*fl = flow{} // nothing of the flow outlives this call
	pipe := tunnel.New(f.Client, server, tunnel.Options{Idle: idle, Counter: rec, OnPanic: onPanic, OnDone: end.onDone})
	// The tunnel owns both sockets now: nothing else keeps the connections.
	c.HandOver(pipe)
	if c.ClosedBy() != "" {
		pipe.Close() // closed before the pipe was its closer
	}
	// The upload way runs on this goroutine (the connection's) until it
	// stops or parks; the tunnel goes on after Serve returns.
	pipe.Serve()
	return true
}

// tunnelEnd is what a running tunnel keeps of its flow to end it: the
// outcome to finish, the registry entry that says whether the proxy closed
// it, and the caller's Done. Not the client connection: the tunnel owns it
// (and closed it before OnDone).
type tunnelEnd struct {
	o      *outcome.Sealed
	conn   *conntrack.Conn
	done   func()
	start  time.Duration // the 200 or the accept, as sinceEpoch
	rawLen int64         // bytes the client sent before the tunnel (the hello, replayed)
}

// onDone is the tunnel's OnDone: the event gets its byte counts, duration
// and how the tunnel ended, and the flow ends.
func (e *tunnelEnd) onDone(res tunnel.Result) {
	end := outcome.End{SourceBytes: res.Upload + e.rawLen, DestBytes: res.Download, Duration: sinceEpoch(time.Now()) - e.start}
	if why := e.conn.ClosedBy(); why != "" {
		end.Cut = why
	} else if res.Err != nil {
		end.Err = res.Err.Error()
	}
	e.o.Finish(end)
	if e.done != nil {
		e.done()
	}
}

// epoch is the process's reference for the monotonic instants a tunnel keeps
// in 8 bytes instead of a time.Time's 24.
var epoch = time.Now()

// sinceEpoch is t as a monotonic offset from epoch.
func sinceEpoch(t time.Time) time.Duration { return t.Sub(epoch) }
