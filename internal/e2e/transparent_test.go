package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
)

// tpConfig is a config with both transparent listeners, routed to httpsPort
// (TLS origins) and httpPort (plain origins); test names resolve to
// 127.0.0.1 and the loopback client is in the "office" segment, which denies
// tiktok.com. extra is appended (a tls block, more segments).
func tpConfig(httpsPort, httpPort int, extra string) string {
	return fmt.Sprintf(`
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
transparent {
  https_listen = "{{HTTPS}}"
  http_listen  = "{{HTTP}}"
  https_port   = %d
  http_port    = %d
}
upstream {
  hosts = {
    "allowed.test"    = "127.0.0.1"
    "www.tiktok.com"  = "127.0.0.1"
    "www.example.com" = "127.0.0.1"
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
%s
`, httpsPort, httpPort, extra)
}

// tpHello is a captured Chromium ClientHello: one 1955-byte record with an
// X25519MLKEM768 key share, ECH GREASE and SNI www.example.com.
func tpHello(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../sni/testdata/clienthellos/chromium.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1955 || b[0] != 0x16 {
		t.Fatalf("chromium.bin: %d bytes, first byte %#x", len(b), b[0])
	}
	return b
}

// tpRecorder is a RawOrigin that records the first bytes of each connection.
type tpRecorder struct {
	port int
	got  chan []byte
}

// tpNewRecorder starts a raw origin that reads until it has want bytes (or 5 s
// pass, or the peer closes) and reports what it read.
func tpNewRecorder(t *testing.T, want int) *tpRecorder {
	r := &tpRecorder{got: make(chan []byte, 4)}
	_, r.port, _ = RawOrigin(t, func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, want)
		n, _ := io.ReadFull(c, buf)
		r.got <- buf[:n]
	})
	return r
}

func (r *tpRecorder) wait(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-r.got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("origin received no connection")
		return nil
	}
}

func (r *tpRecorder) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-r.got:
		t.Fatalf("denied connection reached the origin (%d bytes)", len(b))
	default:
	}
}

// tpReadAlert reads what the proxy answers on c until it closes and returns the
// TLS alert description it carried, or -1 when no alert came.
func tpReadAlert(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within 10s (read %x)", b)
	}
	if len(b) >= 7 && b[0] == 0x15 && b[3] == 0 && b[4] == 2 && b[5] == 2 {
		return int(b[6])
	}
	if len(b) != 0 {
		t.Fatalf("unexpected answer %x", b)
	}
	return -1
}

const tpAlertAccessDenied = 49

// tpEvent waits for the event of listener whose field path equals value.
func tpEvent(t *testing.T, p *Proc, listener, path, value string) Event {
	t.Helper()
	return p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == listener && e.Str(path) == value
	})
}

