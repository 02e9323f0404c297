package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/elazarl/goproxy"
)

// Forwarding one plain-HTTP request, start to end, on the client
// connection's goroutine:
//
//	decide → refuse a body the method may not carry → resolve and check the
//	address → take the client's origin (or dial the checked address) → write
//	the request (its body from a goroutine of this request, joined before
//	return) → read the response head → copy the response to the client →
//	join the body writer → keep or close both connections.
//
// Nothing outlives forward except the origin kept for the next request, and
// nothing but this goroutine touches the client's reader once forward has
// returned.

// Limits on what an origin may send.
const (
	maxResponseHeaderBytes = 256 << 10
	maxInformational       = 8 // 1xx responses before the final one
	// bodyFinishWait bounds how long the proxy waits for a request body that
	// was read to its end to be flushed upstream after the response is done.
	bodyFinishWait = time.Second
)

// forwarder holds goproxy's request hygiene (RemoveProxyHeaders needs a
// ProxyHttpServer); the round trip itself is forward's.
var forwarder = sync.OnceValue(func() *goproxy.ProxyHttpServer {
	p := goproxy.NewProxyHttpServer()
	p.KeepAcceptEncoding = true // pass the client's encodings through untouched
	return p
})

// bodyNotAllowed reports a request whose method gives a body no meaning and
// that carries one anyway: the "CL.0" smuggling shape, where an origin that
// ignores the body of a GET reads it as a second request. Such a request is
// refused (400), never forwarded.
func bodyNotAllowed(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodTrace:
		return req.ContentLength != 0 || len(req.TransferEncoding) > 0
	}
	return false
}

// isWebSocket reports an upgrade to WebSocket, the one upgrade forwarded
// (RFC 6455 §4.1: Connection contains "upgrade", Upgrade is "websocket").
func isWebSocket(h http.Header) bool {
	return hasToken(h, "Connection", "upgrade") && hasToken(h, "Upgrade", "websocket")
}

// removeRequestHopHeaders strips hop-by-hop fields from a request, including
// those its Connection field names; a WebSocket upgrade keeps
// Connection: Upgrade and Upgrade.
func removeRequestHopHeaders(h http.Header, websocket bool) {
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				h.Del(t)
			}
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Http2-Settings"} {
		h.Del(k)
	}
	if websocket {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
	}
}

// forward decides names and, on allow, forwards req to target (the name
// whose address is dialed) on port. It returns whether the client connection
// may carry another request. The request's outcome is begun here and
// finished on every path.
func (cn *conn) forward(st *active.State, req *http.Request, names rules.Names, target string, port uint16, start time.Time, keep bool) bool {
	o := cn.begin(st, start)
	name, ip, _ := hostname.Normalize(target)
	ev := o.Event
	ev.Method, ev.URLDomain, ev.URLPath, ev.DestDomain, ev.DestPort = req.Method, name, req.URL.Path, name, int(port)
	if ip.IsValid() {
		ev.DestIP = ip.String()
	}
	d := st.Config.DecideAll(names)
	// A request body we won't forward can't be skipped safely: close after.
	hasBody := req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody
	if cn.s.Mode == Explicit && cn.askIdentity(st, &d) {
		cn.answerAuth(o, st, req, d.Segment, rules.ReasonAuthRequired, "", "", &d)
		return keep && !hasBody
	}
	if d.Action == rules.Deny {
		o.Decide(d)
		ev.Status = http.StatusForbidden
		o.Finish()
		req.Close = req.Close || hasBody
		cn.writeDenied(req, &d, name, ev.ID, target)
		return keep && !hasBody
	}
	if bodyNotAllowed(req) {
		cn.refuseBody(o, req, d, name)
		return false
	}
	dest, err := st.Dialer.Resolve(context.Background(), name, ip)
	if err != nil {
		cn.resolveFailed(o, req, d, err, target)
		return false
	}
	o.Decide(d)
	ev.DestIP = dest.String()
	body := prepareRequest(req, hasBody)
	defer cn.register(st, names)()
	return cn.relay(st, o, req, body, originKey{addr: dest, port: port, version: st.Config.Version}, keep)
}

// refuseBody answers a GET, HEAD or TRACE that carries a body (CL.0): 400,
// a deny, the connection closed.
func (cn *conn) refuseBody(o *outcome.Outcome, req *http.Request, d rules.Decision, name string) {
	o.Deny(rules.ReasonInvalidRequest, d.Segment, d.Monitor)
	o.Event.Status, o.Event.Error = http.StatusBadRequest, "a "+req.Method+" request with a body"
	o.Finish()
	cn.writeTimed(func(w io.Writer) error {
		return writeBlock(w, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidRequest), Host: name,
			Segment: d.SegmentName(), EventID: o.Event.ID, Message: "A " + req.Method + " request may not carry a body"},
			proxyStatus(statusRequestError, "body on "+req.Method), true)
	})
}

