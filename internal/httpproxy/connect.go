package httpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/identity"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/upstream"
)

// connectEstablished is the answer to an allowed CONNECT (a package
// variable: a conversion at the call would allocate, as the Write is an
// interface's).
var connectEstablished = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// flowConnect is a CONNECT's TLS flow with its Connect.
type flowConnect struct {
	f tlsproxy.Flow
	c tlsproxy.Connect
}

// connect handles CONNECT host:port in the order SPEC §8 fixes: decide the
// host → resolve and refuse private destinations → 200 → read the ClientHello
// → decide every name → only then dial. A denied destination never sees a
// connection.
func (cn *conn) connect(st *active.State, req *http.Request) {
	start := time.Now()
	host, portStr, err := net.SplitHostPort(req.RequestURI)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 {
		cn.writeTimed(func(w io.Writer) error {
			return writeBlock(w, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost),
				Host: req.RequestURI, Message: "CONNECT needs host:port"}, proxyStatus(statusBadRequest, "CONNECT target must be host:port"), true)
		})
		return
	}
	id := cn.who.current(st)
	outer := st.Config.DecideOuterAs(cn.src.Addr(), id.User, id.Groups, host, uint16(port))
	d := outer.Decision
	if cn.askIdentity(st, &d) {
		cn.authAnswer(st, req, start, d.Segment, rules.ReasonAuthRequired, "", "", &d)
		return
	}
	if d.Action == rules.Deny {
		o := cn.beginConnect(st, start, outer, uint16(port))
		o.Decide(d)
		o.Event.Status = http.StatusForbidden
		o.Finish()
		cn.writeDenied(req, &d, outer.Name, o.Event.ID, host)
		return
	}
	if cn.inline {
		// On the parker: only an answer at hand (an IP, upstream.hosts, a
		// fresh DNS cache entry). A DNS lookup may take seconds: it goes
		// on a worker. (Copies made there: captured, outer and d would be
		// moved to the heap on every CONNECT.)
		dest, ok, rerr := st.Dialer.ResolveNow(outer.Name, outer.IP)
		if !ok {
			o, dd := outer, d
			cn.next = func() { cn.allowed(st, req, o, dd, id, uint16(port), host, start) }
			return
		}
		cn.allowedTo(st, req, outer, d, id, uint16(port), host, start, dest, rerr)
		return
	}
	cn.allowed(st, req, outer, d, id, uint16(port), host, start)
}

// beginConnect starts the outcome of a CONNECT refused before its 200; an
// allowed one gets its outcome from the TLS flow.
func (cn *conn) beginConnect(st *active.State, start time.Time, outer rules.Outer, port uint16) *outcome.Outcome {
	o := cn.begin(st, start)
	o.Event.DestDomain, o.Event.DestPort, o.Event.Method = outer.Name, int(port), http.MethodConnect
	if outer.IP.IsValid() {
		o.Event.DestIP = outer.IP.String()
	}
	return o
}

// allowed goes on with an allowed CONNECT: the destination's address, the
// 200, and the TLS flow that reads the ClientHello.
func (cn *conn) allowed(st *active.State, req *http.Request, outer rules.Outer, d rules.Decision, id identity.Identity, port uint16, host string, start time.Time) {
	dest, rerr := st.Dialer.Resolve(context.Background(), outer.Name, outer.IP)
	cn.allowedTo(st, req, outer, d, id, port, host, start, dest, rerr)
}

