package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers of the explicit proxy tests (proxy_*_test.go).

// configWith returns baseConfig with old replaced by new; it fails the test
// when old is not in the config, so that a drifting baseConfig cannot make a
// variant silently equal to the base.
func pxConfigWith(t testing.TB, cfg, old, new string) string {
	t.Helper()
	if !strings.Contains(cfg, old) {
		t.Fatalf("config variant: %q not found in config", old)
	}
	return strings.Replace(cfg, old, new, 1)
}

// withTLS adds attributes to baseConfig's tls block (hello_timeout stays 2s).
func pxWithTLS(t testing.TB, attrs string) string {
	return pxConfigWith(t, baseConfig, `tls { hello_timeout = "2s" }`, "tls {\n  hello_timeout = \"2s\"\n  "+attrs+"\n}")
}

// withHost adds an upstream.hosts entry mapping name to 127.0.0.1.
func pxWithHost(t testing.TB, cfg, name string) string {
	return pxConfigWith(t, cfg, `"allowed.test" = "127.0.0.1"`, `"allowed.test" = "127.0.0.1"`+"\n    \""+name+"\" = \"127.0.0.1\"")
}

// hello returns a real ClientHello record (one TLS record, exactly as Go's
// crypto/tls writes it) naming sni.
func pxGoHello(t testing.TB, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatalf("capturing hello: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatalf("capturing hello: %v", err)
	}
	return append(hdr, body...)
}

// chromiumHello is a real Chromium ClientHello (SNI www.example.com, ECH
// GREASE, post-quantum key share, 1955 bytes in one record).
func pxChromiumHello(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sni", "testdata", "clienthellos", "chromium.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fragment re-frames a single-record hello into records of at most size
// payload bytes each.
func pxFragment(rec []byte, size int) []byte {
	payload := rec[5:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 22, rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// alertRecord is the fatal alert the proxy sends for desc.
func pxAlertRecord(desc byte) []byte { return []byte{21, 3, 3, 0, 2, 2, desc} }

const (
	pxAlertAccessDenied = 49
)

// readAll reads c until EOF or error within timeout and returns what came.
func pxReadAll(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	return io.ReadAll(c)
}

// recorder is a RawOrigin handler that reads up to n bytes (or until EOF
// or 10 s) and then closes, handing what it got to got.
func pxRecorder(n int, got chan<- []byte) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, n)
		k, _ := io.ReadFull(c, buf)
		got <- buf[:k]
	}
}

// recv waits for one value from ch.
func pxRecv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// rawConnect sends CONNECT target, then extra (in the same write), and
// returns the connection and the reader after a 200.
func pxRawConnect(t testing.TB, proxyAddr, src, target string, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := DialFrom(t, src, proxyAddr)
	msg := append([]byte("CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"), extra...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	c.SetReadDeadline(time.Time{})
	return &bufConn{Conn: c, r: br}, br
}

// exchange writes raw to a new connection from src and reads one response.
func pxExchange(t testing.TB, proxyAddr, src, raw string) (*http.Response, string) {
	t.Helper()
	c := DialFrom(t, src, proxyAddr)
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, body := pxReadResp(t, br, raw)
	return resp, body
}

// readResp reads one response (for a request whose first line starts raw).
func pxReadResp(t testing.TB, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	var req *http.Request
	if strings.HasPrefix(raw, "CONNECT") {
		req = &http.Request{Method: http.MethodConnect}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading response to %q: %v", pxFirstLine(raw), err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body of response to %q: %v", pxFirstLine(raw), err)
	}
	return resp, string(b)
}

func pxFirstLine(s string) string {
	if i := strings.IndexByte(s, '\r'); i >= 0 {
		return s[:i]
	}
	return s
}

// tlsHandshake runs a Go TLS client handshake over c.
func pxTLSHandshake(c net.Conn, sni string, ca *CA) error {
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: ca.Pool})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	return tc.Handshake()
}

// eventWith matches an event whose dotted fields have the given values.
func pxEventWith(kv ...string) func(Event) bool {
	return func(e Event) bool {
		for i := 0; i+1 < len(kv); i += 2 {
			if e.Str(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// noConns asserts an origin counter stayed at 0.
func pxNoConns(t testing.TB, n interface{ Load() int64 }, what string) {
	t.Helper()
	if got := n.Load(); got != 0 {
		t.Fatalf("%s received %d connection(s); a denied destination must receive none", what, got)
	}
}

func pxNewReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// heldConn is a keep-alive proxy connection used for several requests.
type pxHeldConn struct {
	c  net.Conn
	br *bufio.Reader
}

// do sends one request and returns the status.
func (h *pxHeldConn) do(t testing.TB, raw string) int {
	t.Helper()
	if _, err := io.WriteString(h.c, raw); err != nil {
		t.Fatal(err)
	}
	h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, _ := pxReadResp(t, h.br, raw)
	return resp.StatusCode
}

// pxWantClosed asserts the proxy closes c without sending a byte. A reset
// counts as a close: the proxy may close with client bytes unread.
func pxWantClosed(t testing.TB, c net.Conn) {
	t.Helper()
	b, err := pxReadAll(c, 10*time.Second)
	if len(b) != 0 {
		t.Fatalf("client received %q, want a close", b)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client: %v, want a close", err)
	}
}
