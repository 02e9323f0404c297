// Package httpproxy owns the HTTP/1.1 listeners: the explicit forward proxy
// (proxy.listen: absolute-form requests and CONNECT) and the transparent HTTP
// listener (transparent.http_listen: origin-form requests routed by their
// Host header), one connection loop with the mode declared. Each plain-HTTP
// request is decided on its own and forwarded on an upstream connection the
// client connection owns (forward.go, origin.go); a CONNECT is decided on its
// host before the 200 and handed to internal/tlsproxy after it.
//
// It keeps its own accept loop instead of net/http.Server for two reasons:
// net/http drops the Host header of absolute-URI requests (SPEC §8 needs it to
// compare with the URL host), and a hijacked net/http connection hides the
// bytes a client sent right behind its CONNECT (goproxy issues #801/#805):
// here the bufio.Reader that parsed the request is ours, and what it holds is
// replayed first (SPEC §5.3).
package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
)

// Mode is what a listener speaks.
type Mode int

const (
	// Explicit: the forward proxy. Absolute-form requests, CONNECT.
	Explicit Mode = iota
	// Transparent: firewall-redirected HTTP. Origin-form requests routed by
	// their Host header to Server.Port, no CONNECT.
	Transparent
)

// Server is one HTTP listener.
type Server struct {
	Mode          Mode
	Port          uint16 // Transparent: the upstream port dialed (transparent.http_port)
	ProxyProtocol bool
	// ProxyTLS: this is the TLS proxy listener (proxy.tls_listen, listener
	// name proxy_tls): each connection starts with a TLS handshake (client
	// certificates per proxy.client_ca_file), and Basic is accepted.
	ProxyTLS bool

	Active  *active.Store
	Track   *conntrack.Tracker
	Record  *outcome.Recorder
	Metrics *metrics.Metrics
	TLS     *tlsproxy.Proxy // CONNECT tunnels after their 200

	wg sync.WaitGroup

	// ev: the explicit listener's accept on the parkers (evented_linux.go),
	// which takes the socket from the listener Serve was given.
	ev      conntrack.EventedListener
	workers workers // the request loops of connections handed on from the parkers
}

func (s *Server) listener() string {
	if s.Mode == Transparent {
		return audit.ListenerTransparentHTTP
	}
	if s.ProxyTLS {
		return audit.ListenerProxyTLS
	}
	return audit.ListenerProxy
}

// readerPool recycles the per-connection request readers.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// Serve accepts connections until ln is closed, or CloseAccept. It returns
// nil then. On Linux the explicit proxy listener without proxy_protocol
// accepts on the tunnel package's parkers, and each connection waits there
// for its first bytes without a goroutine (evented_linux.go): ln's socket
// is theirs, and CloseAccept stops it.
func (s *Server) Serve(ln net.Listener) error {
	if s.Mode == Explicit && !s.ProxyProtocol && !s.ProxyTLS {
		if tl, ok := ln.(*net.TCPListener); ok && eventedOK() {
			return s.serveEvented(tl)
		}
	}
	return s.Track.Accept(ln, s.listener(), &s.wg, func(c net.Conn, _ time.Time) { s.serveConn(c) })
}

// CloseAccept stops a listener served on the parkers, whose accept took its
// socket from the listener Serve was given (closing that one does nothing
// then); Serve returns. Before Serve, it makes Serve return at once.
func (s *Server) CloseAccept() { s.ev.Close() }

// Wait blocks until every connection handler has returned.
func (s *Server) Wait() { s.wg.Wait() }