// allowedTo is allowed once the lookup is done.
func (cn *conn) allowedTo(st *active.State, req *http.Request, outer rules.Outer, d rules.Decision, id identity.Identity, port uint16, host string, start time.Time, dest netip.Addr, rerr error) {
	if rerr != nil {
		cn.resolveFailed(cn.beginConnect(st, start, outer, port), req, d, rerr, host)
		return
	}
	cn.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := cn.c.Write(connectEstablished); err != nil {
		// Allowed, but the client is gone before its 200 (or, on a parker,
		// does not take it at once): still a decision.
		o := cn.beginConnect(st, start, outer, port)
		o.Decide(d)
		o.Event.DestIP = dest.String()
		o.Event.Error = "client gone before the 200: " + err.Error()
		o.Finish()
		return
	}
	cn.c.SetWriteDeadline(time.Time{})
	// Bytes the client sent behind the CONNECT, before reading the 200.
	var buffered []byte
	if n := cn.br.Buffered(); n > 0 {
		peek, _ := cn.br.Peek(n)
		buffered = append([]byte(nil), peek...)
	}
	// Nothing of the request stays with a tunnel that may live for hours.
	done := cn.handOff()
	fc := &flowConnect{ // the flow and its CONNECT in one allocation
		f: tlsproxy.Flow{
			Listener: cn.s.listener(), Client: cn.c, Buffered: buffered, Src: cn.src, Start: time.Now(), Port: port,
			Conn: cn.t, Done: done,
		},
		c: tlsproxy.Connect{Outer: outer, State: st, Dest: dest, Identity: id},
	}
	f := &fc.f
	f.Connect = &fc.c
	// On Linux a plain TCP client's flow goes on on the event loops: this
	// goroutine, the connection's, ends here.
	if sock := eventedSocket(cn.c); sock != nil {
		f.Client = sock
		cn.s.TLS.ServeEvented(f)
		return
	}
	if cn.inline {
		cn.next = func() { cn.s.TLS.Serve(f) } // it waits for the hello: not on the parker
		return
	}
	cn.s.TLS.Serve(f)
}

// writeDenied answers a policy deny: 403 with the block page and
// Proxy-Status: egress; error=http_request_denied; details="<reason> <rule>".
func (cn *conn) writeDenied(req *http.Request, d *rules.Decision, name, eventID, raw string) {
	if name == "" {
		name = raw
	}
	details := string(d.Reason)
	if r := d.RuleName(); r != "" {
		details += " " + r
	}
	cn.writeTimed(func(w io.Writer) error {
		return writeBlock(w, req, blockInfo{Status: http.StatusForbidden, Action: "deny", Reason: string(d.Reason), Host: name,
			Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: eventID,
			Message: "Blocked by egress policy"}, proxyStatus(statusDenied, details), req.Method == http.MethodConnect || req.Close)
	})
}

// resolveFailed answers a destination that cannot be used, and finishes o:
// 403 destination_ip_prohibited for refused addresses (a deny), 502 dns_error
// otherwise (an allow that failed).
func (cn *conn) resolveFailed(o *outcome.Outcome, req *http.Request, d rules.Decision, err error, host string) {
	name := o.Event.DestDomain
	if name == "" {
		name = host
	}
	if errors.Is(err, upstream.ErrPrivate) {
		o.Deny(rules.ReasonPrivateDestination, d.Segment, d.Monitor)
		o.Event.Status, o.Event.Error = http.StatusForbidden, err.Error()
		o.Finish()
		cn.writeTimed(func(w io.Writer) error {
			return writeBlock(w, req, blockInfo{Status: http.StatusForbidden, Action: "deny", Reason: string(rules.ReasonPrivateDestination), Host: name,
				Segment: d.SegmentName(), EventID: o.Event.ID, Message: "Destination address not allowed"},
				proxyStatus(statusIPForbidden, ""), true)
		})
		return
	}
	o.Decide(d)
	o.Fail(rules.ReasonDNSError, err)
	cn.s.Metrics.UpstreamErrors.WithLabelValues(metrics.UpstreamDNSError).Inc()
	o.Event.Status = http.StatusBadGateway
	o.Finish()
	cn.writeTimed(func(w io.Writer) error {
		return writeBlock(w, req, blockInfo{Status: http.StatusBadGateway, Action: "allow", Reason: string(rules.ReasonDNSError), Host: name,
			Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: o.Event.ID, Message: "Destination name does not resolve"},
			proxyStatus(statusDNS, ""), true)
	})
}
