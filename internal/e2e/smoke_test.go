package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baseConfig is a config with a loopback "office" segment (127.0.0.1/32), a
// "guest" segment (127.0.0.2/32) and test names that resolve to 127.0.0.1.
const baseConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
tls { hello_timeout = "2s" }
upstream {
  hosts = {
    "allowed.test" = "127.0.0.1"
    "other.test"   = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
    "blocked.test" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["tiktok.com", "blocked.test"] }
policy "base" {
  rule "no-social" {
    action = "deny"
    categories = ["social"]
  }
}
segment "office" {
  sources = ["127.0.0.1/32"]
  default = "allow"
  policies = ["base"]
}
segment "guest" {
  sources = ["127.0.0.2/32"]
  default = "deny"
  rule "only-allowed" {
    action = "allow"
    domains = ["allowed.test"]
  }
}
`

func TestSmokeConnectAllowedAndDenied(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	p := Start(t, baseConfig, nil)

	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(origin.Port))
	if code != 200 {
		t.Fatalf("CONNECT allowed.test: %d", code)
	}
	body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/x")
	if err != nil || !strings.Contains(body, "hello from allowed.test /x") {
		t.Fatalf("body %q, %v", body, err)
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("tls.client.server_name") == "allowed.test" && e.Str("event.duration") != ""
	})
	if ev.Str("event.action") != "allow" || ev.Str("egress.segment") != "office" || ev.Str("destination.bytes") == "0" {
		t.Fatalf("event %v", ev)
	}

	before := origin.Conns.Load()
	if _, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "www.tiktok.com:"+itoa(origin.Port)); code != 403 {
		t.Fatalf("CONNECT tiktok: %d", code)
	}
	if origin.Conns.Load() != before {
		t.Fatal("denied destination received a connection")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// HTTPSGetKeep does a TLS handshake and one GET on a keep-alive tunnel and
// leaves it open.
func HTTPSGetKeep(c net.Conn, sni string, ca *CA) (string, error) {
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: ca.Pool})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", sni)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	tc.SetDeadline(time.Time{})
	return string(b), err
}
