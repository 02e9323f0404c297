package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/sni"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/egress-proxy/egress/internal/upstream"
)

// TLSFlow is a client connection whose next bytes should be a ClientHello:
// a CONNECT tunnel after its 200, or a transparent TLS connection.
type TLSFlow struct {
	Listener string
	Client   net.Conn       // the client connection; a *net.TCPConn keeps the copy in the kernel
	Buffered []byte         // bytes the client already sent that were read with the request; ServeTLS hands them to the hello reader
	Src      netip.AddrPort // effective client address (after PROXY protocol)
	Start    time.Time      // the 200 or the accept: hello_timeout counts from here

	// CONNECT only: the target as sent, its decision, and the address that
	// was resolved and checked before the 200. Transparent flows leave them
	// zero and the destination is the SNI.
	Target   string
	Outer    *rules.Decision
	Dest     netip.Addr
	DestName string
	Port     uint16
	// What the client was answered before the tunnel (CONNECT, 200): every
	// event of the flow carries them (http.request.method,
	// http.response.status_code), so a search for CONNECT finds allowed
	// tunnels too. Transparent flows leave them zero.
	Method string
	Status int
	// OrigDest, transparent only: where the client meant to connect (before
	// the firewall's redirect). Events name it when no destination was
	// resolved (no SNI, a denied name).
	OrigDest netip.AddrPort

	// Tracked is the client connection's registration, from its accept on:
	// a shutdown closes it while the hello is pending, and once the flow is
	// decided a reload that denies its names closes it. Its owner untracks
	// it (in Done). Nil: ServeTLS tracks the flow itself.
	Tracked *Tunnel

	// Done, if set, is called exactly once when the flow is over: the client
	// is closed and its event written. ServeTLS may return before that: an
	// allowed tunnel runs on without the caller's goroutine.
	Done func()
}

// alertWriteTimeout bounds the write of a TLS alert to a client.
const alertWriteTimeout = 5 * time.Second