func TestTransparentTLSAllowedDeniedNoSNI(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	p := Start(t, tpConfig(origin.Port, 1, `tls { hello_timeout = "2s" }`), nil)

	// Allowed: SNI straight to the transparent listener, as a redirected
	// client would send it.
	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/t")
	if err != nil || !strings.Contains(body, "hello from allowed.test /t") {
		t.Fatalf("allowed: body %q, %v", body, err)
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_https" && e.Str("tls.client.server_name") == "allowed.test" &&
			e.Str("event.duration") != ""
	})
	if ev.Str("event.action") != "allow" || ev.Str("egress.segment") != "office" || ev.Str("destination.port") != itoa(origin.Port) ||
		ev.Str("destination.domain") != "allowed.test" || ev.Str("destination.ip") != "127.0.0.1" || ev.Str("destination.bytes") == "0" {
		t.Fatalf("allowed event %v", ev)
	}

	// Denied on SNI: alert access_denied, the origin never sees a connection.
	before := origin.Conns.Load()
	c = DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	_, err = HTTPSGet(c, "www.tiktok.com", ca.Pool, "/")
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("tiktok: want alert access_denied, got %v", err)
	}
	ev = tpEvent(t, p, "transparent_https", "tls.client.server_name", "www.tiktok.com")
	if ev.Str("event.action") != "deny" || ev.Str("event.reason") != "rule" || ev.Str("rule.name") != "no-social" {
		t.Fatalf("tiktok event %v", ev)
	}

	// No SNI: Go sends none for an IP ServerName. Always denied.
	c = DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	tc := tls.Client(c, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	err = tc.Handshake()
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("no SNI: want alert access_denied, got %v", err)
	}
	ev = tpEvent(t, p, "transparent_https", "event.reason", "missing_sni")
	if ev.Str("event.action") != "deny" || ev.Str("tls.client.server_name") != "" || ev.Str("egress.tls.ja4") == "" {
		t.Fatalf("no SNI event %v", ev)
	}
	// The address the client connected to (not NATed here: the listener's).
	if host, _, _ := net.SplitHostPort(p.HTTPSAddr); ev.Str("destination.ip") != host {
		t.Fatalf("no SNI event destination.ip %q, want %s", ev.Str("destination.ip"), host)
	}
	time.Sleep(100 * time.Millisecond) // a stray dial would have landed by now
	if n := origin.Conns.Load(); n != before {
		t.Fatalf("denied connections reached the origin: %d new", n-before)
	}
}

func TestTransparentECH(t *testing.T) {
	hello := tpHello(t)

	t.Run("allow", func(t *testing.T) {
		rec := tpNewRecorder(t, len(hello))
		p := Start(t, tpConfig(rec.port, 1, ""), nil)
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		if got := rec.wait(t); !bytes.Equal(got, hello) {
			t.Fatalf("origin got %d bytes, not the %d-byte hello sent", len(got), len(hello))
		}
		c.Close()
		ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("egress.listener") == "transparent_https" && e.Str("event.duration") != ""
		})
		if ev.Str("event.action") != "allow" || ev.Str("egress.tls.ech") != "true" ||
			ev.Str("tls.client.server_name") != "www.example.com" || ev.Str("source.bytes") != itoa(len(hello)) {
			t.Fatalf("event %v", ev)
		}
	})

	t.Run("deny", func(t *testing.T) {
		rec := tpNewRecorder(t, len(hello))
		p := Start(t, tpConfig(rec.port, 1, `tls { ech = "deny" }`), nil)
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		if a := tpReadAlert(t, c); a != tpAlertAccessDenied {
			t.Fatalf("alert %d, want access_denied", a)
		}
		ev := tpEvent(t, p, "transparent_https", "tls.client.server_name", "www.example.com")
		if ev.Str("event.action") != "deny" || ev.Str("event.reason") != "ech" || ev.Str("egress.tls.ech") != "true" {
			t.Fatalf("event %v", ev)
		}
		rec.none(t)
	})
}