// prepareRequest applies the request hygiene (goproxy's, then every
// hop-by-hop field) and wraps the body in one the proxy owns.
func prepareRequest(req *http.Request, hasBody bool) *requestBody {
	websocket := isWebSocket(req.Header)
	goproxy.RemoveProxyHeaders(&goproxy.ProxyCtx{Req: req, Proxy: forwarder()}, req)
	removeRequestHopHeaders(req.Header, websocket)
	req.Header.Del("Host") // the URL host is what is sent, and what was decided
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // add none of our own
	}
	req.Close = false
	if !hasBody {
		req.Body, req.ContentLength = nil, 0
		return nil
	}
	body := newRequestBody(req.Body, req.ContentLength)
	req.Body = body
	return body
}

// register tells the connection registry which names the connection carries
// while the request runs: a reload that denies them closes the request and
// its origin; one that landed since the decision is caught by deciding
// again. The returned func undoes it.
func (cn *conn) register(st *active.State, names rules.Names) func() {
	t := cn.t
	t.SetCloser((*requestCloser)(cn))
	t.Decided(names)
	if cur := cn.s.Active.Load(); cur != st && cur.Config.DecideAll(names).Action == rules.Deny {
		t.Close(string(rules.ReasonReload))
	}
	return func() {
		t.Undecided()
		t.SetCloser(nil)
	}
}

// requestCloser is a connection's closer in the registry while a request
// runs (conntrack.Closer): it closes the client and the request's origin. A
// conversion of the conn, so that setting it allocates nothing.
type requestCloser conn

func (r *requestCloser) Close() {
	cn := (*conn)(r)
	cn.c.Close()
	if o := cn.up.Load(); o != nil {
		o.c.Close()
	}
}

// relay sends the request on the client's origin and the response back, and
// finishes the outcome.
func (cn *conn) relay(st *active.State, o *outcome.Outcome, req *http.Request, body *requestBody, key originKey, keep bool) bool {
	lim := st.Config.Limits
	ev := o.Event
	headBytes := int64(cn.headLen)
	x := exchange{cn: cn, req: req, body: body, idle: lim.IdleTimeout}
	resp, err := x.run(st, key)
	if why := cn.t.ClosedBy(); err != nil && why != "" {
		// Cut by a reload or a shutdown before the response: that is the
		// outcome, not a failed destination; the client is gone.
		o.Cut(why)
		ev.SourceBytes, ev.Duration = headBytes+body.N(), time.Since(ev.Time)
		o.Finish()
		return false
	}
	if err != nil {
		cn.s.Metrics.UpstreamErrors.WithLabelValues(upstreamReason(err)).Inc()
		o.Fail(rules.ReasonUpstreamError, err)
		ev.Status, ev.SourceBytes, ev.Duration = http.StatusBadGateway, headBytes+body.N(), time.Since(ev.Time)
		o.Finish()
		d := o.Decision()
		cn.writeTimed(func(w io.Writer) error {
			return writeBlock(w, req, blockInfo{Status: http.StatusBadGateway, Action: "allow", Reason: string(rules.ReasonUpstreamError), Host: ev.DestDomain,
				Segment: d.SegmentName(), Rule: d.RuleName(), Ruleset: d.Ruleset(), EventID: ev.ID, Message: "Destination unavailable"},
				proxyStatus(statusUnavailable, ""), true)
		})
		return false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return cn.upgraded(&x, resp, o, headBytes)
	}
	keep = responseFraming(req, resp, body, keep)
	originKeep := !resp.Close
	resp.Close = !keep
	down := &countingWriter{w: &deadlineWriter{c: cn.c, d: lim.IdleTimeout}}
	werr := resp.Write(down)
	if werr != nil {
		// Cut short (most often a client that stopped reading): the origin
		// connection is closed first, so that closing the body does not
		// drain the rest of the response.
		x.o.c.Close()
		cn.reset = isTimeout(werr)
	}
	resp.Body.Close()
	bodyErr := x.join()
	cn.s.Record.Add(headBytes+body.N(), down.n)
	ev.SourceBytes, ev.DestBytes = headBytes+body.N(), down.n
	ev.Status, ev.Duration = resp.StatusCode, time.Since(ev.Time)
	cut := cn.t.ClosedBy()
	if cut != "" {
		o.Cut(cut)
	} else if werr != nil {
		ev.Error = werr.Error()
	}
	o.Finish()
	complete := body.Complete()
	if werr == nil && bodyErr == nil && complete && originKeep && cut == "" {
		cn.keepOrigin(x.o, lim.IdleTimeout)
	} else {
		cn.dropOrigin()
	}
	return keep && werr == nil && complete && cut == ""
}

