package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Flows that are being set up when the configuration changes or the process
// stops: every client connection is tracked from its accept, decided under
// the config active when its ClientHello arrives, and closed (with one
// event) by a shutdown even while its hello is pending.

func lifecycleCfg(social, helloTimeout string, originPort int) string {
	cfg := strings.Replace(opsConfig, `hello_timeout = "2s"`, `hello_timeout = "`+helloTimeout+`"`, 1)
	cfg = strings.Replace(cfg, `shutdown_grace  = "3s"`, `shutdown_grace  = "1s"`, 1)
	cfg = strings.Replace(cfg, "SOCIAL", social, 1)
	return cfg + fmt.Sprintf(`
transparent {
  https_listen = "{{HTTPS}}"
  http_listen = "{{HTTP}}"
  https_port   = %d
}
`, originPort)
}

// readAlert reads what the proxy answers a ClientHello with: a TLS alert
// record (21 3 3 0 2 2 desc), then the close.
func readAlert(t *testing.T, c net.Conn) byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if len(b) != 7 || b[0] != 21 {
		t.Fatalf("want a TLS alert record, got % x", b)
	}
	return b[6]
}

// A CONNECT answered 200, and a transparent connection accepted, before a
// reload that bans the name; the hello arrives after the reload: denied
// under the new config, and the destination never sees a connection.
func TestReloadWhileFlowsAreSetUp(t *testing.T) {
	_, port, conns := RawOrigin(t, func(c net.Conn) { c.Close() })
	p := Start(t, lifecycleCfg("blocked.invalid", "20s", port), nil)
	target := fmt.Sprintf("other.test:%d", port)
	tunnel, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
	if code != 200 {
		t.Fatalf("CONNECT before the ban: %d", code)
	}
	defer tunnel.Close()
	direct := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	defer direct.Close()
	before := hxVersion(p)

	rewrite(t, p, lifecycleCfg("other.test", "20s", port))
	waitCode(t, p, target, 403, 10*time.Second)
	after := hxVersion(p)
	if after == before {
		t.Fatal("no new config version")
	}

	hello := pxGoHello(t, "other.test")
	for _, c := range []net.Conn{tunnel, direct} {
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		if desc := readAlert(t, c); desc != 49 {
			t.Fatalf("alert %d, want access_denied (49)", desc)
		}
	}
	for _, listener := range []string{"proxy", "transparent_https"} {
		ev := p.WaitEvent(t, 5*time.Second, pxEventWith("egress.listener", listener, "tls.client.server_name", "other.test"))
		if ev.Str("event.action") != "deny" || ev.Str("egress.config_version") != after {
			t.Fatalf("%s: %s under %s, want deny under %s", listener, ev.Str("event.action"), ev.Str("egress.config_version"), after)
		}
	}
	time.Sleep(100 * time.Millisecond) // a stray dial would have landed by now
	if n := conns.Load(); n != 0 {
		t.Fatalf("the banned destination saw %d connections", n)
	}
}

// Connections whose ClientHello is still pending at SIGTERM are closed at the
// end of the grace period, each with one event (reason shutdown), and
// counted once.
func TestShutdownClosesPendingHellos(t *testing.T) {
	_, port, conns := RawOrigin(t, func(c net.Conn) { c.Close() })
	p := Start(t, lifecycleCfg("blocked.invalid", "60s", port), nil)
	const nTransparent, nConnect = 20, 10
	hello := pxGoHello(t, "other.test")
	var open []net.Conn
	for i := 0; i < nTransparent; i++ {
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		c.Write(hello[:10]) // a hello that never completes
		open = append(open, c)
	}
	for i := 0; i < nConnect; i++ {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", fmt.Sprintf("other.test:%d", port))
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		open = append(open, c)
	}
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	// Every connection admitted before the signal.
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, p, `egress_active_connections{listener="transparent_https"}`) < nTransparent {
		if time.Now().After(deadline) {
			t.Fatal("transparent connections not admitted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("egress still running 15s after SIGTERM with a 1s grace period")
	}
	var shut, malformed int
	for _, ev := range p.Events() {
		switch ev.Str("event.reason") {
		case "shutdown":
			shut++
		case "malformed_client_hello":
			malformed++
		}
	}
	if shut != nTransparent+nConnect || malformed != 0 {
		t.Fatalf("events: %d with reason shutdown, %d malformed_client_hello; want %d and 0\n%s", shut, malformed, nTransparent+nConnect, p.Stderr())
	}
	if want := fmt.Sprintf("count=%d ", nTransparent+nConnect); !strings.Contains(p.Stderr(), "closed open connections") || !strings.Contains(p.Stderr(), want) {
		t.Fatalf("shutdown log does not say %q:\n%s", want, p.Stderr())
	}
	if strings.Contains(p.Stderr(), "still running at exit") {
		t.Fatalf("connection handlers still running at exit:\n%s", p.Stderr())
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the origin saw %d connections", n)
	}
}