// limitedConn feeds the request reader: n bounds what a request's header may
// take (max_header_bytes), and is lifted for bodies. While rec is set, every
// byte read is also appended to buf (the request header, see hostHeaders).
// With idle set, each read must make progress within it (a request body).
// abortRead makes a read in progress, and any later one, fail: it is how the
// connection's goroutine takes the reader back from a body writer.
type limitedConn struct {
	c       net.Conn
	n       int64
	rec     bool
	buf     []byte
	idle    time.Duration
	aborted atomic.Bool
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if l.aborted.Load() {
		return 0, errBodyClosed
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	if l.idle > 0 {
		l.c.SetReadDeadline(time.Now().Add(l.idle))
		if l.aborted.Load() { // abortRead ran between the check and the deadline
			return 0, errBodyClosed
		}
	}
	k, err := l.c.Read(p)
	l.n -= int64(k)
	if l.rec && k > 0 {
		l.buf = append(l.buf, p[:k]...)
	}
	return k, err
}

// abortRead makes the current and every later Read fail until aborted is
// cleared.
func (l *limitedConn) abortRead() {
	l.aborted.Store(true)
	l.c.SetReadDeadline(time.Now())
}

var errHeaderTooLarge = errors.New("request header too large")

// errVersion: a request line whose HTTP version is not 1.x ("HTTP/2.0",
// "HTTP/0.9"): HTTP/1 framing cannot carry it; answered 505.
var errVersion = errors.New("HTTP version not supported")

// conn is one client connection.
type conn struct {
	s      *Server
	c      net.Conn
	lr     limitedConn // what br reads from
	br     *bufio.Reader
	src    netip.AddrPort
	served int // requests served on this connection
	t      *conntrack.Conn
	// hosts holds the Host header values of the request being served, as
	// sent: http.ReadRequest deletes the field, and SPEC §8 compares it with
	// the absolute-URI host.
	hosts []string
	// headLen is the size of the current request's header as received.
	headLen int
	// up is the upstream connection this client's plain-HTTP requests use
	// (origin.go); only this connection's goroutine uses it, a config swap
	// may close it while idle.
	up atomic.Pointer[origin]
	// reset closes the connection with a TCP reset: a client that stopped
	// reading leaves nothing queued in the kernel for it.
	reset bool
	// release frees the connection's limit slot (conntrack.Admit); nil
	// before it was admitted.
	release func()
	// handedOff says a tunnel owns the connection now and will end it
	// (handOff).
	handedOff bool
	// who is the client's identity (explicit proxy only, auth.go).
	who who
	// inline: the loop runs on a parker (a CONNECT read whole there,
	// evented_linux.go), where nothing may wait: first is the state its
	// request is decided under, and next what goes on on a worker once a
	// step would wait (serveTracked).
	inline bool
	first  *active.State
	next   func()
}

func (s *Server) serveConn(c net.Conn) {
	// Tracked from accept: a shutdown closes it even while its PROXY header
	// or its first request is pending.
	s.serveTracked(c, s.Track.Track(s.listener(), c), nil, nil)
}

// admission is a connection's limit check made before its goroutine (on
// the parkers): release nil means refused for limit.
type admission struct {
	release func()
	limit   string
}

// serveTracked serves c, tracked as t; adm is its limit check when it was
// made already. It runs on the connection's goroutine, or (first set) on a
// parker for a CONNECT read whole there (evented_linux.go): the loop then
// serves that request under first and, at the first step that would wait
// (the next request, a DNS lookup), leaves the rest (cn.next) to a worker,
// which from then on is the connection's goroutine and ends it.
func (s *Server) serveTracked(c net.Conn, t *conntrack.Conn, adm *admission, first *active.State) {
	st := s.Active.Load()
	if first != nil {
		st = first
	}
	cn := &conn{s: s, c: c, src: conntrack.PeerAddr(c), t: t, first: first, inline: first != nil}
	cn.lr.c, cn.lr.n = c, int64(st.Config.Limits.MaxHeaderBytes)+4096
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(&cn.lr)
	cn.br = br
	moved := false // to a worker, which ends the connection
	defer func() { cn.finish(c, recover(), !moved) }()
	if s.ProxyProtocol {
		src, err := s.Track.ProxyHeader(st.Config, s.listener(), c, br) // counts and logs a refusal
		if err != nil {
			return
		}
		cn.src = src
	}
	if adm == nil {
		adm = &admission{}
		adm.release, adm.limit = s.Track.Admit(s.listener(), cn.src.Addr())
	}
	release, refused := adm.release, adm.limit
	cn.release = release
	if release == nil {
		cn.refuse(st, refused)
		return
	}
	if s.ProxyTLS && !cn.handshake(st) {
		return
	}
	cn.t.SetOnSwap((*swapHook)(cn))
	cn.loop()
	if next := cn.next; next != nil {
		cn.next, cn.inline, cn.first = nil, false, nil
		if e, ok := c.(*evConn); ok {
			e.setInline(false)
		}
		moved = true
		s.workers.run(func() { s.resume(c, cn, next) })
	}
}

// resume goes on with a connection whose loop began on a parker, on a
// worker: next, then the connection's end. A panic in it (a bug) is counted
// and closes that connection.
func (s *Server) resume(c net.Conn, cn *conn, next func()) {
	defer func() { // a panic in cleanup itself
		if v := recover(); v != nil {
			s.Track.Panicked(s.listener(), v)
			c.Close()
		}
	}()
	defer func() { cn.finish(c, recover(), true) }()
	next()
}

// finish ends the loop's connection c: the cleanup when the loop owns it
// still (owned), and after a panic in the loop (v, a bug) the count and the
// close. The panic is counted first, so that a client that sees its
// connection closed sees egress_panics_total counted too.
func (cn *conn) finish(c net.Conn, v any, owned bool) {
	if v != nil {
		cn.s.Track.Panicked(cn.s.listener(), v)
	}
	if owned {
		cn.cleanup(c)
	}
	if v != nil {
		c.Close()
	}
}

// cleanup ends the connection when its loop is over, unless a tunnel owns
// it now (handOff): c is the connection the loop was given.
func (cn *conn) cleanup(c net.Conn) {
	cn.dropOrigin()
	if cn.br != nil {
		cn.br.Reset(nil)
		readerPool.Put(cn.br)
		cn.br = nil
	}
	if !cn.handedOff {
		cn.s.end(cn.t, c, cn.release, cn.reset)
	}
}

// swapHook is a connection's conntrack.Swapper: a conversion of the conn,
// so that setting it allocates nothing.
type swapHook conn

// Swapped drops the connection's idle upstream connection: dialed under the
// old config, it is never reused, so let it go now.
func (h *swapHook) Swapped() {
	if o := (*conn)(h).up.Load(); o != nil {
		o.closeIfIdle()
	}
}

// end ends a client connection: untracked, its limit slot released (nil:
// none was taken), closed (c nil: its tunnel closed it). A tunnel calls it through handOff when it is
// over; otherwise serveConn does when the connection's loop returns.
func (s *Server) end(t *conntrack.Conn, c net.Conn, release func(), reset bool) {
	s.Track.Untrack(t)
	if release != nil {
		release()
	}
	if c != nil {
		if reset {
			resetOnClose(c)
		}
		c.Close()
	}
	s.wg.Done()
}

// handOff gives the connection to a tunnel that may live for hours, and
// returns what the tunnel calls when it is over. Nothing of the connection's
// request loop stays reachable from the tunnel: not the conn, its request
// reader, the request or its header (what the tunnel keeps of a CONNECT is
// in its event and its registry entry).
func (cn *conn) handOff() (done func()) {
	cn.handedOff = true
	cn.t.SetOnSwap(nil)
	if cn.br != nil {
		cn.br.Reset(nil)
		readerPool.Put(cn.br)
		cn.br = nil
	}
	cn.lr.buf, cn.hosts = nil, nil
	// Not the client connection either: the tunnel owns it and closes it
	// (a parked tunnel keeps only its descriptor).
	s, t, release := cn.s, cn.t, cn.release
	return func() { s.end(t, nil, release, false) }
}

// begin starts the outcome of a decision on this connection.
func (cn *conn) begin(st *active.State, start time.Time) *outcome.Outcome {
	o := cn.s.Record.Begin(cn.s.listener(), st.Config.Version, cn.src, start)
	stamp(o.Event, cn.who.current(st))
	return o
}

// refuse answers a connection over a limit with 503 and logs it.
func (cn *conn) refuse(st *active.State, limit string) {
	o := cn.begin(st, time.Now())
	seg, _ := st.Config.Policy.SegmentFor(cn.src.Addr())
	o.Deny(rules.ReasonLimit, seg, nil)
	o.Event.Error = "limit: " + limit
	o.Event.Status = http.StatusServiceUnavailable
	o.Finish()
	if cn.s.Mode == Transparent {
		return // transparent listeners close over a limit (SPEC §8)
	}
	h := http.Header{}
	h.Set("Proxy-Status", proxyStatus(statusLimit, limit))
	h.Set("Retry-After", "1")
	cn.c.SetWriteDeadline(time.Now().Add(time.Second))
	writeResponse(cn.c, "HTTP/1.1", http.StatusServiceUnavailable, h, []byte("egress: too many connections ("+limit+")\n"), true)
}

// loop reads requests until the connection ends, is hijacked by CONNECT, or
// must close.
func (cn *conn) loop() {
	for {
		if cn.inline && cn.served > 0 {
			// The next request may be long in coming: it is awaited on a
			// parker again (evented_linux.go), else on a worker.
			if !cn.repark() {
				cn.next = cn.loop
			}
			return
		}
		lim := cn.s.Active.Config().Limits
		cn.lr.n = int64(lim.MaxHeaderBytes) + 4096
		cn.lr.idle = 0
		// Between requests, an idle keep-alive connection may wait idle_timeout.
		wait := lim.IdleTimeout
		if cn.served == 0 {
			wait = lim.HeaderTimeout
		}
		cn.c.SetReadDeadline(time.Now().Add(wait))
		if hook := testHookIdle.Load(); hook != nil {
			(*hook)(cn)
		}
		// Idle first, then the drain check: a shutdown either sees this
		// connection idle (CloseIdle closes it) or is seen here.
		cn.t.SetIdle(true)
		if cn.s.Track.Draining() {
			return
		}
		_, err := cn.br.Peek(1)
		cn.t.SetIdle(false)
		if err != nil {
			return
		}
		// The request has begun: it is decided under the config active now,
		// not the one active when the connection went idle.
		st := cn.s.Active.Load()
		if cn.first != nil {
			st, cn.first = cn.first, nil // what the parker checked the request under
		}
		lim = st.Config.Limits
		cn.c.SetReadDeadline(time.Now().Add(lim.HeaderTimeout))
		// The header is what the reader already holds plus what ReadRequest
		// reads from the connection.
		held, _ := cn.br.Peek(cn.br.Buffered())
		cn.lr.buf = append(cn.lr.buf[:0], held...)
		cn.lr.rec = true
		req, err := http.ReadRequest(cn.br)
		cn.lr.rec = false
		cn.hosts = hostHeaders(cn.lr.buf)
		cn.headLen = headerLen(cn.lr.buf)
		// The recorded header is not kept between requests: an idle
		// keep-alive connection holds no copy of a large header.
		if cap(cn.lr.buf) > headerKeep {
			cn.lr.buf = nil
		} else {
			cn.lr.buf = cn.lr.buf[:0]
		}
		if err == nil && req.ProtoMajor != 1 {
			err = errVersion
		}
		if err != nil {
			cn.badRequest(err)
			return
		}
		cn.lr.n = math.MaxInt64
		cn.c.SetReadDeadline(time.Time{})
		cn.lr.idle = lim.IdleTimeout // a body must keep arriving
		cn.served++
		if cn.inline && inlineWaits(st, req) {
			// Not what the parker let through (an identity source may
			// wait, so may a body): the request is served on a worker.
			cn.next = func() {
				if cn.serve(st, req) {
					cn.loop()
				}
			}
			return
		}
		if !cn.serve(st, req) {
			return
		}
	}
}

// inlineWaits reports a request that serving may make wait, which a parker
// must not serve: one that is not a CONNECT (a body, an origin), or one
// whose credentials an identity source must check (an LDAP bind, a
// Kerberos ticket). Without credentials, identify only answers 407 or goes
// on unidentified, at once.
func inlineWaits(st *active.State, req *http.Request) bool {
	return req.Method != http.MethodConnect || st.Auth != nil && len(req.Header["Proxy-Authorization"]) > 0
}

// serve serves one parsed request: false when the connection must not
// carry another (it ends, or a CONNECT took it).
func (cn *conn) serve(st *active.State, req *http.Request) bool {
	if cn.s.Mode == Explicit {
		if ok, keep := cn.identify(st, req, time.Now()); !ok {
			return keep
		}
	}
	if req.Method == http.MethodConnect {
		if cn.s.Mode == Transparent {
			cn.badRequest(errors.New("CONNECT on the transparent HTTP listener"))
			return false
		}
		cn.dropOrigin()
		cn.connect(st, req)
		return false
	}
	// Anything but a CONNECT is served with a connection in Go's poller (a
	// body, a response of any size, an upgrade's tunnel).
	return cn.settle() && cn.plain(st, req)
}

// testHookIdle, set by tests only, sees a connection as it goes idle.
var testHookIdle atomic.Pointer[func(*conn)]

// headerKeep is the largest header buffer a connection keeps for its next
// request; a larger one is let go as soon as its request is parsed.
const headerKeep = 1024

// headerLen is the length of the request header at the start of b, up to
// and including its empty line (b if it has none).
func headerLen(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return len(b)
}

func (cn *conn) badRequest(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return // header_timeout: close without a word, like net/http
	}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, errHeaderTooLarge):
		status = http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errVersion):
		status = http.StatusHTTPVersionNotSupported
	}
	h := http.Header{}
	h.Set("Proxy-Status", proxyStatus(statusBadRequest, ""))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	writeResponse(cn.c, "HTTP/1.1", status, h, []byte(http.StatusText(status)+"\n"), true)
}

// hostHeaders returns the values of the Host fields in the request header at
// the start of b (request line, fields, empty line; anything after it is
// ignored). ReadRequest has validated the header by the time this is used.
func hostHeaders(b []byte) []string {
	var hosts []string
	first := true
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(b[:i], []byte("\r"))
		b = b[i+1:]
		if len(line) == 0 {
			break // end of the header
		}
		if first {
			first = false // the request line
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(k, []byte("Host")) {
			hosts = append(hosts, string(bytes.TrimSpace(v)))
		}
	}
	return hosts
}

// resetOnClose makes Close discard what is still queued for c and send a
// reset (SO_LINGER 0), instead of trickling it to a peer that does not read.
func resetOnClose(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok { // *net.TCPConn, evConn
		tc.SetLinger(0)
	}
}