// responseFraming prepares resp for the client and says whether the client
// connection can carry another request after it: an origin connection is
// kept only if the response ended where its framing said; the client
// connection only if its framing is intact too (the whole request body read).
func responseFraming(req *http.Request, resp *http.Response, body *requestBody, keep bool) bool {
	removeHopHeaders(resp.Header, false)
	// HTTP/1.0 for an HTTP/1.0 client, else HTTP/1.1 (an "HTTP/1.2" client
	// is answered in the version egress speaks, not its own).
	resp.ProtoMajor, resp.ProtoMinor, resp.Proto = 1, 1, "HTTP/1.1"
	if !req.ProtoAtLeast(1, 1) {
		resp.ProtoMinor, resp.Proto = 0, "HTTP/1.0"
	}
	if resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 && bodyAllowed(resp.StatusCode) && req.Method != http.MethodHead {
		keep = false // a body that ends with the connection
	}
	if resp.ContentLength < 0 && !req.ProtoAtLeast(1, 1) {
		resp.TransferEncoding = nil // no chunked coding for an HTTP/1.0 client: the body ends with the connection
		keep = false
	}
	if !body.Complete() && resp.ContentLength >= 0 {
		// The origin answered before the whole body arrived. Its rest sits
		// where the next request would be read: this is the last response.
		keep = false
	}
	return keep
}

// upstreamReason is the egress_upstream_errors_total reason of a failed
// exchange.
func upstreamReason(err error) string {
	if isTimeout(err) {
		return metrics.UpstreamTimeout
	}
	return metrics.UpstreamDestinationUnavailable
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// exchange is one request's round trip on the client's origin.
type exchange struct {
	cn   *conn
	req  *http.Request
	body *requestBody
	idle time.Duration

	o       *origin
	bodyErr chan error // the body writer's result; nil when there is no writer
}

// run writes the request on the client's origin (a kept one if it matches
// key, else a new dial of the checked address) and reads the response head,
// forwarding informational responses. A kept connection that turns out dead
// before any response byte is retried once on a new one when the request has
// no body (nothing of the client's was consumed).
func (x *exchange) run(st *active.State, key originKey) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		o, reused, err := x.cn.originFor(st, key)
		if err != nil {
			return nil, err
		}
		x.o = o
		resp, err := x.roundTrip()
		if err == nil {
			return resp, nil
		}
		x.join()
		x.cn.dropOrigin()
		if reused && attempt == 0 && x.body == nil && idempotent(x.req.Method) && staleConn(err) {
			continue
		}
		return nil, err
	}
}

// staleConn reports an error that a kept connection closed by the origin
// gives before any response byte.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// idempotent methods may be sent again when a kept connection turns out dead
// (RFC 9110 §9.2.2), as net/http's transport does.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// writeRequest writes the request head and body to the origin.
func (x *exchange) writeRequest() error {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(&deadlineWriter{c: x.o.c, d: x.idle})
	err := x.req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	return err
}

func (x *exchange) roundTrip() (*http.Response, error) {
	x.bodyErr = nil
	if x.body == nil {
		if err := x.writeRequest(); err != nil {
			return nil, err
		}
	} else {
		// The body is copied while the response is awaited: an origin may
		// answer before it has read it all. The goroutine is this request's;
		// join waits for it before the client's reader is used again.
		done := make(chan error, 1)
		x.bodyErr = done
		go func() {
			defer func() {
				if v := recover(); v != nil {
					x.cn.s.Track.Panicked(x.cn.s.listener(), v)
					done <- fmt.Errorf("panic: %v", v)
				}
			}()
			done <- x.writeRequest()
		}()
	}
	// The response head, within idle_timeout and maxResponseHeaderBytes.
	o := x.o
	for n := 0; ; n++ {
		o.rd.arm(x.idle, maxResponseHeaderBytes)
		resp, err := http.ReadResponse(o.br, x.req)
		o.rd.arm(x.idle, 0)
		if err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				err = errors.New("response header too large")
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// 100 Continue, 103 Early Hints: passed on.
		if n >= maxInformational {
			return nil, errors.New("too many informational responses")
		}
		removeHopHeaders(resp.Header, false)
		if err := x.cn.writeInformational(x.req, resp); err != nil {
			return nil, err
		}
	}
}

