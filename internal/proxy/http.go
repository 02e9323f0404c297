package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/engine"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
	"github.com/elazarl/goproxy"
)

// destKey carries the checked destination address from the decision to the
// transport's dial, so that the address dialed is the one that was checked.
type destKey struct{}

type checkedDest struct {
	addr   netip.Addr
	dialer *upstream.Dialer
}

// forwarder returns the goproxy server used to forward plain HTTP.
func (s *Server) forwarder() *goproxy.ProxyHttpServer {
	s.initFwd.Do(func() {
		p := goproxy.NewProxyHttpServer()
		p.KeepAcceptEncoding = true // pass the client's encodings through untouched
		p.Tr = &http.Transport{
			Proxy:                  nil, // never chain to an environment proxy
			DialContext:            dialChecked,
			DisableCompression:     true,
			MaxIdleConnsPerHost:    16,
			IdleConnTimeout:        90 * time.Second,
			ResponseHeaderTimeout:  5 * time.Minute,
			MaxResponseHeaderBytes: 256 << 10,
		}
		s.fwd = p
	})
	return s.fwd
}

// dialChecked dials the address the request's decision checked, never a
// fresh lookup of the name.
func dialChecked(ctx context.Context, _, addr string) (net.Conn, error) {
	d, ok := ctx.Value(destKey{}).(checkedDest)
	if !ok {
		return nil, errors.New("egress: no checked destination for this request")
	}
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	return d.dialer.Dial(ctx, d.addr, uint16(port))
}

// plain decides and forwards one absolute-form request. It returns whether
// the connection may carry another request.
func (cn *conn) plain(st *engine.State, req *http.Request) bool {
	start := time.Now()
	keep := !req.Close
	if cn.s.TransparentPort != 0 {
		return cn.transparent(st, req, start, keep)
	}
	if !req.URL.IsAbs() || req.URL.Host == "" {
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost),
			Message: "This is a forward proxy: send absolute-URI requests or CONNECT"}, proxyStatus(statusBadRequest, "not a proxy request"), true)
		return false
	}
	if req.URL.Scheme != "http" {
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost), Host: req.URL.Host,
			Message: "Only http:// URLs are forwarded; use CONNECT for https"}, proxyStatus(statusBadRequest, "unsupported scheme"), true)
		return false
	}
	port := uint16(80)
	if p := req.URL.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			keep = false
		}
		port = uint16(n)
	}
	names := rules.Names{Source: cn.src.Addr(), Target: req.URL.Host, Port: port}
	if len(cn.hosts) > 0 {
		names.Inner, names.HasInner = cn.hosts[0], true
	}
	return cn.forward(st, req, names, req.URL.Host, port, start, keep)
}

// transparent handles an origin-form request on the transparent HTTP
// listener: the Host header is the only name (its port is ignored), and
// transparent.http_port is dialed.
func (cn *conn) transparent(st *engine.State, req *http.Request, start time.Time, keep bool) bool {
	port := cn.s.TransparentPort
	host := req.Host
	names := rules.Names{Source: cn.src.Addr(), Inner: host, HasInner: host != "", Port: port}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if req.URL.IsAbs() {
		// An absolute URI sent to a transparent port: decide both names.
		names.Target = req.URL.Host
	}
	req.URL.Scheme = "http"
	req.URL.Host = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(int(port)))
	return cn.forward(st, req, names, host, port, start, keep)
}