// ServeTLS reads the ClientHello, decides every name, and on allow dials the
// checked destination, replays every byte the client sent and starts the
// tunnel. Every outcome is one event. It owns the client from the call on:
// it closes it and then calls f.Done, possibly after it has returned (the
// tunnel needs no goroutine of the caller's).
func (e *Engine) ServeTLS(st *State, f *TLSFlow) {
	finish := func() {
		f.Client.Close()
		if f.Done != nil {
			f.Done()
		}
	}
	async := false
	defer func() {
		if !async {
			finish()
		}
	}()
	t := f.Tracked
	if t == nil {
		t = e.Track(f.Listener, f.Client)
		done := f.Done
		f.Done = func() {
			e.Untrack(t)
			if done != nil {
				done()
			}
		}
	}
	f.Client.SetReadDeadline(f.Start.Add(st.Config.TLS.HelloTimeout))
	// The bytes read with the request go to the reader, which owns them from
	// here: raw is then every byte the client sent so far, the hello and
	// whatever followed it, in order, for the replay.
	buffered := f.Buffered
	f.Buffered = nil
	hello, raw, err := sni.ReadBuffered(f.Client, buffered)
	e.metrics.ClientHello.Observe(time.Since(f.Start).Seconds())
	f.Client.SetReadDeadline(time.Time{})
	// The hello has arrived: it is decided under the config active now. A
	// CONNECT target resolved under an older one is resolved again.
	if cur := e.State(); cur != st {
		st = cur
		f.Dest = netip.Addr{} // resolved again below, with the new config's dialer
	}
	cfg := st.Config
	// What the proxy itself writes to the client before the tunnel (an
	// alert) must not wait on a client that does not read.
	f.Client.SetWriteDeadline(time.Now().Add(alertWriteTimeout))
	src := f.Src.Addr()
	seg, _ := cfg.Policy.SegmentFor(src)

	var d rules.Decision
	// What the event keeps of the hello: a tunnel may outlive the hello by
	// hours, so only these strings, not the parsed hello, stay referenced.
	var sniName, ja4 string
	var ech *bool
	if hello != nil {
		x := hello.ECH
		sniName, ja4, ech = hello.ServerName, hello.JA4, &x
	}
	ev := func(d *rules.Decision) *audit.Event {
		ev := e.NewEvent(st, f.Listener, f.Src, d, f.Start)
		ev.DestDomain, ev.DestPort = f.DestName, int(f.Port)
		ev.Method, ev.Status = f.Method, f.Status
		if f.Dest.IsValid() {
			ev.DestIP = f.Dest.String()
		} else if f.OrigDest.IsValid() {
			ev.DestIP = f.OrigDest.Addr().String()
		}
		if ech != nil {
			ev.SNI, ev.JA4, ev.ECH = sniName, ja4, ech
		}
		return ev
	}
	deny := func(reason rules.Reason, alert uint8, errText string) {
		d = rules.Decision{Action: rules.Deny, Reason: reason, Segment: seg}
		if f.Outer != nil {
			d.Monitor = f.Outer.Monitor
		}
		e.Count(f.Listener, &d)
		if alert != 0 {
			sni.WriteAlert(f.Client, alert)
		}
		x := ev(&d)
		x.Error = errText
		e.Emit(x)
	}

	if err != nil {
		if why := t.ClosedBy(); why != "" {
			// Closed while the hello was pending (the end of a shutdown's
			// grace period): that is the outcome, not a bad hello.
			deny(rules.ReasonShutdown, 0, "closed: "+why)
			return
		}
		switch {
		case errors.Is(err, sni.ErrNotTLS):
			e.metrics.ClientHelloErrors.WithLabelValues(f.Listener, metrics.HelloNotTLS).Inc()
			if f.Target == "" || cfg.TLS.NonTLS == rules.Deny {
				deny(rules.ReasonNonTLS, 0, "")
				return
			}
			// tls.non_tls = allow: the CONNECT decision alone stands.
			hello = nil
			d = *f.Outer
		case errors.Is(err, sni.ErrTimeout):
			e.metrics.ClientHelloErrors.WithLabelValues(f.Listener, metrics.HelloTimeout).Inc()
			deny(rules.ReasonHelloTimeout, 0, err.Error())
			return
		case errors.Is(err, sni.ErrTooLarge):
			e.metrics.ClientHelloErrors.WithLabelValues(f.Listener, metrics.HelloTooLarge).Inc()
			deny(rules.ReasonMalformedHello, sni.AlertDecodeError, err.Error())
			return
		case errors.Is(err, sni.ErrMalformed):
			e.metrics.ClientHelloErrors.WithLabelValues(f.Listener, metrics.HelloMalformed).Inc()
			deny(rules.ReasonMalformedHello, sni.AlertDecodeError, err.Error())
			return
		default: // truncated, reset: the client went away mid-hello
			e.metrics.ClientHelloErrors.WithLabelValues(f.Listener, metrics.HelloTruncated).Inc()
			deny(rules.ReasonMalformedHello, 0, err.Error())
			return
		}
	} else {
		if f.Target == "" && hello.HasSNI {
			f.DestName, _, _ = hostname.Normalize(hello.ServerName) // transparent: the SNI is the destination
		}
		d = cfg.DecideAll(rules.Names{Source: src, Target: f.Target, Inner: hello.ServerName, HasInner: hello.HasSNI,
			TLS: true, ECH: hello.ECH, Port: f.Port})
		if d.Action == rules.Deny {
			e.Count(f.Listener, &d)
			alert := sni.AlertAccessDenied
			if d.Reason == rules.ReasonInvalidHost {
				// An SNI that is not a hostname makes the hello malformed (SPEC §8).
				alert = sni.AlertDecodeError
			}
			sni.WriteAlert(f.Client, alert)
			e.Emit(ev(&d))
			return
		}
	}

	// Transparent: the destination is the SNI, resolved and checked now (a
	// CONNECT target too, when the config changed since its 200).
	if !f.Dest.IsValid() {
		target := f.Target
		if target == "" {
			target = hello.ServerName
		}
		name, ip, _ := hostname.Normalize(target)
		f.DestName = name
		dest, rerr := st.Dialer.Resolve(context.Background(), name, ip)
		if rerr != nil {
			if errors.Is(rerr, upstream.ErrPrivate) {
				deny(rules.ReasonPrivateDestination, sni.AlertAccessDenied, rerr.Error())
				return
			}
			e.Count(f.Listener, &d)
			e.metrics.UpstreamErrors.WithLabelValues(metrics.UpstreamDNSError).Inc()
			sni.WriteAlert(f.Client, sni.AlertInternalError)
			x := ev(&d)
			x.Reason, x.Error = string(rules.ReasonDNSError), rerr.Error()
			e.Emit(x)
			return
		}
		f.Dest = dest
	}
	e.Count(f.Listener, &d)

	t0 := time.Now()
	server, err := st.Dialer.Dial(context.Background(), f.Dest, f.Port)
	e.metrics.UpstreamDial.Observe(time.Since(t0).Seconds())
	if err != nil {
		e.metrics.UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable).Inc()
		sni.WriteAlert(f.Client, sni.AlertInternalError)
		x := ev(&d)
		x.Reason, x.Error = string(rules.ReasonUpstreamError), err.Error()
		x.Duration = time.Since(f.Start)
		e.Emit(x)
		return
	}
	server.SetWriteDeadline(time.Now().Add(cfg.Limits.IdleTimeout))
	_, err = server.Write(raw)
	server.SetWriteDeadline(time.Time{})
	f.Client.SetWriteDeadline(time.Time{}) // the tunnel's copy has its own
	if err != nil {
		server.Close()
		x := ev(&d)
		x.Reason, x.Error = string(rules.ReasonUpstreamError), err.Error()
		e.Emit(x)
		return
	}
	names := rules.Names{Source: src, Target: f.Target, TLS: true, Port: f.Port}
	if hello != nil {
		names.Inner, names.HasInner, names.ECH = hello.ServerName, hello.HasSNI, hello.ECH
	}
	// From here a reload that denies these names closes the tunnel. One that
	// landed between the decision and this line is caught by deciding again.
	t.SetCloser(func() { f.Client.Close(); server.Close() })
	t.Decided(names)
	if cur := e.State(); cur != st && cur.Config.DecideAll(names).Action == rules.Deny {
		t.Close(string(rules.ReasonReload))
	}
	rawLen := int64(len(raw))
	e.Add(rawLen, 0)
	raw, hello, f.Buffered = nil, nil, nil
	pipe := tunnel.Start(f.Client, server, tunnel.Options{Idle: cfg.Limits.IdleTimeout, Counter: e, OnDone: func(res tunnel.Result) {
		x := ev(&d)
		x.SourceBytes, x.DestBytes = res.Upload+rawLen, res.Download
		x.Duration = time.Since(f.Start)
		if why := t.ClosedBy(); why != "" {
			x.Error = "closed: " + why
			if why == string(rules.ReasonReload) {
				x.Action, x.Reason = audit.ActionDeny, why
			}
		} else if res.Err != nil {
			x.Error = res.Err.Error()
		}
		e.Emit(x)
		finish()
	}})
	async = true
	t.SetCloser(pipe.Close)
	if t.ClosedBy() != "" {
		pipe.Close() // closed between Track and SetCloser
	}
}
