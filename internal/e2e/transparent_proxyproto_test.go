package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// ppConfig puts every client listener behind a load balancer that speaks the
// PROXY protocol: 127.0.0.1, the one peer in proxy_protocol_from. Segments are
// chosen by the address the header claims:
// "comms" (10.20.5.0/24) may reach tiktok, "ministry" (10.20.0.0/16) may not,
// and "office" (the real loopback peer) is what a LOCAL header yields. No
// traffic ever goes to the 10.20.x.x addresses: they are only claimed.
func ppConfig(httpsPort, httpPort int) string {
	return fmt.Sprintf(`
proxy {
  listen              = "{{PROXY}}"
  proxy_protocol      = true
  proxy_protocol_from = ["127.0.0.1"]
}
admin { listen = "{{ADMIN}}" }
transparent {
  https_listen        = "{{HTTPS}}"
  http_listen         = "{{HTTP}}"
  https_port          = %d
  http_port           = %d
  proxy_protocol      = true
  proxy_protocol_from = ["127.0.0.1"]
}
tls { hello_timeout = "1s" }
upstream {
  hosts = {
    "allowed.test"   = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["tiktok.com"] }
policy "base" {
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
segment "office" {
  sources  = ["127.0.0.1/32"]
  default  = "allow"
  policies = ["base"]
}
segment "ministry" {
  sources  = ["10.20.0.0/16"]
  default  = "allow"
  policies = ["base"]
}
segment "comms" {
  sources = ["10.20.5.0/24"]
  default = "allow"
  rule "institutional-accounts" {
    action  = "allow"
    domains = ["tiktok.com"]
  }
  policies = ["base"]
}
`, httpsPort, httpPort)
}

// ppHeader is a PROXY header of version v claiming a TCP connection from
// src:srcPort to 127.0.0.1:443.
func ppHeader(t *testing.T, v byte, src string, srcPort int) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(v, &net.TCPAddr{IP: net.ParseIP(src), Port: srcPort},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 443})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ppLocal is a PROXY v2 LOCAL header, as a load balancer's health check sends.
func ppLocal(t *testing.T) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tpPrefixConn sends prefix in the same write as the first bytes written.
type tpPrefixConn struct {
	net.Conn
	prefix []byte
}

func (p *tpPrefixConn) Write(b []byte) (int, error) {
	if p.prefix != nil {
		_, err := p.Conn.Write(append(p.prefix, b...))
		p.prefix = nil
		if err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}

// ppEvent waits for the event of listener from the claimed source port.
func ppEvent(t *testing.T, p *Proc, listener string, srcPort int) Event {
	t.Helper()
	return p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == listener && e.Str("source.port") == strconv.Itoa(srcPort)
	})
}

func tpCheckSource(t *testing.T, ev Event, ip, segment, action string) {
	t.Helper()
	if ev.Str("source.ip") != ip || ev.Str("egress.segment") != segment || ev.Str("event.action") != action {
		t.Fatalf("want source.ip %s segment %s action %s; event %v", ip, segment, action, ev)
	}
}

