package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Tests of the plain-HTTP forwarding path against an in-process proxy and
// origins on loopback. The end-to-end tests in internal/e2e drive the real
// binary; these pin each defect where its cause lives.

type events struct {
	mu  sync.Mutex
	evs []*audit.Event
}

func (s *events) Log(e *audit.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

func (s *events) all() []*audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*audit.Event(nil), s.evs...)
}

// waitEvents waits (bounded) until n events were written.
func (s *events) waitEvents(t *testing.T, n int) []*audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := s.all()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d events, have %d", n, len(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testProxy struct {
	t      *testing.T
	active *active.Store
	track  *conntrack.Tracker
	m      *metrics.Metrics
	ev     *events
	addr   string
	dir    string
	server *Server
}

const baseConfig = `
limits {
  idle_timeout = "%s"
}
upstream {
  allow_private = ["127.0.0.0/8"]
  hosts = { %s }
}
segment "loopback" {
  sources = ["127.0.0.0/8"]
  default = "allow"
  rule "ban" {
    action  = "deny"
    domains = [%s]
  }
}
`

func loadConfig(t *testing.T, dir, idle, hosts, banned string) *rules.Config {
	t.Helper()
	if banned == "" {
		banned = `"banned.test"`
	}
	p := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(baseConfig, idle, hosts, banned)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return cfg
}

func startProxy(t *testing.T, idle, hosts string) *testProxy {
	t.Helper()
	dir := t.TempDir()
	cfg := loadConfig(t, dir, idle, hosts, "")
	m := metrics.New(metrics.NewRegistry())
	ev := &events{}
	store := active.NewStore(cfg)
	track := conntrack.New(store.Config, m, nil)
	rec := outcome.NewRecorder(ev, m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Mode: Explicit, Active: store, Track: track, Record: rec, Metrics: m,
		TLS: &tlsproxy.Proxy{Active: store, Record: rec, Metrics: m}}
	go s.Serve(ln)
	t.Cleanup(func() {
		ln.Close()
		track.CloseAll()
	})
	return &testProxy{t: t, active: store, track: track, m: m, ev: ev, addr: ln.Addr().String(), dir: dir, server: s}
}

func (p *testProxy) swap(idle, hosts, banned string) *rules.Config {
	cfg := loadConfig(p.t, p.dir, idle, hosts, banned)
	p.active.Publish(cfg)
	p.track.Reloaded(cfg)
	return cfg
}

func (p *testProxy) dial() net.Conn {
	p.t.Helper()
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		p.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	p.t.Cleanup(func() { c.Close() })
	return c
}

func (p *testProxy) upstreamConns() float64 {
	return testutil.ToFloat64(p.m.UpstreamConnections.WithLabelValues(audit.ListenerProxy))
}

// testOrigin is a loopback HTTP/1.1 server that counts its connections.
type testOrigin struct {
	addr     string
	port     string
	accepted atomic.Int64
	open     atomic.Int64
}

func startOrigin(t *testing.T, ip string, handler http.HandlerFunc) *testOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOrigin(t, ln, handler)
}

