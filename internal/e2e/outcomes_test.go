package e2e

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One event per client connection, whatever its outcome: every way a CONNECT
// tunnel, a transparent TLS connection and a plain-HTTP request can end is
// driven against the real binary, each on its own client connection, and the
// events are counted by the client's source port. A shutdown then closes the
// connections still pending and counts each once.
func TestOneEventPerConnection(t *testing.T) {
	ca := NewCA(t)
	tlsOrigin := NewOrigin(t, ca, nil, "allowed.test", "other.test", "wrong.test")
	httpOrigin := NewOrigin(t, nil, nil)
	cfg := func(banned, helloTimeout string) string {
		return fmt.Sprintf(`
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
transparent {
  https_listen = "{{HTTPS}}"
  http_listen = "{{HTTP}}"
  https_port   = %d
}
tls { hello_timeout = %q }
limits {
  reload_interval = "200ms"
  shutdown_grace  = "1s"
}
upstream {
  hosts = { "allowed.test" = "127.0.0.1", "other.test" = "127.0.0.1", "wrong.test" = "127.0.0.1",
            "private.test" = "127.0.0.2", "dead.test" = "127.0.0.1", "www.tiktok.com" = "127.0.0.1" }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["tiktok.com", %q] }
segment "office" {
  sources = ["127.0.0.0/8"]
  default = "allow"
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
`, tlsOrigin.Port, helloTimeout, banned)
	}
	p := Start(t, cfg("banned.invalid", "1s"), nil)
	port := tlsOrigin.Port
	hello := func(sni string) []byte { return pxGoHello(t, sni) }
	// want maps a client source port to the outcome its one event must say.
	want := map[int]string{}
	srcPort := func(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }
	connect := func(target string) (net.Conn, int) {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
		return c, code
	}
	// drain reads what the proxy answers until it closes (bounded).
	drain := func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	tunnelWith := func(outcome, target string, first []byte) {
		c, code := connect(target)
		if code != 200 {
			t.Fatalf("%s: CONNECT %s: %d", outcome, target, code)
		}
		want[srcPort(c)] = outcome
		if first != nil {
			c.Write(first)
		}
		drain(c)
	}

	// CONNECT outcomes.
	c, code := connect(fmt.Sprintf("allowed.test:%d", port))
	if code != 200 {
		t.Fatalf("allow: %d", code)
	}
	want[srcPort(c)] = "allow/default"
	if body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/x"); err != nil || !strings.Contains(body, "hello from") {
		t.Fatalf("allow: %q %v", body, err)
	}
	c.Close()
	for _, tc := range []struct{ outcome, target string }{
		{"deny/rule", fmt.Sprintf("www.tiktok.com:%d", port)},
		{"deny/private_destination", fmt.Sprintf("private.test:%d", port)},
	} {
		cc := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		want[srcPort(cc)] = tc.outcome
		fmt.Fprintf(cc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
		drain(cc)
	}
	target := fmt.Sprintf("other.test:%d", port)
	tunnelWith("deny/sni_mismatch", target, hello("wrong.test"))
	tunnelWith("deny/non_tls", target, []byte("GET / HTTP/1.1\r\nHost: other.test\r\n\r\n"))
	tunnelWith("deny/malformed_client_hello", target, []byte{22, 3, 1, 0, 5, 2, 0, 0, 1, 0})
	tunnelWith("deny/hello_timeout", target, nil)
	tunnelWith("allow/destination_unavailable", "dead.test:"+strconv.Itoa(closedPort(t)), hello("dead.test"))

	// Transparent outcomes.
	tc := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	want[srcPort(tc)] = "deny/missing_sni"
	tc.Write(hello(""))
	drain(tc)
	tc = DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	want[srcPort(tc)] = "allow/default"
	if body, err := HTTPSGet(tc, "allowed.test", ca.Pool, "/t"); err != nil || !strings.Contains(body, "hello from") {
		t.Fatalf("transparent allow: %q %v", body, err)
	}
	tc.Close()

	// Plain HTTP: two requests on one connection are two decisions; its
	// events are counted apart (by path).
	hc := DialFrom(t, "127.0.0.1", p.ProxyAddr)
	host := fmt.Sprintf("allowed.test:%d", httpOrigin.Port)
	fmt.Fprintf(hc, "GET http://%s/a HTTP/1.1\r\nHost: %s\r\n\r\nGET http://www.tiktok.com/b HTTP/1.1\r\nHost: www.tiktok.com\r\nConnection: close\r\n\r\n", host, host)
	drain(hc)

	// Reload cut: an open tunnel whose name a reload bans.
	rc, code := connect(target)
	if code != 200 {
		t.Fatalf("reload: %d", code)
	}
	want[srcPort(rc)] = "deny/config_reload"
	if _, err := rc.Write(hello("other.test")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)          // the tunnel is up
	rewrite(t, p, cfg("other.test", "30s"))     // and a hello_timeout the shutdown below ends first
	waitCode(t, p, target, 403, 10*time.Second) // (its own connection: an event too, counted below)
	drain(rc)

	// Pending at shutdown: closed at the end of the grace period.
	pending := []net.Conn{}
	for i := 0; i < 3; i++ {
		pc := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		pc.Write(hello("allowed.test")[:8])
		want[srcPort(pc)] = "deny/shutdown"
		pending = append(pending, pc)
	}
	time.Sleep(300 * time.Millisecond)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("egress still running 15s after SIGTERM")
	}
	for _, pc := range pending {
		pc.Close()
	}

	got := map[int][]string{}
	plain := map[string]int{}
	for _, ev := range p.Events() {
		sp, _ := strconv.Atoi(ev.Str("source.port"))
		outcome := ev.Str("event.action") + "/" + ev.Str("event.reason")
		if ev.Str("url.path") != "" {
			plain[ev.Str("url.path")+" "+outcome]++
			continue
		}
		got[sp] = append(got[sp], outcome)
	}
	for sp, w := range want {
		if g := got[sp]; len(g) != 1 || g[0] != w {
			t.Errorf("client port %d: events %v, want exactly one %s", sp, g, w)
		}
	}
	for sp, g := range got {
		if len(g) != 1 {
			t.Errorf("client port %d: %d events %v", sp, len(g), g)
		}
	}
	if plain["/a allow/default"] != 1 || plain["/b deny/rule"] != 1 || len(plain) != 2 {
		t.Errorf("plain HTTP events: %v", plain)
	}
	// Reason shutdown events equal the connections the shutdown closed.
	if !strings.Contains(p.Stderr(), "closed open connections") || !strings.Contains(p.Stderr(), "count=3 ") {
		t.Errorf("shutdown did not say it closed the 3 pending connections:\n%s", p.Stderr())
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
