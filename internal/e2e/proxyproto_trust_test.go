package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Trusted PROXY-protocol peers (SPEC §10.4). The load balancer is 127.0.0.2;
// 127.0.0.3 is a device that reaches the listeners directly and claims, in a
// header of its own, the address of the communication team (10.20.5.7),
// whose segment may reach tiktok. Every other loopback address is in "lab",
// which may not. No traffic goes to the 10.20.x.x addresses: they are only
// claimed.
const (
	trBalancer = "127.0.0.2"
	trIntruder = "127.0.0.3"
	trComms    = "10.20.5.7"
	trMinistry = "10.20.9.9"
)

func trConfig(httpsPort, httpPort int, from string) string {
	return fmt.Sprintf(`
proxy {
  listen              = "{{PROXY}}"
  proxy_protocol      = true
  proxy_protocol_from = ["%[3]s/32"]
}
admin { listen = "{{ADMIN}}" }
transparent {
  https_listen        = "{{HTTPS}}"
  http_listen         = "{{HTTP}}"
  https_port          = %[1]d
  http_port           = %[2]d
  proxy_protocol      = true
  proxy_protocol_from = ["%[3]s"]
}
# Long enough that a connection closed at once was not waiting for a header.
tls { hello_timeout = "10s" }
limits { reload_interval = "200ms" }
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
segment "lab" {
  sources  = ["127.0.0.0/8"]
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
`, httpsPort, httpPort, from)
}