// tpFragment re-frames a single-record hello as records of at most n bytes of
// handshake data each.
func tpFragment(t *testing.T, record []byte, n int) []byte {
	t.Helper()
	if len(record) < 5 || int(record[3])<<8|int(record[4]) != len(record)-5 {
		t.Fatal("not a single record")
	}
	var out []byte
	body := record[5:]
	for len(body) > 0 {
		k := min(n, len(body))
		out = append(out, 0x16, record[1], record[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	return out
}

func TestTransparentFragmentedHello(t *testing.T) {
	frag := tpFragment(t, tpHello(t), 8) // 245 records
	rec := tpNewRecorder(t, len(frag))
	p := Start(t, tpConfig(rec.port, 1, ""), nil)
	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	// Each record its own write, the first header split byte by byte.
	for i := range 5 {
		if _, err := c.Write(frag[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	for off := 5; off < len(frag); {
		k := min(13, len(frag)-off)
		if _, err := c.Write(frag[off : off+k]); err != nil {
			t.Fatal(err)
		}
		off += k
	}
	if got := rec.wait(t); !bytes.Equal(got, frag) {
		t.Fatalf("origin got %d bytes, not the %d bytes sent", len(got), len(frag))
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_https" && e.Str("event.duration") != ""
	})
	if ev.Str("event.action") != "allow" || ev.Str("tls.client.server_name") != "www.example.com" {
		t.Fatalf("event %v", ev)
	}
}

// tpUtlsHello is the first record a uTLS HelloChrome_Auto client sends for sni.
func tpUtlsHello(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		u := utls.UClient(a, &utls.Config{ServerName: sni}, utls.HelloChrome_Auto)
		u.Handshake() // fails when b closes
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestTransparentPostQuantumHello(t *testing.T) {
	hello := tpUtlsHello(t, "allowed.test")
	if len(hello) < 1500 {
		t.Fatalf("uTLS Chrome hello is %d bytes; expected a post-quantum key share over 1500", len(hello))
	}
	rec := tpNewRecorder(t, len(hello))
	p := Start(t, tpConfig(rec.port, 1, ""), nil)
	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	if got := rec.wait(t); !bytes.Equal(got, hello) {
		t.Fatalf("origin got %d bytes, not the %d-byte hello sent", len(got), len(hello))
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_https" && e.Str("event.duration") != ""
	})
	if ev.Str("event.action") != "allow" || ev.Str("tls.client.server_name") != "allowed.test" ||
		ev.Str("source.bytes") != itoa(len(hello)) || !strings.HasPrefix(ev.Str("egress.tls.ja4"), "t13d") {
		t.Fatalf("event %v", ev)
	}
}

func TestTransparentHTTPPipelined(t *testing.T) {
	origin := NewOrigin(t, nil, nil)
	p := Start(t, tpConfig(1, origin.Port, ""), nil)
	c := DialFrom(t, "127.0.0.1", p.HTTPAddr)
	// The Host port is ignored: http_port is dialed.
	_, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: allowed.test:9999\r\n\r\n"+
		"GET /b HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	r1, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(r1.Body)
	r1.Body.Close()
	if r1.StatusCode != 200 || !strings.Contains(string(b1), "hello from allowed.test") || !strings.Contains(string(b1), " /a") {
		t.Fatalf("first: %d %q", r1.StatusCode, b1)
	}
	r2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r2.Body)
	r2.Body.Close()
	if ps := r2.Header.Get("Proxy-Status"); r2.StatusCode != 403 || !strings.Contains(ps, "error=http_request_denied") {
		t.Fatalf("second: %d, Proxy-Status %q", r2.StatusCode, ps)
	}
	if n := origin.Conns.Load(); n != 1 {
		t.Fatalf("origin saw %d connections, want 1", n)
	}
	ev := tpEvent(t, p, "transparent_http", "url.path", "/a")
	if ev.Str("event.action") != "allow" || ev.Str("destination.port") != itoa(origin.Port) || ev.Str("url.domain") != "allowed.test" ||
		ev.Str("http.response.status_code") != "200" {
		t.Fatalf("event /a %v", ev)
	}
	ev = tpEvent(t, p, "transparent_http", "url.path", "/b")
	if ev.Str("event.action") != "deny" || ev.Str("rule.name") != "no-social" || ev.Str("http.response.status_code") != "403" {
		t.Fatalf("event /b %v", ev)
	}
}

// A denied transparent connection names its destination (the SNI) in
// destination.domain, as a denied CONNECT does, so that one SIEM query finds
// both.
func TestTransparentDenyEventDestination(t *testing.T) {
	p := Start(t, tpConfig(1, 1, ""), nil)
	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	tc := tls.Client(c, &tls.Config{ServerName: "www.tiktok.com", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake succeeded")
	}
	ev := tpEvent(t, p, "transparent_https", "tls.client.server_name", "www.tiktok.com")
	if ev.Str("event.action") != "deny" {
		t.Fatalf("event %v", ev)
	}
	if ev.Str("destination.domain") != "www.tiktok.com" {
		t.Fatalf("transparent TLS deny event without destination.domain: %v", ev)
	}
}
