package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers of the hostile-client tests (hostile_*_test.go): a config builder
// that can be rewritten for reloads, a raw loopback HTTP origin whose
// behaviour is chosen by the request path, and probes of the proxy's own
// resources (open fds, goroutines) read from its admin /metrics.

// hxConf is a proxy config: every name in Hosts resolves to its address,
// 127.0.0.0/8 is an allowed private range unless AllowPrivate says otherwise,
// the "office" segment (127.0.0.0/8) allows everything but the names in
// Banned (and tiktok.com, blocked.test).
type hxConf struct {
	Hosts        map[string]string // name → address
	Banned       []string          // domains of the "social" category, beyond the fixed ones
	AllowPrivate string            // HCL list; "" means ["127.0.0.0/8"]
	Idle         string            // limits.idle_timeout; "" keeps the default
	PerSource    int               // limits.per_source; 0 keeps the default
	Transparent  int               // when not 0, a transparent HTTP listener dialing this port
	Extra        string            // appended verbatim
}

// String renders the config with {{PROXY}}/{{ADMIN}}/{{HTTP}} placeholders.
func (c hxConf) String() string {
	var b strings.Builder
	b.WriteString("proxy { listen = \"{{PROXY}}\" }\nadmin { listen = \"{{ADMIN}}\" }\n")
	b.WriteString("tls { hello_timeout = \"2s\" }\n")
	if c.Transparent != 0 {
		// Both listeners on loopback: https_listen would default to all addresses.
		fmt.Fprintf(&b, "transparent {\n  https_listen = \"{{HTTPS}}\"\n  https_port = 1\n  http_listen = \"{{HTTP}}\"\n  http_port = %d\n}\n", c.Transparent)
	}
	b.WriteString("limits {\n  reload_interval = \"200ms\"\n  shutdown_grace = \"2s\"\n")
	if c.Idle != "" {
		fmt.Fprintf(&b, "  idle_timeout = %q\n", c.Idle)
	}
	if c.PerSource != 0 {
		fmt.Fprintf(&b, "  per_source = %d\n", c.PerSource)
	}
	b.WriteString("}\nupstream {\n  hosts = {\n")
	names := make([]string, 0, len(c.Hosts))
	for n := range c.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "    %q = %q\n", n, c.Hosts[n])
	}
	ap := c.AllowPrivate
	if ap == "" {
		ap = `["127.0.0.0/8"]`
	}
	fmt.Fprintf(&b, "  }\n  allow_private = %s\n}\n", ap)
	banned := []string{`"tiktok.com"`, `"blocked.test"`}
	for _, n := range c.Banned {
		banned = append(banned, strconv.Quote(n))
	}
	fmt.Fprintf(&b, "category \"social\" { domains = [%s] }\n", strings.Join(banned, ", "))
	b.WriteString(`policy "base" {
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
segment "office" {
  sources  = ["127.0.0.0/8"]
  default  = "allow"
  policies = ["base"]
}
`)
	b.WriteString(c.Extra)
	return b.String()
}

// hxHosts maps each name to 127.0.0.1.
func hxHosts(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = "127.0.0.1"
	}
	return m
}

// hxRewrite replaces p's config file atomically with cfg, its placeholders
// filled with p's listen addresses.
func hxRewrite(t testing.TB, p *Proc, cfg string) {
	t.Helper()
	for k, v := range map[string]string{"PROXY": p.ProxyAddr, "ADMIN": p.AdminAddr, "HTTPS": p.HTTPSAddr, "HTTP": p.HTTPAddr} {
		cfg = strings.ReplaceAll(cfg, "{{"+k+"}}", v)
	}
	tmp := p.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.ConfigPath); err != nil {
		t.Fatal(err)
	}
}