func serveOrigin(t *testing.T, ln net.Listener, handler http.HandlerFunc) *testOrigin {
	o := &testOrigin{addr: ln.Addr().String()}
	_, o.port, _ = net.SplitHostPort(o.addr)
	srv := &http.Server{Handler: handler, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.accepted.Add(1)
			o.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.open.Add(-1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

func readResponse(t *testing.T, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// waitClosed asserts that the server side closes c within d.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}

// Defect 1: an origin that answers a large POST at once and stops reading.
// Before the fix, net/http's transport went on reading (and draining) the
// body from the client's pooled reader while the connection loop reused it:
// a data race, a panic under load, a pipelined request swallowed. Run with
// -race (CI does).
func TestEarlyResponseToLargeBody(t *testing.T) {
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The origin reads the head, answers at once and then never reads.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
				time.Sleep(2 * time.Second)
			}(c)
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := startProxy(t, "3s", `"allowed.test" = "127.0.0.1"`)
	body := strings.Repeat("x", 256<<10)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				c := p.dial()
				// The body is announced at 10 MB; a CONNECT follows what is sent.
				go fmt.Fprintf(c, "POST http://allowed.test:%s/up HTTP/1.1\r\nHost: allowed.test:%s\r\nContent-Length: 10000000\r\n\r\n%sCONNECT allowed.test:443 HTTP/1.1\r\n\r\n", port, port, body)
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != "early" || !resp.Close {
					t.Errorf("status %d body %q close %v", resp.StatusCode, b, resp.Close)
				}
				// The rest of the body is where a next request would be: the
				// connection ends, nothing after it is read as a request.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, _ := io.Copy(io.Discard, br); n != 0 {
					t.Errorf("%d bytes after the response", n)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	evs := p.ev.waitEvents(t, 40)
	for _, ev := range evs {
		if ev.Method != "POST" || ev.Status != 200 {
			t.Errorf("event %+v", ev)
		}
	}
	if n := testutil.ToFloat64(p.m.Panics.WithLabelValues(audit.ListenerProxy)); n != 0 {
		t.Fatalf("%v panics", n)
	}
}

// Defect 2: spellings of one name, and many names of one address, share the
// client's one upstream connection; nothing is kept after the client goes.
func TestOneUpstreamConnectionPerClient(t *testing.T) {
	o := startOrigin(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var hosts []string
	for i := 0; i < 20; i++ {
		hosts = append(hosts, fmt.Sprintf(`"n%d.allowed.test" = "127.0.0.1"`, i))
	}
	hosts = append(hosts, `"allowed.test" = "127.0.0.1"`)
	p := startProxy(t, "30s", strings.Join(hosts, ", "))
	c := p.dial()
	br := bufio.NewReader(c)
	names := []string{"allowed.test", "AlLoWeD.test", "allowed.test.", "ALLOWED.TEST."}
	for i := 0; i < 20; i++ {
		names = append(names, fmt.Sprintf("n%d.allowed.test", i))
	}
	for i := 0; i < 300; i++ {
		n := names[i%len(names)]
		fmt.Fprintf(c, "GET http://%s:%s/%d HTTP/1.1\r\nHost: %s:%s\r\n\r\n", n, o.port, i, n, o.port)
		if resp := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d to %s: %d", i, n, resp.StatusCode)
		}
		if u := p.upstreamConns(); u > 1 {
			t.Fatalf("request %d: %v upstream connections for one client", i, u)
		}
	}
	if a := o.accepted.Load(); a != 1 {
		t.Fatalf("origin accepted %d connections, want 1", a)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.upstreamConns() != 0 || o.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %v upstream connections, origin has %d open", p.upstreamConns(), o.open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Defect 3: after a reload maps the name to another address, the next
// request on the same client connection goes to the new address, and its
// event says so.
func TestReloadDialsTheNewAddress(t *testing.T) {
	var a, b *testOrigin
	for i := 0; i < 20 && b == nil; i++ {
		lnA, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skip("no 127.0.0.2 on this host: ", err)
		}
		_, port, _ := net.SplitHostPort(lnA.Addr().String())
		lnB, err := net.Listen("tcp", "127.0.0.3:"+port)
		if err != nil {
			lnA.Close()
			continue
		}
		a = serveOrigin(t, lnA, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") })
		b = serveOrigin(t, lnB, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "B") })
	}
	if b == nil {
		t.Fatal("no common free port on 127.0.0.2 and 127.0.0.3")
	}
	p := startProxy(t, "30s", `"site.test" = "127.0.0.2"`)
	c := p.dial()
	br := bufio.NewReader(c)
	get := func(want string) {
		fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", a.port, a.port)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("answered by %q, want %q", body, want)
		}
	}
	get("A")
	cfg := p.swap("30s", `"site.test" = "127.0.0.3"`, "")
	get("B")
	evs := p.ev.waitEvents(t, 2)
	if evs[1].DestIP != "127.0.0.3" || evs[1].ConfigVersion != cfg.Version {
		t.Fatalf("event after reload: ip %s version %s (want %s)", evs[1].DestIP, evs[1].ConfigVersion, cfg.Version)
	}
	if a.open.Load() != 0 && time.Now().Before(time.Now().Add(time.Second)) {
		// The idle connection to A was dropped by the swap.
		deadline := time.Now().Add(5 * time.Second)
		for a.open.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if a.open.Load() != 0 {
			t.Fatal("the connection dialed under the old config is still open")
		}
	}
}

// Defect 4: an idle keep-alive connection's next request is decided under
// the config active when it arrives.
func TestConfigTakenWhenTheRequestArrives(t *testing.T) {
	o := startOrigin(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, "30s", `"site.test" = "127.0.0.1"`)
	for _, method := range []string{"GET", "CONNECT"} {
		p.swap("30s", `"site.test" = "127.0.0.1"`, "")
		base := len(p.ev.all())
		c := p.dial()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
		if resp := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("before the ban: %d", resp.StatusCode)
		}
		n := len(p.ev.waitEvents(t, base+1))
		// The connection is idle in the loop now; the ban arrives.
		time.Sleep(20 * time.Millisecond)
		cfg := p.swap("30s", `"site.test" = "127.0.0.1"`, `"site.test"`)
		if method == "GET" {
			fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
		} else {
			fmt.Fprintf(c, "CONNECT site.test:%s HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
		}
		resp := readResponse(t, br, method)
		if resp.StatusCode != 403 {
			t.Fatalf("%s after the ban: %d", method, resp.StatusCode)
		}
		evs := p.ev.waitEvents(t, n+1)
		if ev := evs[n]; ev.Action != "deny" || ev.ConfigVersion != cfg.Version {
			t.Fatalf("%s after the ban: event %s under %s, want deny under %s", method, ev.Action, ev.ConfigVersion, cfg.Version)
		}
		c.Close()
	}
}

// wsOrigin answers a WebSocket handshake with 101, says hello first and
// then echoes.
func wsOrigin(t *testing.T, sawUpgrade *atomic.Value) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				sawUpgrade.Store(req.Header.Get("Connection") + "|" + req.Header.Get("Upgrade"))
				if req.Header.Get("Upgrade") != "websocket" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nhello")
				io.Copy(c, br)
			}(c)
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// Defect 6: a WebSocket upgrade is spliced both ways with its headers
// intact, under the idle timeout, with one event at the end.
func TestWebSocketUpgrade(t *testing.T) {
	var saw atomic.Value
	port := wsOrigin(t, &saw)
	p := startProxy(t, "1s", `"ws.test" = "127.0.0.1"`)
	c := p.dial()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET http://ws.test:%s/chat HTTP/1.1\r\nHost: ws.test:%s\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", port, port)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Fatalf("101 as received: %d %v", resp.StatusCode, resp.Header)
	}
	if s := saw.Load().(string); !strings.EqualFold(s, "upgrade|websocket") {
		t.Fatalf("origin saw Connection|Upgrade = %q", s)
	}
	hello := make([]byte, 5)
	if _, err := io.ReadFull(br, hello); err != nil || string(hello) != "hello" {
		t.Fatalf("server's first bytes: %q %v", hello, err)
	}
	io.WriteString(c, "ping")
	echo := make([]byte, 4)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("echo: %q %v", echo, err)
	}
	// Quiet now: the idle timeout (1s) ends it.
	waitClosed(t, c, br, 8*time.Second)
	evs := p.ev.waitEvents(t, 1)
	if ev := evs[0]; ev.Status != 101 || ev.SourceBytes <= 4 || ev.DestBytes <= 9 {
		t.Fatalf("event: status %d bytes %d/%d", ev.Status, ev.SourceBytes, ev.DestBytes)
	}
	// An h2c upgrade is stripped: the origin sees a plain request.
	c2 := p.dial()
	br2 := bufio.NewReader(c2)
	fmt.Fprintf(c2, "GET http://ws.test:%s/ HTTP/1.1\r\nHost: ws.test:%s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", port, port)
	if resp := readResponse(t, br2, "GET"); resp.StatusCode != 200 {
		t.Fatalf("h2c: %d", resp.StatusCode)
	}
	if s := saw.Load().(string); s != "|" {
		t.Fatalf("origin saw Connection|Upgrade = %q for h2c", s)
	}
}