// ppHTTP sends header and one origin-form request in a single write to the
// transparent HTTP listener and returns the status.
func ppHTTP(t *testing.T, addr string, header []byte, host string) int {
	t.Helper()
	c := DialFrom(t, "127.0.0.1", addr)
	req := fmt.Sprintf("GET /pp HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	if _, err := c.Write(append(append([]byte(nil), header...), req...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// ppConnect sends header then CONNECT on the explicit proxy listener.
func ppConnect(t *testing.T, addr string, header []byte, target string) (net.Conn, int) {
	t.Helper()
	c := DialFrom(t, "127.0.0.1", addr)
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	c.SetReadDeadline(time.Time{})
	return &bufConn{Conn: c, r: br}, resp.StatusCode
}

func TestTransparentProxyProtocolSegments(t *testing.T) {
	ca := NewCA(t)
	tlsOrigin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	httpOrigin := NewOrigin(t, nil, nil)
	p := Start(t, ppConfig(tlsOrigin.Port, httpOrigin.Port), nil)
	const comms, ministry = "10.20.5.7", "10.20.9.9"

	t.Run("https v1 comms allowed", func(t *testing.T) {
		// The header and the ClientHello in one write: the hello's start is
		// what the header reader buffered.
		c := &tpPrefixConn{Conn: DialFrom(t, "127.0.0.1", p.HTTPSAddr), prefix: ppHeader(t, 1, comms, 40001)}
		body, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/v1")
		if err != nil || !strings.Contains(body, "hello from www.tiktok.com /v1") {
			t.Fatalf("body %q, %v", body, err)
		}
		c.Close() // the tunnel's event is written when it closes
		tpCheckSource(t, ppEvent(t, p, "transparent_https", 40001), comms, "comms", "allow")
	})
	t.Run("https v2 ministry denied", func(t *testing.T) {
		before := tlsOrigin.Conns.Load()
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		c.Write(ppHeader(t, 2, ministry, 40002))
		if _, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/"); err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("want alert access_denied, got %v", err)
		}
		tpCheckSource(t, ppEvent(t, p, "transparent_https", 40002), ministry, "ministry", "deny")
		if tlsOrigin.Conns.Load() != before {
			t.Fatal("denied connection reached the origin")
		}
	})
	t.Run("https v2 LOCAL uses the peer", func(t *testing.T) {
		c := &tpPrefixConn{Conn: DialFrom(t, "127.0.0.1", p.HTTPSAddr), prefix: ppLocal(t)}
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/local")
		if err != nil || !strings.Contains(body, "/local") {
			t.Fatalf("body %q, %v", body, err)
		}
		port := c.LocalAddr().(*net.TCPAddr).Port
		c.Close()
		tpCheckSource(t, ppEvent(t, p, "transparent_https", port), "127.0.0.1", "office", "allow")
	})
	t.Run("http v1 UNKNOWN uses the peer", func(t *testing.T) {
		// HAProxy's send-proxy health checks: like a v2 LOCAL header.
		c := DialFrom(t, "127.0.0.1", p.HTTPAddr)
		port := c.LocalAddr().(*net.TCPAddr).Port
		io.WriteString(c, "PROXY UNKNOWN\r\nGET /unknown HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response %v, %v", resp, err)
		}
		resp.Body.Close()
		tpCheckSource(t, ppEvent(t, p, "transparent_http", port), "127.0.0.1", "office", "allow")
	})
	t.Run("http v2 comms allowed", func(t *testing.T) {
		if code := ppHTTP(t, p.HTTPAddr, ppHeader(t, 2, comms, 40003), "www.tiktok.com"); code != 200 {
			t.Fatalf("status %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "transparent_http", 40003), comms, "comms", "allow")
	})
	t.Run("http v1 ministry denied", func(t *testing.T) {
		if code := ppHTTP(t, p.HTTPAddr, ppHeader(t, 1, ministry, 40004), "www.tiktok.com"); code != 403 {
			t.Fatalf("status %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "transparent_http", 40004), ministry, "ministry", "deny")
	})
	t.Run("proxy v2 comms allowed", func(t *testing.T) {
		c, code := ppConnect(t, p.ProxyAddr, ppHeader(t, 2, comms, 40005), "www.tiktok.com:"+itoa(tlsOrigin.Port))
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		body, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/connect")
		if err != nil || !strings.Contains(body, "/connect") {
			t.Fatalf("body %q, %v", body, err)
		}
		c.Close()
		tpCheckSource(t, ppEvent(t, p, "proxy", 40005), comms, "comms", "allow")
	})
	t.Run("proxy v1 ministry denied", func(t *testing.T) {
		if _, code := ppConnect(t, p.ProxyAddr, ppHeader(t, 1, ministry, 40006), "www.tiktok.com:"+itoa(tlsOrigin.Port)); code != 403 {
			t.Fatalf("CONNECT: %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "proxy", 40006), ministry, "ministry", "deny")
	})
}

// tpRejected reads egress_connections_rejected_total{listener, reason="proxy_protocol"}.
func tpRejected(t *testing.T, p *Proc, listener string) int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^egress_connections_rejected_total\{listener="` + listener + `",reason="proxy_protocol"\} (\d+)$`)
	m := re.FindStringSubmatch(p.Metrics(t))
	if m == nil {
		t.Fatalf("no egress_connections_rejected_total for %s", listener)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// tpWaitRejected polls the counter until it reaches want (the handler counts
// just after it closes).
func tpWaitRejected(t *testing.T, p *Proc, listener string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := tpRejected(t, p, listener)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("tpRejected{listener=%q} = %d, want %d", listener, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tpClosedWithin reads from c until the proxy closes it and returns how long
// that took and what was read.
func tpClosedWithin(t *testing.T, c net.Conn, limit time.Duration) (time.Duration, []byte) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("not closed within %v", limit)
	}
	return time.Since(start), b
}

func TestTransparentProxyProtocolRejected(t *testing.T) {
	ca := NewCA(t)
	tlsOrigin := NewOrigin(t, ca, nil, "allowed.test")
	httpOrigin := NewOrigin(t, nil, nil)
	p := Start(t, ppConfig(tlsOrigin.Port, httpOrigin.Port), nil)
	for _, l := range []string{"proxy", "transparent_https", "transparent_http"} {
		if n := tpRejected(t, p, l); n != 0 {
			t.Fatalf("%s: %d tpRejected at start", l, n)
		}
	}

	// No header: a ClientHello, a request, a CONNECT are closed unanswered.
	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	c.Write(tpHello(t))
	if _, b := tpClosedWithin(t, c, 5*time.Second); len(b) != 0 {
		t.Fatalf("transparent_https answered %q", b)
	}
	tpWaitRejected(t, p, "transparent_https", 1)

	c = DialFrom(t, "127.0.0.1", p.HTTPAddr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	if _, b := tpClosedWithin(t, c, 5*time.Second); len(b) != 0 {
		t.Fatalf("transparent_http answered %q", b)
	}
	tpWaitRejected(t, p, "transparent_http", 1)

	c = DialFrom(t, "127.0.0.1", p.ProxyAddr)
	io.WriteString(c, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	if _, b := tpClosedWithin(t, c, 5*time.Second); len(b) != 0 {
		t.Fatalf("proxy answered %q", b)
	}
	tpWaitRejected(t, p, "proxy", 1)

	// A malformed v1 header is no better.
	c = DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	io.WriteString(c, "PROXY TCP4 10.20.5.7 nonsense\r\n")
	tpClosedWithin(t, c, 5*time.Second)
	tpWaitRejected(t, p, "transparent_https", 2)

	// A header that never arrives: closed after hello_timeout (1s), on every
	// listener, concurrently.
	type result struct {
		l string
		d time.Duration
	}
	res := make(chan result, 3)
	for l, addr := range map[string]string{"proxy": p.ProxyAddr, "transparent_https": p.HTTPSAddr, "transparent_http": p.HTTPAddr} {
		c := DialFrom(t, "127.0.0.1", addr)
		go func() {
			start := time.Now()
			c.SetReadDeadline(start.Add(8 * time.Second))
			io.Copy(io.Discard, c)
			res <- result{l, time.Since(start)}
		}()
	}
	for range 3 {
		r := <-res
		if r.d < 900*time.Millisecond || r.d > 6*time.Second {
			t.Errorf("%s: silent connection closed after %v, want about hello_timeout (1s)", r.l, r.d)
		}
	}
	tpWaitRejected(t, p, "proxy", 2)
	tpWaitRejected(t, p, "transparent_https", 3)
	tpWaitRejected(t, p, "transparent_http", 2)
	if tlsOrigin.Conns.Load() != 0 || httpOrigin.Conns.Load() != 0 {
		t.Fatal("a tpRejected connection reached an origin")
	}
}