// trRejected reads egress_connections_rejected_total{listener, reason}.
func trRejected(t *testing.T, p *Proc, listener, reason string) int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^egress_connections_rejected_total\{listener="` + listener + `",reason="` + reason + `"\} (\d+)$`)
	m := re.FindStringSubmatch(p.Metrics(t))
	if m == nil {
		t.Fatalf("no egress_connections_rejected_total{listener=%q,reason=%q}", listener, reason)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// trWaitRejected polls the counter until it reaches want.
func trWaitRejected(t *testing.T, p *Proc, listener, reason string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := trRejected(t, p, listener, reason)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("egress_connections_rejected_total{listener=%q,reason=%q} = %d, want %d", listener, reason, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trRefused connects from src, sends a header claiming the comms address and
// then payload, and checks that the proxy closes the connection promptly
// without a byte of answer. Write errors are expected: the proxy may have
// closed before the bytes arrive.
func trRefused(t *testing.T, addr, src string, payload []byte) {
	t.Helper()
	c := DialFrom(t, src, addr)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(ppHeader(t, 2, trComms, 41000), payload...))
	d, b := trClosed(t, c)
	if len(b) != 0 {
		t.Fatalf("answered %q", b)
	}
	if d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// trClosed reads from c until the proxy closes it (EOF or reset) and returns
// how long that took and what was read; it fails after 8s.
func trClosed(t *testing.T, c net.Conn) (time.Duration, []byte) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(8 * time.Second))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("not closed within 8s (read %q)", b)
	}
	return time.Since(start), b
}

// trConnect sends a header claiming claimed:port from src, then a CONNECT,
// and returns the tunnel and the status.
func trConnect(t *testing.T, addr, src, claimed string, port int, target string) (net.Conn, int) {
	t.Helper()
	c := DialFrom(t, src, addr)
	hdr := ppHeader(t, 1, claimed, port)
	fmt.Fprintf(c, "%sCONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hdr, target, target)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s from %s claiming %s: %v", target, src, claimed, err)
	}
	c.SetReadDeadline(time.Time{})
	return &bufConn{Conn: c, r: br}, resp.StatusCode
}

// trHTTP sends a header claiming claimed:port from src and one request to the
// transparent HTTP listener, and returns the status.
func trHTTP(t *testing.T, addr, src, claimed string, port int, host string) int {
	t.Helper()
	c := DialFrom(t, src, addr)
	fmt.Fprintf(c, "%sGET /tr HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", ppHeader(t, 2, claimed, port), host)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET from %s claiming %s: %v", src, claimed, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// trLogged waits until the log says that a connection from src to listener
// was refused as untrusted.
func trLogged(t *testing.T, p *Proc, listener, src string) {
	t.Helper()
	re := regexp.MustCompile(`level=WARN msg="connection from a peer not in proxy_protocol_from refused before its PROXY header" listener=` +
		listener + ` peer=` + regexp.QuoteMeta(src) + `:\d+`)
	deadline := time.Now().Add(5 * time.Second)
	for !re.MatchString(p.Stderr()) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of %s on %s in the log:\n%s", src, listener, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProxyProtocolTrustedPeers(t *testing.T) {
	ca := NewCA(t)
	tlsOrigin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	httpOrigin := NewOrigin(t, nil, nil)
	p := Start(t, trConfig(tlsOrigin.Port, httpOrigin.Port, trBalancer), nil)
	tiktok := "www.tiktok.com:" + itoa(tlsOrigin.Port)
	listeners := []string{"proxy", "transparent_https", "transparent_http"}
	for _, l := range listeners {
		if n := trRejected(t, p, l, "proxy_protocol_untrusted"); n != 0 {
			t.Fatalf("%s: %d untrusted at start", l, n)
		}
	}

	// The intruder's header would put it in comms; it is never read.
	t.Run("proxy intruder", func(t *testing.T) {
		trRefused(t, p.ProxyAddr, trIntruder, []byte("CONNECT "+tiktok+" HTTP/1.1\r\nHost: "+tiktok+"\r\n\r\n"))
		trWaitRejected(t, p, "proxy", "proxy_protocol_untrusted", 1)
		trLogged(t, p, "proxy", trIntruder)
	})
	t.Run("transparent_https intruder", func(t *testing.T) {
		trRefused(t, p.HTTPSAddr, trIntruder, tpHello(t))
		trWaitRejected(t, p, "transparent_https", "proxy_protocol_untrusted", 1)
		trLogged(t, p, "transparent_https", trIntruder)
	})
	t.Run("transparent_http intruder", func(t *testing.T) {
		trRefused(t, p.HTTPAddr, trIntruder, []byte("GET / HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n"))
		trWaitRejected(t, p, "transparent_http", "proxy_protocol_untrusted", 1)
		trLogged(t, p, "transparent_http", trIntruder)
	})
	// Silent: refused at once, not after hello_timeout (10s) of waiting for
	// a header.
	t.Run("silent intruder", func(t *testing.T) {
		c := DialFrom(t, trIntruder, p.HTTPSAddr)
		if d, b := trClosed(t, c); d > 3*time.Second || len(b) != 0 {
			t.Fatalf("closed after %v with %q", d, b)
		}
		trWaitRejected(t, p, "transparent_https", "proxy_protocol_untrusted", 2)
	})
	if n := tlsOrigin.Conns.Load() + httpOrigin.Conns.Load(); n != 0 {
		t.Fatalf("the intruder reached an origin (%d connections)", n)
	}
	for _, ev := range p.Events() {
		if ev.Str("source.ip") == trComms {
			t.Fatalf("an event for the intruder's claimed address: %v", ev)
		}
	}

	// The balancer's headers decide the segment.
	t.Run("proxy balancer comms", func(t *testing.T) {
		c, code := trConnect(t, p.ProxyAddr, trBalancer, trComms, 41001, tiktok)
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		if body, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/tr"); err != nil || !strings.Contains(body, "/tr") {
			t.Fatalf("body %q, %v", body, err)
		}
		c.Close()
		tpCheckSource(t, ppEvent(t, p, "proxy", 41001), trComms, "comms", "allow")
	})
	t.Run("proxy balancer ministry", func(t *testing.T) {
		if _, code := trConnect(t, p.ProxyAddr, trBalancer, trMinistry, 41002, tiktok); code != 403 {
			t.Fatalf("CONNECT: %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "proxy", 41002), trMinistry, "ministry", "deny")
	})
	t.Run("transparent_https balancer comms", func(t *testing.T) {
		c := &tpPrefixConn{Conn: DialFrom(t, trBalancer, p.HTTPSAddr), prefix: ppHeader(t, 2, trComms, 41003)}
		if body, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/tls"); err != nil || !strings.Contains(body, "/tls") {
			t.Fatalf("body %q, %v", body, err)
		}
		c.Close()
		tpCheckSource(t, ppEvent(t, p, "transparent_https", 41003), trComms, "comms", "allow")
	})
	t.Run("transparent_http balancer comms", func(t *testing.T) {
		if code := trHTTP(t, p.HTTPAddr, trBalancer, trComms, 41004, "www.tiktok.com"); code != 200 {
			t.Fatalf("status %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "transparent_http", 41004), trComms, "comms", "allow")
	})
	for _, l := range listeners {
		if n := trRejected(t, p, l, "proxy_protocol"); n != 0 {
			t.Errorf("%s: %d counted as a bad header", l, n)
		}
	}

	// proxy_protocol_from applies on reload: the balancer moves to
	// 127.0.0.3, and 127.0.0.2 is distrusted at once.
	old, err := os.ReadFile(p.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.ReplaceAll(string(old), `"`+trBalancer, `"`+trIntruder)
	if err := os.WriteFile(p.ConfigPath+".tmp", []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p.ConfigPath+".tmp", p.ConfigPath); err != nil {
		t.Fatal(err)
	}
	// Until the reload, the old balancer's header is honoured (a 403 for
	// ministry); after it, the connection is closed unanswered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := DialFrom(t, trBalancer, p.ProxyAddr)
		fmt.Fprintf(c, "%sCONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", ppHeader(t, 1, trMinistry, 41005), tiktok, tiktok)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		c.Close()
		if err != nil {
			break
		}
		if resp.StatusCode != 403 {
			t.Fatalf("before the reload: CONNECT %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old balancer is still trusted after the reload\n%s", p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	trWaitRejected(t, p, "proxy", "proxy_protocol_untrusted", 2)
	trLogged(t, p, "proxy", trBalancer)
	t.Run("reloaded proxy new balancer", func(t *testing.T) {
		if _, code := trConnect(t, p.ProxyAddr, trIntruder, trMinistry, 41006, tiktok); code != 403 {
			t.Fatalf("CONNECT: %d", code)
		}
		tpCheckSource(t, ppEvent(t, p, "proxy", 41006), trMinistry, "ministry", "deny")
	})
	t.Run("reloaded transparent_http old balancer", func(t *testing.T) {
		trRefused(t, p.HTTPAddr, trBalancer, []byte("GET / HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n"))
		trWaitRejected(t, p, "transparent_http", "proxy_protocol_untrusted", 2)
	})
}
