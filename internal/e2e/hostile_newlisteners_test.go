package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on the two listeners of the second version, the TLS proxy listener
// with identity (SPEC §10.2) and the QUIC listener (SPEC §10.1): clients
// that send too little, too slowly, too much, garbage or the same thing
// twice. While they are held, another client still gets through; afterwards
// the process holds no more fds and goroutines than before, and no handler
// panicked.

// idGet sends one request for url through the TLS proxy listener from src
// with alice's credentials and returns the status.
func idGet(t *testing.T, p *Proc, src string, ca *CA, url, host string) int {
	t.Helper()
	c, err := proxyTLSDial(t, p, src, ca, nil)
	if err != nil {
		t.Fatalf("TLS handshake with the proxy from %s: %v", src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte("alice:" + idPasswords["alice"]))
	if _, err := io.WriteString(c, "GET "+url+" HTTP/1.1\r\nHost: "+host+"\r\nProxy-Authorization: Basic "+auth+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHostileProxyTLSListener(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, nil, nil)
	p := Start(t, idCfg("", ""), idFiles(t, ca)) // tls.hello_timeout = 2s, 50 failures a minute
	url, host := "http://allowed.test:"+itoa(origin.Port)+"/", "allowed.test:"+itoa(origin.Port)
	if code := idGet(t, p, "127.0.0.5", ca, url, host); code != 200 {
		t.Fatalf("before the attack: %d", code)
	}
	base := hxResources(t, p)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Too slowly: connections that never send a byte.
	var silent []net.Conn
	for i := 0; i < 60; i++ {
		c := DialFrom(t, "127.0.0.2", p.TLSAddr)
		silent = append(silent, c)
		held = append(held, c)
	}
	// Too little: the first bytes of a TLS record, then nothing.
	for i := 0; i < 30; i++ {
		c := DialFrom(t, "127.0.0.2", p.TLSAddr)
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		held = append(held, c)
	}
	// Garbage: 64 KiB of random bytes where a ClientHello belongs.
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for i := 0; i < 20; i++ {
		c := DialFrom(t, "127.0.0.3", p.TLSAddr)
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(junk)
		held = append(held, c)
	}
	// Twice, and too much, after a good handshake: wrong passwords pipelined
	// on one connection (past the failure limit), and a Proxy-Authorization
	// header larger than any the parser takes.
	for i := 0; i < 5; i++ {
		c, err := proxyTLSDial(t, p, "127.0.0.4", ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		bad := base64.StdEncoding.EncodeToString([]byte("alice:wrong"))
		var req strings.Builder
		for j := 0; j < 20; j++ {
			req.WriteString("GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Basic " + bad + "\r\n\r\n")
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req.String())
		go io.Copy(io.Discard, c) // read whatever comes until the proxy closes
	}
	big, err := proxyTLSDial(t, p, "127.0.0.4", ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, big)
	big.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(big, "GET "+url+" HTTP/1.1\r\nHost: "+host+"\r\nProxy-Authorization: Basic "+strings.Repeat("QUFB", 200<<10)+"\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(big), nil); err == nil {
		if resp.StatusCode == 200 {
			t.Errorf("a 800 KB Proxy-Authorization header got 200")
		}
		resp.Body.Close()
	}

	// Another client, from another address, is served while all that is held.
	if code := idGet(t, p, "127.0.0.5", ca, url, host); code != 200 {
		t.Errorf("during the attack a good client got %d", code)
	}
	// The silent ones are closed by the proxy within tls.hello_timeout.
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("silent connection %d still open after hello_timeout (%v)", i, err)
		}
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	hxWaitSettled(t, p, base, 8, 8, 20*time.Second)
	hxNoPanics(t, p)
	hxNoCrashLog(t, p)
	if code := idGet(t, p, "127.0.0.5", ca, url, host); code != 200 {
		t.Errorf("after the attack a good client got %d", code)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestHostileQUICListener(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `tls { hello_timeout = "2s" }
limits { idle_timeout = "3s" }`)
	get := func(when string) {
		t.Helper()
		c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
		defer c.Close()
		if body, err := c.Get("https://allowed.test/"); err != nil || body != "h3 ok allowed.test" {
			t.Fatalf("%s: GET %q, %v", when, body, err)
		}
	}
	get("before the attack")
	waitMetric(t, p, `egress_active_connections{listener="transparent_quic"}`, func(v float64) bool { return v == 0 })
	base := hxResources(t, p)
	initial := firstInitial(t)

	send := func(c net.Conn, d []byte) {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write(d)
	}
	var socks []net.Conn
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("udp", listen)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, c)
		return c
	}
	junk := make([]byte, 9000)
	for i := 0; i < 20; i++ {
		c := dial()
		// Garbage of every size, a short-header packet, an oversized datagram.
		for n := 1; n < len(junk); n = n*2 + 7 {
			rand.Read(junk[:n])
			send(c, junk[:n])
		}
		send(c, append([]byte{0x40}, junk[:100]...))
		send(c, make([]byte, 12000))
		// Too little: half of a real Initial; and a real first Initial whose
		// hello never completes (too slowly), sent twice.
		send(c, initial[:len(initial)/2])
	}
	for i := 0; i < 20; i++ {
		c := dial()
		send(c, initial)
		send(c, initial)
	}
	// Another client is served while the half hellos are pending.
	get("during the attack")
	for _, c := range socks {
		c.Close()
	}
	socks = nil
	// Every pending flow ends by hello_timeout, every relayed one by its idle
	// timeout; then nothing is held.
	waitMetric(t, p, `egress_active_connections{listener="transparent_quic"}`, func(v float64) bool { return v == 0 })
	hxWaitSettled(t, p, base, 8, 8, 20*time.Second)
	hxNoPanics(t, p)
	hxNoCrashLog(t, p)
	if v := hxMetric(t, p, quicDropped("malformed")) + hxMetric(t, p, quicDropped("unknown_flow")) +
		hxMetric(t, p, quicDropped("too_large")) + hxMetric(t, p, quicDropped("unknown_version")); v == 0 {
		t.Errorf("no garbage datagram was counted as dropped")
	}
	get("after the attack")
}
