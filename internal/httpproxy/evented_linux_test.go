package httpproxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// The explicit listener on the parkers, on real loopback sockets: the
// accept and the wait for the first bytes on the event loops, then the
// request loop on the connection's goroutine over an evConn.

// evLoop is an explicit Server serving a real loopback listener (evented).
type evLoop struct {
	t     *testing.T
	s     *Server
	track *conntrack.Tracker
	sink  *memSink
	addr  string
	done  chan error
}

func newEvLoop(t *testing.T, extra string) *evLoop {
	t.Helper()
	return newEvLoopOf(t, func(dir string) *rules.Config { return loadLoopConfig(t, dir, extra, loopAllowed) }, nil)
}

// newEvLoopOf is newEvLoop with the config load writes into dir, and setup
// (if any) run on its State before the Server starts.
func newEvLoopOf(t *testing.T, load func(dir string) *rules.Config, setup func(*active.State)) *evLoop {
	t.Helper()
	if !eventedOK() {
		t.Skip("no epoll here")
	}
	cfg := load(t.TempDir())
	m := metrics.New(prometheus.NewRegistry())
	store := active.NewStore(cfg)
	store.Load().Dialer.Timeout = 5 * time.Second
	if setup != nil {
		setup(store.Load())
	}
	track := conntrack.New(store.Config, m, nil)
	sink := &memSink{}
	rec := outcome.NewRecorder(sink, m)
	l := &evLoop{t: t, track: track, sink: sink, done: make(chan error, 1)}
	l.s = &Server{Mode: Explicit, Active: store, Track: track, Record: rec, Metrics: m,
		TLS: &tlsproxy.Proxy{Active: store, Record: rec, Metrics: m}}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	go func() { l.done <- l.s.Serve(ln) }()
	t.Cleanup(func() {
		l.s.CloseAccept()
		track.CloseAll()
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after CloseAccept")
		}
		waited := make(chan struct{})
		go func() { l.s.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Error("connection handlers still running")
		}
	})
	return l
}

func (l *evLoop) dial() net.Conn {
	l.t.Helper()
	c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// echoOrigin accepts on loopback and answers each connection's first bytes
// (a ClientHello) with "hi" followed by what it read.
func echoOrigin(t *testing.T) (port int, got chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan []byte, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 4096)
				n, _ := c.Read(b)
				got <- b[:n]
				c.Write([]byte("hi"))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, got
}

func goClientHello(t *testing.T, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	a.Close()
	return append(hdr, body...)
}

// connectThrough sends a CONNECT to allowed.test:port in parts (each part
// written after a pause, so that the request loop has to wait for the
// rest), then a ClientHello, and checks the tunnel: the 200, the origin
// got the hello, the client gets "hi".
func connectThrough(t *testing.T, l *evLoop, port int, got chan []byte, parts ...string) net.Conn {
	t.Helper()
	c := l.dial()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("reading the 200: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	helloThrough(t, c, br, got, "allowed.test")
	return c
}

// helloThrough checks a tunnel after its 200: a ClientHello for name sent
// on c reaches the echo origin, whose "hi" comes back on br.
func helloThrough(t *testing.T, c net.Conn, br *bufio.Reader, got chan []byte, name string) {
	t.Helper()
	hello := goClientHello(t, name)
	c.Write(hello)
	select {
	case b := <-got:
		if string(b) != string(hello) {
			t.Fatalf("origin got %d bytes, want the %d-byte hello", len(b), len(hello))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("origin got nothing")
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// TestEventedConnect: a CONNECT read whole with its first bytes, one whose
// header arrives in three parts (the loop waits for the rest in Go's
// poller), and one with its hello in the same write.
func TestEventedConnect(t *testing.T) {
	l := newEvLoop(t, "")
	port, got := echoOrigin(t)
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	connectThrough(t, l, port, got, req)
	connectThrough(t, l, port, got, req[:10], req[10:30], req[30:])

	c := l.dial()
	hello := goClientHello(t, "allowed.test")
	c.Write(append([]byte(req), hello...))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT with its hello: %v %v", resp, err)
	}
	select {
	case b := <-got:
		if string(b) != string(hello) {
			t.Fatal("origin did not get the hello sent with the CONNECT")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("origin got nothing")
	}
}

// TestEventedDenied: a denied CONNECT gets its 403 written on the Socket,
// and a request whose header is malformed its 400, each with the
// connection closed after it.
func TestEventedDenied(t *testing.T) {
	l := newEvLoop(t, "")
	c := l.dial()
	c.Write([]byte("CONNECT banned.test:443 HTTP/1.1\r\nHost: banned.test:443\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied CONNECT: %v %v", resp, err)
	}
	c = l.dial()
	c.Write([]byte("NOT HTTP\r\n\r\n"))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed request: %v %v", resp, err)
	}
}

// TestEventedPlainKeepAlive: plain-HTTP requests (the connection moved to
// Go's poller for them) on one kept-alive connection, after a 407-free
// first request.
func TestEventedPlainKeepAlive(t *testing.T) {
	l := newEvLoop(t, "")
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 200_000))) // larger than a socket takes at once
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	c := l.dial()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(c, "GET http://allowed.test:%d/%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, i, port)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || n != 200_000 || err != nil {
			t.Fatalf("request %d: status %d, %d bytes, %v", i, resp.StatusCode, n, err)
		}
	}
}

