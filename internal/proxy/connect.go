package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/engine"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
)

// connect handles CONNECT host:port in the order SPEC §8 fixes: decide the
// host → resolve and refuse private destinations → 200 → read the ClientHello
// → decide every name → only then dial. A denied destination never sees a
// connection.
func (cn *conn) connect(st *engine.State, req *http.Request) {
	e := cn.s.Engine
	start := time.Now()
	host, portStr, err := net.SplitHostPort(req.RequestURI)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 {
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost),
			Host: req.RequestURI, Message: "CONNECT needs host:port"}, proxyStatus(statusBadRequest, "CONNECT target must be host:port"), true)
		return
	}
	cfg := st.Config
	d := cfg.DecideTarget(cn.src.Addr(), host, uint16(port))
	name, ip, _ := hostname.Normalize(host)
	event := func(d *rules.Decision) *audit.Event {
		ev := e.NewEvent(st, cn.s.listener(), cn.src, d, start)
		ev.DestDomain, ev.DestPort, ev.Method = name, int(port), http.MethodConnect
		if ip.IsValid() {
			ev.DestIP = ip.String()
		}
		return ev
	}
	if d.Action == rules.Deny {
		e.Count(cn.s.listener(), &d)
		ev := event(&d)
		ev.Status = http.StatusForbidden
		e.Emit(ev)
		cn.writeDenied(req, &d, name, ev.ID, host)
		return
	}
	dest, rerr := st.Dialer.Resolve(context.Background(), name, ip)
	if rerr != nil {
		cn.resolveFailed(st, req, &d, rerr, event, host)
		return
	}
	cn.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := cn.c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	cn.c.SetWriteDeadline(time.Time{})
	// Bytes the client sent behind the CONNECT, before reading the 200.
	var buffered []byte
	if n := cn.br.Buffered(); n > 0 {
		peek, _ := cn.br.Peek(n)
		buffered = append([]byte(nil), peek...)
	}
	// Release the request reader before a tunnel that may live for hours.
	cn.br.Reset(nil)
	readerPool.Put(cn.br)
	cn.br = nil
	// Nothing of the request stays with a tunnel that may live for hours.
	cn.lr.buf, cn.hosts = nil, nil
	cn.handedOff = true
	e.ServeTLS(st, &engine.TLSFlow{
		Listener: cn.s.listener(), Client: cn.c, Buffered: buffered, Src: cn.src, Start: time.Now(),
		Target: host, Outer: &d, Dest: dest, DestName: name, Port: uint16(port), Done: cn.done, Tracked: cn.t,
		Method: http.MethodConnect, Status: http.StatusOK,
	})
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
	cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	writeBlock(cn.c, req, blockInfo{Status: http.StatusForbidden, Action: "deny", Reason: string(d.Reason), Host: name,
		Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: eventID,
		Message: "Blocked by egress policy"}, proxyStatus(statusDenied, details), req.Method == http.MethodConnect || req.Close)
}

// resolveFailed answers a destination that cannot be used: 403
// destination_ip_prohibited for refused addresses, 502 dns_error otherwise.
func (cn *conn) resolveFailed(st *engine.State, req *http.Request, d *rules.Decision, err error, event func(*rules.Decision) *audit.Event, host string) {
	e := cn.s.Engine
	name, _, _ := hostname.Normalize(host)
	if name == "" {
		name = host
	}
	if errors.Is(err, upstream.ErrPrivate) {
		pd := rules.Decision{Action: rules.Deny, Reason: rules.ReasonPrivateDestination, Segment: d.Segment, Monitor: d.Monitor}
		e.Count(cn.s.listener(), &pd)
		ev := event(&pd)
		ev.Status, ev.Error = http.StatusForbidden, err.Error()
		e.Emit(ev)
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusForbidden, Action: "deny", Reason: string(pd.Reason), Host: name,
			Segment: pd.SegmentName(), EventID: ev.ID, Message: "Destination address not allowed"},
			proxyStatus(statusIPForbidden, ""), true)
		return
	}
	e.Count(cn.s.listener(), d)
	e.Metrics().UpstreamErrors.WithLabelValues("dns_error").Inc()
	ev := event(d)
	ev.Reason, ev.Status, ev.Error = string(rules.ReasonDNSError), http.StatusBadGateway, err.Error()
	e.Emit(ev)
	cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	writeBlock(cn.c, req, blockInfo{Status: http.StatusBadGateway, Action: "allow", Reason: string(rules.ReasonDNSError), Host: name,
		Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: ev.ID, Message: "Destination name does not resolve"},
		proxyStatus(statusDNS, ""), true)
}