// hxAdmin is the client for admin requests: no keep-alive, so that probing
// the proxy's fds does not itself hold one.
var hxAdmin = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// hxVersion returns the active config version from /readyz ("" on failure).
func hxVersion(p *Proc) string {
	resp, err := hxAdmin.Get("http://" + p.AdminAddr + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, v, ok := strings.Cut(strings.TrimSpace(string(b)), "config_version=")
	if !ok {
		return ""
	}
	return v
}

// hxReload rewrites the config and waits until /readyz shows a new version,
// which it returns.
func hxReload(t testing.TB, p *Proc, cfg string) string {
	t.Helper()
	old := hxVersion(p)
	if old == "" {
		t.Fatalf("no config_version on /readyz")
	}
	hxRewrite(t, p, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v := hxVersion(p); v != "" && v != old {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("config not reloaded within 10s (still %s)\n%s", old, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hxMetrics scrapes /metrics into series → value ("name{labels}" as written).
func hxMetrics(t testing.TB, p *Proc) map[string]float64 {
	t.Helper()
	resp, err := hxAdmin.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// hxMetric returns one series, failing the test when it is absent.
func hxMetric(t testing.TB, p *Proc, series string) float64 {
	t.Helper()
	v, ok := hxMetrics(t, p)[series]
	if !ok {
		t.Fatalf("metric %s is not exported", series)
	}
	return v
}

// hxRes is what the proxy process holds.
type hxRes struct{ fds, goroutines float64 }

func hxResources(t testing.TB, p *Proc) hxRes {
	t.Helper()
	m := hxMetrics(t, p)
	fds, ok1 := m["process_open_fds"]
	g, ok2 := m["go_goroutines"]
	if !ok1 || !ok2 {
		t.Fatalf("process_open_fds or go_goroutines not exported")
	}
	return hxRes{fds, g}
}

// hxWaitSettled polls until the proxy holds at most base+slack fds and
// goroutines; after within it marks the test failed with the last figures
// (and lets it go on, so that later checks still report).
func hxWaitSettled(t testing.TB, p *Proc, base hxRes, fdSlack, gSlack float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := hxResources(t, p)
		if r.fds <= base.fds+fdSlack && r.goroutines <= base.goroutines+gSlack {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("resources did not return to their starting level within %v: fds %v (start %v, bound +%v), goroutines %v (start %v, bound +%v)",
				within, r.fds, base.fds, fdSlack, r.goroutines, base.goroutines, gSlack)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hxAlive asserts the process runs, serves a plain request, and logged no
// panic and no data race.
func hxAlive(t testing.TB, p *Proc, url, host string) {
	t.Helper()
	select {
	case <-p.Exited():
		t.Fatalf("egress exited: %v\n%s", p.exitErr, hxTail(p.Stderr(), 4000))
	default:
	}
	resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("after the attack a normal request got %d %q", resp.StatusCode, body)
	}
	hxNoCrashLog(t, p)
}

// hxNoPanics fails when egress_panics_total counted a recovered panic on
// any listener.
func hxNoPanics(t testing.TB, p *Proc) {
	t.Helper()
	for k, v := range hxMetrics(t, p) {
		if strings.HasPrefix(k, "egress_panics_total") && v != 0 {
			t.Errorf("%s = %v: a connection handler panicked", k, v)
		}
	}
}

// hxNoCrashLog fails when the process log shows a panic or a data race.
func hxNoCrashLog(t testing.TB, p *Proc) {
	t.Helper()
	s := p.Stderr()
	for _, bad := range []string{"DATA RACE", "panic:", "fatal error:"} {
		if i := strings.Index(s, bad); i >= 0 {
			t.Fatalf("egress log shows %q:\n%s", bad, hxTail(s[i:], 6000))
		}
	}
}

func hxTail(s string, n int) string {
	if len(s) > n {
		return s[:n] + "\n…"
	}
	return s
}

// hxOrigin is a raw HTTP/1.1 origin on loopback. What it does with a request
// depends on the first path segment:
//
//	/early/…  answers 200 at once without reading the body, then holds the
//	          connection 1 s (/early/hold/…: 3 s) without reading and closes it
//	/slow/…   reads the body slowly (1 KiB per ms), then answers
//	/ws/…     answers an Upgrade: websocket request with 101 and then echoes
//	          bytes; /ws/speak/… first writes hxGreeting after the 101
//	/big/…    answers with a 50 MB body (written with a 60 s deadline)
//	anything  reads the body and answers "<label> <method> <path>"
//
// It counts accepted and open connections and, when record is set, keeps
// the raw bytes every connection received.
type hxOrigin struct {
	Label    string
	Addr     string
	Port     int
	Accepted atomic.Int64
	Open     atomic.Int64
	// BigDone receives, for each /big request, when its writing ended
	// (complete, or failed because the proxy closed the connection).
	BigDone chan time.Time

	mu     sync.Mutex
	raw    bytes.Buffer
	record bool
	hdrs   []http.Header // headers of the requests seen (recorded origins)
}

const hxGreeting = "hello-from-the-server-first"

// hxNewOrigin starts an origin on ip:port (port 0 picks one).
func hxNewOrigin(t testing.TB, label, ip string, port int, record bool) *hxOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	return hxServe(t, label, ln, record)
}

func hxServe(t testing.TB, label string, ln net.Listener, record bool) *hxOrigin {
	o := &hxOrigin{Label: label, Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, record: record,
		BigDone: make(chan time.Time, 16)}
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.Accepted.Add(1)
			o.Open.Add(1)
			conns.Store(c, true)
			go func() {
				defer func() { conns.Delete(c); o.Open.Add(-1) }()
				o.serve(c)
			}()
		}
	}()
	return o
}

// Raw returns everything recorded so far.
func (o *hxOrigin) Raw() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.raw.String()
}

// Headers returns the headers of the requests seen so far.
func (o *hxOrigin) Headers() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.hdrs...)
}

type hxRecReader struct {
	o *hxOrigin
	c net.Conn
}

func (r hxRecReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 && r.o.record {
		r.o.mu.Lock()
		if r.o.raw.Len() < 8<<20 {
			r.o.raw.Write(p[:n])
		}
		r.o.mu.Unlock()
	}
	return n, err
}

func (o *hxOrigin) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(hxRecReader{o, c})
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if o.record {
			o.mu.Lock()
			o.hdrs = append(o.hdrs, req.Header.Clone())
			o.mu.Unlock()
		}
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		path := req.URL.Path
		switch {
		case strings.HasPrefix(path, "/early/"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nearly")
			hold := time.Second
			if strings.HasPrefix(path, "/early/hold/") {
				hold = 3 * time.Second
			}
			time.Sleep(hold)
			return
		case strings.HasPrefix(path, "/slow/"):
			buf := make([]byte, 1024)
			for {
				_, err := req.Body.Read(buf)
				if err != nil {
					break
				}
				time.Sleep(time.Millisecond)
			}
		case strings.HasPrefix(path, "/ws/") && strings.EqualFold(req.Header.Get("Upgrade"), "websocket"):
			accept := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
				base64.StdEncoding.EncodeToString(accept[:]) + "\r\n\r\n"
			if strings.HasPrefix(path, "/ws/speak/") {
				resp += hxGreeting // in the same segment as the 101, as a busy server sends it
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(60 * time.Second))
			io.Copy(c, br) // echo until the peer closes
			return
		case strings.HasPrefix(path, "/big/"):
			io.Copy(io.Discard, req.Body)
			c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 52428800\r\n\r\n")
			chunk := make([]byte, 64<<10)
			for i := 0; i < 800; i++ {
				if _, err := c.Write(chunk); err != nil {
					break
				}
			}
			o.BigDone <- time.Now()
			return
		}
		io.Copy(io.Discard, req.Body)
		body := o.Label + " " + req.Method + " " + path
		if req.Method == http.MethodHead {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		} else {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s", len(body), body)
		}
		if req.Close {
			return
		}
	}
}