// CL.0: a GET with a body is refused, and nothing reaches the origin.
func TestBodyOnGETRefused(t *testing.T) {
	o := startOrigin(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, "30s", `"site.test" = "127.0.0.1"`)
	for _, framing := range []string{"Content-Length: 44\r\n\r\nGET /admin HTTP/1.1\r\nHost: site.test\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"} {
		c := p.dial()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n%s", o.port, o.port, framing)
		resp := readResponse(t, br, "GET")
		if resp.StatusCode != 400 || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=http_request_error") {
			t.Fatalf("GET with a body: %d %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
		}
		waitClosed(t, c, br, 5*time.Second)
	}
	if o.accepted.Load() != 0 {
		t.Fatal("the origin was reached")
	}
	for _, ev := range p.ev.waitEvents(t, 2) {
		if ev.Action != "deny" || ev.Reason != string(rules.ReasonInvalidRequest) {
			t.Fatalf("event %s %s", ev.Action, ev.Reason)
		}
	}
}

// A plain-HTTP request to a refused address: 403 destination_ip_prohibited.
func TestPrivateDestinationPlainHTTP(t *testing.T) {
	p := startProxy(t, "30s", `"inside.test" = "192.168.1.1"`)
	// 192.168.1.1 is refused before any dial: allow_private lists 127/8 only.
	c := p.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET http://inside.test/ HTTP/1.1\r\nHost: inside.test\r\n\r\n")
	resp := readResponse(t, br, "GET")
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=destination_ip_prohibited") {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
	}
}

