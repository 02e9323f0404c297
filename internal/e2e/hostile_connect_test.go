package e2e

import (
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHostileConnectHello attacks CONNECT tunnels between their 200 and
// their ClientHello, the part that runs on the event loops (no goroutine
// each): nothing after the 200, half a record, garbage, a hello one byte at
// a time then a reset, a hello and a reset at once (while the destination is
// dialed), and a hello twice. While they are held a good client is served;
// the silent ones are closed at hello_timeout; afterwards the process holds
// no more fds and goroutines than before, no handler panicked, and a good
// client is served again.
func TestHostileConnectHello(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	p := Start(t, baseConfig, nil) // tls.hello_timeout = 2s
	target := "allowed.test:" + itoa(origin.Port)
	open := func() net.Conn {
		t.Helper()
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
		if code != 200 {
			t.Fatalf("CONNECT %s: %d", target, code)
		}
		return c
	}
	good := func(when string) {
		t.Helper()
		c := open()
		defer c.Close()
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/h")
		if err != nil || !strings.Contains(body, "hello from allowed.test /h") {
			t.Fatalf("%s: a good client got %q, %v", when, body, err)
		}
	}
	good("before the attack")
	base := hxResources(t, p)
	hello := tpHello(t) // SNI www.example.com: not the CONNECT's name

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	reset := func(c net.Conn) {
		if b, ok := c.(*bufConn); ok {
			c = b.Conn
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	var silent []net.Conn
	for i := 0; i < 40; i++ { // nothing after the 200
		c := open()
		silent = append(silent, c)
		held = append(held, c)
	}
	for i := 0; i < 20; i++ { // half a record
		c := open()
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		silent = append(silent, c)
		held = append(held, c)
	}
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for i := 0; i < 10; i++ { // garbage
		c := open()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(junk)
		held = append(held, c)
	}
	for i := 0; i < 10; i++ { // byte by byte, then a reset
		c := open()
		for j := 0; j < 30+i; j++ {
			c.Write(hello[j : j+1])
		}
		reset(c)
	}
	for i := 0; i < 10; i++ { // a whole hello and a reset at once
		c := open()
		c.Write(hello)
		reset(c)
	}
	for i := 0; i < 10; i++ { // the hello twice
		c := open()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(append(append([]byte(nil), hello...), hello...))
		held = append(held, c)
	}

	good("during the attack")
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		buf := make([]byte, 64)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // an alert
			}
			if isTimeout(err) {
				t.Fatalf("silent tunnel %d still open after hello_timeout", i)
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