// hxSamePort starts origins labelled by ips on one port shared by all.
func hxSamePort(t testing.TB, record bool, ips ...string) []*hxOrigin {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < len(ips) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		var out []*hxOrigin
		for i, ln := range lns {
			out = append(out, hxServe(t, ips[i], ln, record))
		}
		return out
	}
	t.Fatalf("no common free port on %v", ips)
	return nil
}

// hxConn is a keep-alive client connection to the proxy.
type hxConn struct {
	c  net.Conn
	br *bufio.Reader
}

func hxDial(t testing.TB, src, addr string) *hxConn {
	c := DialFrom(t, src, addr)
	return &hxConn{c: c, br: bufio.NewReader(c)}
}

// send writes raw with a deadline.
func (h *hxConn) send(t testing.TB, raw string) {
	t.Helper()
	h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(h.c, raw); err != nil {
		t.Fatalf("writing %q: %v", pxFirstLine(raw), err)
	}
}

// read reads one response to a request of method and its body.
func (h *hxConn) read(t testing.TB, method string) (*http.Response, string) {
	t.Helper()
	h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(h.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response to a %s: %v", method, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols || method == http.MethodConnect && resp.StatusCode == 200 {
		return resp, "" // no body: the connection carries the tunnel now
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body of a %s response: %v", method, err)
	}
	return resp, string(b)
}

// get sends a GET for url with Host host and returns status and body.
func (h *hxConn) get(t testing.TB, url, host string) (*http.Response, string) {
	t.Helper()
	h.send(t, "GET "+url+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	return h.read(t, "GET")
}

// wantEOF asserts the proxy closes the connection (a reset counts) within
// timeout without sending another byte.
func (h *hxConn) wantEOF(t testing.TB, timeout time.Duration, why string) {
	t.Helper()
	h.c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(h.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the connection is still open after %v (got %q)", why, timeout, b)
	}
	if len(b) != 0 {
		t.Fatalf("%s: got %q before the close, want nothing", why, hxTail(string(b), 300))
	}
}

// hxEventsWhere returns the events that match.
func hxEventsWhere(p *Proc, match func(Event) bool) []Event {
	var out []Event
	for _, e := range p.Events() {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}