// TestEventedWaitingHoldsNoGoroutine: connections that send nothing wait
// on the parkers (no goroutine each), are closed by header_timeout without
// a word, and leave no descriptor behind; a shutdown's CloseIdle closes
// the ones still waiting at once.
func TestEventedWaitingHoldsNoGoroutine(t *testing.T) {
	l := newEvLoop(t, `limits { header_timeout = "2s" }`)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	// Warm the parkers and the pools.
	port, got := echoOrigin(t)
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	connectThrough(t, l, port, got, req).Close()
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "the warm-up tunnel over")
	time.Sleep(100 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), fds()
	const n = 50
	var silent []net.Conn
	for i := 0; i < n; i++ {
		silent = append(silent, l.dial())
	}
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() >= n }, "the silent connections tracked")
	if g := runtime.NumGoroutine(); g > g0+10 {
		t.Fatalf("%d goroutines for %d silent connections (%d before)", g, n, g0)
	}
	start := time.Now()
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if k, err := c.Read(make([]byte, 1)); k != 0 || err != io.EOF {
			t.Fatalf("a silent connection got %d bytes, %v; want EOF (closed without a word)", k, err)
		}
	}
	if d := time.Since(start); d < time.Second || d > 8*time.Second {
		t.Fatalf("closed after %v, want about header_timeout (2s)", d)
	}
	for _, c := range silent {
		c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 && fds() <= f0 }, "nothing tracked, no descriptor left")

	// A shutdown closes the waiting ones at once.
	c := l.dial()
	// (Tracked a moment before it counts as idle: a shutdown's CloseIdle,
	// repeated every 50 ms, catches it on the next pass; so does this.)
	waitFor(t, 5*time.Second, func() bool { return l.track.CloseIdle() == 1 }, "CloseIdle closing the one waiting")
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after CloseIdle: %v, want EOF", err)
	}
}

// TestEventedLimit: a connection over max_connections gets the 503 as
// before.
func TestEventedLimit(t *testing.T) {
	l := newEvLoop(t, `limits { max_connections = 1 }`)
	first := l.dial()
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 1 }, "the first tracked")
	c := l.dial()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the limit: %v %v", resp, err)
	}
	first.Close()
}

// TestEventedCloseAccept: CloseAccept makes Serve return and the port
// refuse.
func TestEventedCloseAccept(t *testing.T) {
	l := newEvLoop(t, "")
	l.s.CloseAccept()
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatal(err)
		}
		l.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.DialTimeout("tcp", l.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts")
	}
}

func waitFor(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sockPair is a loopback connection whose accepted end is a tunnel.Socket.
func sockPair(t *testing.T) (peer *net.TCPConn, sock *tunnel.Socket) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tunnel.SocketOf(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// TestEvConnWriteWaits: a write the Socket does not take whole goes on in
// Go's poller, under the write deadline set before; reads then come from
// there too.
func TestEvConnWriteWaits(t *testing.T) {
	peer, sock := sockPair(t)
	e := &evConn{sock: sock, remote: sock.RemoteAddr()}
	defer e.Close()
	e.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	big := make([]byte, 64<<20)
	start := time.Now()
	n, err := e.Write(big)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || n == 0 || n == len(big) {
		t.Fatalf("write to a peer that reads nothing: %d bytes, %v; want some, then a timeout", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the deadline held for %v", d)
	}
	if _, c := e.current(); c == nil {
		t.Fatal("still a Socket after a write that had to wait")
	}
	e.SetWriteDeadline(time.Time{})
	peer.Write([]byte("x"))
	e.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	if k, err := e.Read(b); k != 1 || err != nil {
		t.Fatalf("read after the move: %d, %v", k, err)
	}
}

// TestEvConnLinger: resetOnClose on a Socket sets SO_LINGER 0 (the close
// is a reset).
func TestEvConnLinger(t *testing.T) {
	peer, sock := sockPair(t)
	e := &evConn{sock: sock, remote: sock.RemoteAddr()}
	resetOnClose(e)
	e.Close()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer read after the close: %v, want a reset", err)
	}
}

// TestEventedTwiceAndTooMuch: what a client can send in its first bytes
// beyond one request. Two requests in one write (the second must be
// answered too, from the bytes the parker read); a CONNECT whose header
// runs past the parker's 4 KiB read (the loop reads the rest in Go's
// poller) and still tunnels; a header over max_header_bytes gets its 431.
// Afterwards nothing is tracked and no descriptor or goroutine is left.
func TestEventedTwiceAndTooMuch(t *testing.T) {
	l := newEvLoop(t, `limits { max_header_bytes = 16384 }`)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("path " + r.URL.Path))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	echoPort, got := echoOrigin(t)
	time.Sleep(50 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), fds()

	// Twice: two GETs in one write.
	c := l.dial()
	get := func(p string) string {
		return fmt.Sprintf("GET http://allowed.test:%d/%s HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, p, port)
	}
	c.Write([]byte(get("one") + get("two")))
	br := bufio.NewReader(c)
	for _, want := range []string{"path /one", "path /two"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("pipelined %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("pipelined: got %q, want %q", b, want)
		}
	}
	c.Close()

	// Too much for one read: a CONNECT with 10 KB of header fields.
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n", echoPort, echoPort)
	for i := 0; i < 100; i++ {
		req += fmt.Sprintf("X-Pad-%d: %s\r\n", i, strings.Repeat("p", 90))
	}
	connectThrough(t, l, echoPort, got, req+"\r\n").Close()

	// Too much altogether: a header over max_header_bytes.
	c = l.dial()
	big := "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: " + strings.Repeat("b", 40000) + "\r\n\r\n"
	go c.Write([]byte(big))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized header: %v %v", resp, err)
	}
	c.Close()

	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked")
	waitFor(t, 5*time.Second, func() bool { return fds() <= f0 }, "no descriptor left")
	// Idle request-loop workers may wait (at most maxIdleWorkers, 5 s each).
	if g := runtime.NumGoroutine(); g > g0+maxIdleWorkers {
		t.Fatalf("%d goroutines, %d before", g, g0)
	}
}
