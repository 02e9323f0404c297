package e2e

import (
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHostileTransparentListener attacks the transparent TLS listener, whose
// connections run on the parkers from their accept (no goroutine each):
// clients that send nothing, half a record, garbage, a hello one byte at a
// time and then a reset, a whole hello and a reset at once (while the
// destination is dialed), and a hello twice. While they are held, a good
// client is served; the silent ones are closed within hello_timeout;
// afterwards the process holds no more fds and goroutines than before, no
// handler panicked, and a good client is served again.
func TestHostileTransparentListener(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.example.com")
	p := Start(t, tpConfig(origin.Port, 1, `tls { hello_timeout = "2s" }`), nil)
	good := func(when string) {
		t.Helper()
		c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
		defer c.Close()
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/h")
		if err != nil || !strings.Contains(body, "hello from allowed.test /h") {
			t.Fatalf("%s: a good client got %q, %v", when, body, err)
		}
	}
	good("before the attack")
	base := hxResources(t, p)
	hello := tpHello(t) // SNI www.example.com: allowed, mapped to the origin

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
	// Too slowly: connections that never send a byte.
	var silent []net.Conn
	for i := 0; i < 60; i++ {
		c := DialFrom(t, "127.0.0.2", p.HTTPSAddr)
		silent = append(silent, c)
		held = append(held, c)
	}
	// Too little: the first bytes of a handshake record, then nothing.
	for i := 0; i < 30; i++ {
		c := DialFrom(t, "127.0.0.2", p.HTTPSAddr)
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		silent = append(silent, c)
		held = append(held, c)
	}
	// Garbage where a ClientHello belongs.
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for i := 0; i < 20; i++ {
		c := DialFrom(t, "127.0.0.3", p.HTTPSAddr)
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(junk)
		held = append(held, c)
	}
	// A hello one byte at a time for a while, then a reset.
	for i := 0; i < 10; i++ {
		c := DialFrom(t, "127.0.0.3", p.HTTPSAddr)
		for j := 0; j < 40+i; j++ {
			c.Write(hello[j : j+1])
		}
		reset(c)
	}
	// A whole hello and a reset at once: the flow is dialing or replaying
	// when its client goes.
	for i := 0; i < 20; i++ {
		c := DialFrom(t, "127.0.0.4", p.HTTPSAddr)
		c.Write(hello)
		reset(c)
	}
	// The hello twice: the second is bytes after the hello, relayed.
	for i := 0; i < 10; i++ {
		c := DialFrom(t, "127.0.0.4", p.HTTPSAddr)
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(append(append([]byte(nil), hello...), hello...))
		held = append(held, c)
	}

	good("during the attack")
	// The silent and the half-record ones are closed by the proxy within
	// hello_timeout.
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		buf := make([]byte, 64)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // an alert
			}
			if isTimeout(err) {
				t.Fatalf("silent connection %d still open after hello_timeout", i)
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
