package e2e

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The transparent listeners' other refusals: a name resolving to a refused
// range, bytes that are not TLS, a hello that never completes, a request
// without a Host.
func TestTransparentRefusals(t *testing.T) {
	rec := tpNewRecorder(t, 1)
	httpOrigin := NewOrigin(t, nil, nil)
	// loop.test resolves to 127.0.0.2: loopback, and not in allow_private.
	cfg := strings.Replace(tpConfig(rec.port, httpOrigin.Port, `tls { hello_timeout = "1s" }`),
		`"allowed.test"    = "127.0.0.1"`, `"allowed.test" = "127.0.0.1"
    "loop.test" = "127.0.0.2"`, 1)
	p := Start(t, cfg, nil)

	t.Run("private destination", func(t *testing.T) {
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		c.Write(tpUtlsHello(t, "loop.test"))
		if a := tpReadAlert(t, c); a != tpAlertAccessDenied {
			t.Fatalf("alert %d, want access_denied", a)
		}
		ev := tpEvent(t, p, "transparent_https", "tls.client.server_name", "loop.test")
		if ev.Str("event.action") != "deny" || ev.Str("event.reason") != "private_destination" {
			t.Fatalf("event %v", ev)
		}
	})
	t.Run("not TLS", func(t *testing.T) {
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		if _, b := tpClosedWithin(t, c, 5*time.Second); len(b) != 0 {
			t.Fatalf("answered %q", b)
		}
		ev := tpEvent(t, p, "transparent_https", "event.reason", "non_tls")
		if ev.Str("event.action") != "deny" {
			t.Fatalf("event %v", ev)
		}
	})
	t.Run("hello timeout", func(t *testing.T) {
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		c.Write(tpHello(t)[:100])
		if d, _ := tpClosedWithin(t, c, 6*time.Second); d < 800*time.Millisecond {
			t.Fatalf("closed after %v, before hello_timeout (1s)", d)
		}
		tpEvent(t, p, "transparent_https", "event.reason", "hello_timeout")
	})
	t.Run("HTTP/1.0 without Host", func(t *testing.T) {
		c := DialFrom(t, "127.0.0.1", p.HTTPAddr)
		io.WriteString(c, "GET /nohost HTTP/1.0\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 || httpOrigin.Conns.Load() != 0 {
			t.Fatalf("a request without a name was forwarded: %d", resp.StatusCode)
		}
		ev := tpEvent(t, p, "transparent_http", "url.path", "/nohost")
		if ev.Str("event.action") != "deny" {
			t.Fatalf("event %v", ev)
		}
	})
	rec.none(t)
}
