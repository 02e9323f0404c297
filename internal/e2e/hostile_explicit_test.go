package e2e

import (
	"crypto/rand"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHostileExplicitListener attacks the explicit proxy listener before and
// during a request, the part that now runs on the event loops (accept, the
// wait for the first bytes) and hands on to the request loop's goroutine:
// clients that connect and send nothing, connect and reset at once, send
// half a request line, a CONNECT one byte at a time then a reset, a whole
// CONNECT with its hello and a reset at once, and 64 KiB of garbage. While
// they are held a good client is served; the silent and the half-request
// ones are closed by header_timeout; afterwards the process holds no more
// fds and goroutines than before, no handler panicked, and a good client is
// served again.
func TestHostileExplicitListener(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	p := Start(t, baseConfig+"\nlimits { header_timeout = \"2s\" }\n", nil)
	target := "allowed.test:" + itoa(origin.Port)
	connectReq := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
	good := func(when string) {
		t.Helper()
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
		if code != 200 {
			t.Fatalf("%s: CONNECT %s: %d", when, target, code)
		}
		defer c.Close()
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/h")
		if err != nil || !strings.Contains(body, "hello from allowed.test /h") {
			t.Fatalf("%s: a good client got %q, %v", when, body, err)
		}
	}
	good("before the attack")
	base := hxResources(t, p)
	hello := tpHello(t)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	reset := func(c net.Conn) {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	var silent []net.Conn
	for i := 0; i < 60; i++ { // nothing at all
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		silent = append(silent, c)
		held = append(held, c)
	}
	for i := 0; i < 20; i++ { // connect, then a reset before a byte
		reset(DialFrom(t, "127.0.0.2", p.ProxyAddr))
	}
	for i := 0; i < 20; i++ { // half a request line
		c := DialFrom(t, "127.0.0.2", p.ProxyAddr)
		c.Write([]byte("CONNECT allowed.te"))
		silent = append(silent, c)
		held = append(held, c)
	}
	for i := 0; i < 10; i++ { // a CONNECT byte by byte, then a reset
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		for j := 0; j < 20+i; j++ {
			c.Write([]byte(connectReq[j : j+1]))
		}
		reset(c)
	}
	for i := 0; i < 20; i++ { // a whole CONNECT and its hello, and a reset at once
		c := DialFrom(t, "127.0.0.2", p.ProxyAddr)
		c.Write(append([]byte(connectReq), hello...))
		reset(c)
	}
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for i := 0; i < 10; i++ { // garbage where a request belongs: 400 or 431, closed
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(junk)
		if _, err := io.Copy(io.Discard, c); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("garbage: the proxy did not close the connection: %v", err)
		}
		c.Close()
	}

	good("during the attack")
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		buf := make([]byte, 64)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if isTimeout(err) {
				t.Fatalf("silent connection %d still open after header_timeout", i)
			}
			break
		}
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	hxWaitSettled(t, p, base, 8, 8, 20*time.Second)
	hxNoPanics(t, p)
	hxNoCrashLog(t, p)
	good("after the attack")
}