// A client that stops reading a large response is cut after the idle
// timeout, and its upstream connection with it.
func TestClientThatStopsReading(t *testing.T) {
	big := strings.Repeat("y", 1<<20)
	o := startOrigin(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(64*len(big)))
		for i := 0; i < 64; i++ {
			if _, err := io.WriteString(w, big); err != nil {
				return
			}
		}
	})
	p := startProxy(t, "1s", `"site.test" = "127.0.0.1"`)
	c := p.dial()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
	// Never read: the proxy's write blocks, then its deadline passes.
	evs := p.ev.waitEvents(t, 1)
	if evs[0].Error == "" {
		t.Fatalf("event of a cut response has no error: %+v", evs[0])
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.upstreamConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("upstream connection kept after the client was cut")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The client connection is closed too: what was in flight, then the end.
	waitClosed(t, c, bufio.NewReader(c), 5*time.Second)
}

// Defect 10: an idle keep-alive connection holds no copy of a large header;
// and a panic in a connection's goroutine ends that connection only.
func TestIdleConnectionKeepsNoHeader(t *testing.T) {
	o := startOrigin(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, "30s", `"site.test" = "127.0.0.1"`)
	var held, calls atomic.Int64
	var boom atomic.Bool
	hook := func(cn *conn) {
		held.Store(int64(cap(cn.lr.buf)))
		calls.Add(1)
		if boom.Load() {
			panic("test panic")
		}
	}
	testHookIdle.Store(&hook)
	defer testHookIdle.Store(nil)
	c := p.dial()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\nX-Big: %s\r\n\r\n", o.port, o.port, strings.Repeat("z", 45<<10))
	readResponse(t, br, "GET")
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 { // idle again after the request
		if time.Now().After(deadline) {
			t.Fatal("the connection did not go idle after its request")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if held.Load() > headerKeep {
		t.Fatalf("idle connection holds a %d-byte header buffer", held.Load())
	}
	boom.Store(true)
	fmt.Fprintf(c, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
	readResponse(t, br, "GET")
	waitClosed(t, c, br, 5*time.Second)
	deadline = time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(p.m.Panics.WithLabelValues(audit.ListenerProxy)) != 1 || p.track.Connections() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the panic: panics_total %v, %d connection slots held",
				testutil.ToFloat64(p.m.Panics.WithLabelValues(audit.ListenerProxy)), p.track.Connections())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And the proxy still serves.
	boom.Store(false)
	c2 := p.dial()
	fmt.Fprintf(c2, "GET http://site.test:%s/ HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", o.port, o.port)
	if resp := readResponse(t, bufio.NewReader(c2), "GET"); resp.StatusCode != 200 {
		t.Fatalf("after a panic: %d", resp.StatusCode)
	}
}

// A kept upstream connection the origin closed meanwhile is not used: the
// next request goes out on a new one and succeeds.
func TestKeptConnectionClosedByOrigin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func(c net.Conn) {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				// Keep-alive as far as the framing says, then closed.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}(c)
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := startProxy(t, "30s", `"site.test" = "127.0.0.1"`)
	c := p.dial()
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		fmt.Fprintf(c, "GET http://site.test:%s/%d HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", port, i, port)
		if resp := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // let the origin's close arrive
	}
	if a := accepted.Load(); a != 5 {
		t.Fatalf("origin accepted %d connections, want 5", a)
	}
}