// join waits for the body writer. A writer still reading a body the client
// has not finished sending is stopped (its read and its write are cut); one
// whose body was all read gets bodyFinishWait to flush it.
func (x *exchange) join() error {
	if x.bodyErr == nil {
		return nil
	}
	ch := x.bodyErr
	x.bodyErr = nil
	select {
	case err := <-ch:
		return err
	default:
	}
	if x.body.Complete() {
		t := time.NewTimer(bodyFinishWait)
		defer t.Stop()
		select {
		case err := <-ch:
			return err
		case <-t.C:
		}
	}
	x.o.c.Close()
	x.cn.lr.abortRead()
	err := <-ch
	x.cn.lr.aborted.Store(false)
	if err == nil {
		err = errors.New("request body cut")
	}
	return err
}

// upgraded finishes a 101 Switching Protocols: the head goes to the client
// with its Connection and Upgrade fields, then both connections are handed
// to the tunnel code (idle timeout, byte counts) until either side ends. It
// returns false: the connection is no longer HTTP. oc is finished on every
// path.
func (cn *conn) upgraded(x *exchange, resp *http.Response, oc *outcome.Outcome, headBytes int64) bool {
	ev := oc.Event
	defer func() {
		ev.Duration = time.Since(ev.Time)
		oc.Finish()
	}()
	ev.Status, ev.SourceBytes = resp.StatusCode, headBytes
	o := x.o
	if bodyErr := x.join(); !isWebSocket(x.req.Header) || !isWebSocket(resp.Header) || bodyErr != nil {
		// An upgrade nobody asked for, or to another protocol.
		cn.dropOrigin()
		oc.Fail(rules.ReasonUpstreamError, errors.New("origin switched protocols without a WebSocket upgrade"))
		ev.Status = http.StatusBadGateway
		cn.writeTimed(func(w io.Writer) error {
			return writeBlock(w, x.req, blockInfo{Status: http.StatusBadGateway, Action: "allow", Reason: string(rules.ReasonUpstreamError),
				EventID: ev.ID, Message: "The destination switched protocols unasked"}, proxyStatus(statusBadRequest, "unexpected 101"), true)
		})
		return false
	}
	removeHopHeaders(resp.Header, true)
	resp.ProtoMajor, resp.ProtoMinor, resp.Proto = 1, 1, "HTTP/1.1"
	resp.Close = false
	down := &countingWriter{w: &deadlineWriter{c: cn.c, d: x.idle}}
	err := resp.Write(down)
	// Bytes either side sent right behind the handshake are passed on first.
	if n := cn.br.Buffered(); n > 0 && err == nil {
		b, _ := cn.br.Peek(n)
		var k int
		k, err = (&deadlineWriter{c: o.c, d: x.idle}).Write(b)
		ev.SourceBytes += int64(k)
		cn.br.Discard(n)
	}
	if n := o.br.Buffered(); n > 0 && err == nil {
		b, _ := o.br.Peek(n)
		_, err = down.Write(b)
		o.br.Discard(n)
	}
	ev.DestBytes = down.n
	cn.s.Record.Add(ev.SourceBytes, down.n)
	if err != nil {
		cn.dropOrigin()
		ev.Error = err.Error()
		return false
	}
	// The origin leaves the client's hands: the tunnel owns both sockets now.
	cn.up.Store(nil)
	var res tunnel.Result
	pipe := tunnel.Start(cn.c, o.c, tunnel.Options{Idle: x.idle, Counter: cn.s.Record,
		OnDone: func(r tunnel.Result) { res = r }, OnPanic: func(v any) { cn.s.Track.Panicked(cn.s.listener(), v) }})
	cn.t.SetCloser(pipe)
	if cn.t.ClosedBy() != "" {
		pipe.Close()
	}
	<-pipe.Done()
	o.release()
	ev.SourceBytes, ev.DestBytes = ev.SourceBytes+res.Upload, ev.DestBytes+res.Download
	if why := cn.t.ClosedBy(); why != "" {
		oc.Cut(why)
	} else if res.Err != nil {
		ev.Error = res.Err.Error()
	}
	return false
}

// writeInformational passes a 1xx response on to the client.
func (cn *conn) writeInformational(req *http.Request, resp *http.Response) error {
	if !req.ProtoAtLeast(1, 1) {
		return nil // HTTP/1.0 has no 1xx
	}
	return cn.writeTimed(func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 512)
		fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
		resp.Header.Write(bw)
		bw.WriteString("\r\n")
		return bw.Flush()
	})
}

// writeTimed runs write on the client connection under a write deadline.
func (cn *conn) writeTimed(write func(io.Writer) error) error {
	cn.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := write(cn.c)
	cn.c.SetWriteDeadline(time.Time{})
	return err
}

// writeTimeout bounds a small response written to a client (a block page, a
// 1xx, an error).
const writeTimeout = 5 * time.Second

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}