// forward decides names and, on allow, forwards req to target (the name
// whose address is dialed) on port.
func (cn *conn) forward(st *engine.State, req *http.Request, names rules.Names, target string, port uint16, start time.Time, keep bool) bool {
	e := cn.s.Engine
	cfg := st.Config
	d := cfg.DecideAll(names)
	name, ip, _ := hostname.Normalize(target)
	ev := e.NewEvent(st, cn.s.listener(), cn.src, &d, start)
	ev.Method, ev.URLDomain, ev.URLPath, ev.DestDomain, ev.DestPort = req.Method, name, req.URL.Path, name, int(port)
	if ip.IsValid() {
		ev.DestIP = ip.String()
	}
	// A request body we won't forward can't be skipped safely: close after.
	hasBody := req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody
	if d.Action == rules.Deny {
		e.Count(cn.s.listener(), &d)
		ev.Status = http.StatusForbidden
		e.Emit(ev)
		req.Close = req.Close || hasBody
		cn.writeDenied(req, &d, name, ev.ID, target)
		return keep && !hasBody
	}
	dest, err := st.Dialer.Resolve(context.Background(), name, ip)
	if err != nil {
		cn.resolveFailed(st, req, &d, err, func(d *rules.Decision) *audit.Event {
			x := e.NewEvent(st, cn.s.listener(), cn.src, d, start)
			x.Method, x.URLDomain, x.URLPath, x.DestDomain, x.DestPort, x.DestIP = ev.Method, ev.URLDomain, ev.URLPath, ev.DestDomain, ev.DestPort, ev.DestIP
			return x
		}, target)
		return false
	}
	e.Count(cn.s.listener(), &d)
	ev.DestIP = dest.String()

	// Forward with goproxy's request hygiene and round trip.
	fwd := cn.s.forwarder()
	ctx := &goproxy.ProxyCtx{Req: req, Proxy: fwd}
	goproxy.RemoveProxyHeaders(ctx, req)
	req.Header.Del("Host") // the URL host is what is sent, and what was decided
	for _, h := range []string{"Keep-Alive", "Te", "Trailer", "Upgrade"} {
		if h == "Upgrade" && isUpgrade(req.Header) {
			continue
		}
		req.Header.Del(h)
	}
	up := &countingReader{r: req.Body}
	if hasBody {
		req.Body = up
	}
	req.Close = false
	t0 := time.Now()
	rctx, cancel := context.WithCancel(context.WithValue(context.Background(), destKey{}, checkedDest{addr: dest, dialer: st.Dialer}))
	defer cancel()
	outReq := req.WithContext(rctx)
	tracked := e.Track(cn.s.listener(), names, true, cn.c)
	defer e.Untrack(tracked)
	resp, err := ctx.RoundTrip(outReq)
	e.Metrics().UpstreamDial.Observe(time.Since(t0).Seconds())
	if err != nil {
		e.Metrics().UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable).Inc()
		ev.Reason, ev.Status, ev.Error = string(rules.ReasonUpstreamError), http.StatusBadGateway, err.Error()
		ev.SourceBytes, ev.Duration = up.n.Load(), time.Since(start)
		e.Emit(ev)
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadGateway, Action: "allow", Reason: string(rules.ReasonUpstreamError), Host: name,
			Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: ev.ID, Message: "Destination unavailable"},
			proxyStatus(statusUnavailable, ""), true)
		return false
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header, resp.StatusCode == http.StatusSwitchingProtocols)
	resp.ProtoMajor, resp.ProtoMinor, resp.Proto = req.ProtoMajor, req.ProtoMinor, req.Proto
	if resp.ContentLength < 0 && !req.ProtoAtLeast(1, 1) {
		keep = false // an HTTP/1.0 body of unknown length ends with the connection
	}
	resp.Close = !keep
	down := &countingWriter{w: cn.c}
	werr := resp.Write(down)
	if resp.StatusCode == http.StatusSwitchingProtocols && werr == nil {
		// WebSocket and other upgrades: the connection becomes a tunnel.
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			upN, downN := upgradeTunnel(cn, rwc)
			ev.SourceBytes, ev.DestBytes = up.n.Load()+upN, down.n.Load()+downN
		}
		keep = false
	} else {
		ev.SourceBytes, ev.DestBytes = up.n.Load(), down.n.Load()
	}
	e.Add(ev.SourceBytes, ev.DestBytes)
	ev.Status, ev.Duration = resp.StatusCode, time.Since(start)
	if why := tracked.ClosedBy(); why != "" {
		ev.Error = "closed: " + why
	} else if werr != nil {
		ev.Error = werr.Error()
	}
	e.Emit(ev)
	return keep && werr == nil && tracked.ClosedBy() == ""
}

// upgradeTunnel copies between the client (and what its reader holds) and an
// upgraded upstream connection until either side ends.
func upgradeTunnel(cn *conn, rwc io.ReadWriteCloser) (up, down int64) {
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(rwc, cn.br)
		rwc.Close()
		done <- n
	}()
	down, _ = io.Copy(cn.c, rwc)
	cn.c.Close()
	return <-done, down
}

func isUpgrade(h http.Header) bool {
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// removeHopHeaders strips hop-by-hop fields from a response (RFC 9110 §7.6.1),
// including those the Connection field names.
func removeHopHeaders(h http.Header, upgrade bool) {
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !(upgrade && strings.EqualFold(t, "upgrade")) {
				h.Del(t)
			}
		}
	}
	for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding"} {
		h.Del(k)
	}
	if !upgrade {
		h.Del("Connection")
		h.Del("Upgrade")
	}
}

type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (c *countingReader) Close() error { return c.r.Close() }

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n.Add(int64(k))
	return k, err
}
