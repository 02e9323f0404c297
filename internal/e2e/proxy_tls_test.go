package e2e

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// CONNECT tunnels: the ClientHello after the 200 (SPEC §5, §8).

// CONNECT to an allowed name with a denied SNI: alert access_denied; the
// reason follows tls.sni_mismatch.
func TestProxyConnectDeniedSNI(t *testing.T) {
	ca := NewCA(t)
	for _, tc := range []struct {
		name, cfg, reason, rule string
	}{
		{"sni_mismatch-deny", baseConfig, "sni_mismatch", ""},
		{"sni_mismatch-allow", pxWithTLS(t, `sni_mismatch = "allow"`), "rule", "no-social"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
			p := Start(t, tc.cfg, nil)
			c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(origin.Port))
			if code != 200 {
				t.Fatalf("CONNECT: %d", code)
			}
			err := pxTLSHandshake(c, "www.tiktok.com", ca)
			if err == nil || !strings.Contains(err.Error(), "access denied") {
				t.Fatalf("handshake: %v, want an access denied alert", err)
			}
			ev := p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "www.tiktok.com"))
			if ev.Str("event.action") != "deny" || ev.Str("event.reason") != tc.reason || ev.Str("rule.name") != tc.rule {
				t.Fatalf("event: action %s reason %s rule %q, want deny %s %q", ev.Str("event.action"), ev.Str("event.reason"), ev.Str("rule.name"), tc.reason, tc.rule)
			}
			if ev.Str("destination.domain") != "allowed.test" || ev.Str("egress.tls.ja4") == "" {
				t.Fatalf("event: %v", ev)
			}
			pxNoConns(t, &origin.Conns, "origin")
		})
	}
}

// A CONNECT to an IP literal decides the SNI (not a mismatch).
func TestProxyConnectIPLiteral(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	p := Start(t, baseConfig, nil)
	target := "127.0.0.1:" + itoa(origin.Port)

	t.Run("denied-sni", func(t *testing.T) {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
		if code != 200 {
			t.Fatalf("CONNECT %s: %d", target, code)
		}
		err := pxTLSHandshake(c, "www.tiktok.com", ca)
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("handshake: %v, want an access denied alert", err)
		}
		ev := p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "www.tiktok.com"))
		if ev.Str("event.reason") != "rule" || ev.Str("rule.name") != "no-social" || ev.Str("destination.ip") != "127.0.0.1" {
			t.Fatalf("event %v", ev)
		}
		pxNoConns(t, &origin.Conns, "origin")
	})
	t.Run("allowed-sni", func(t *testing.T) {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
		if code != 200 {
			t.Fatalf("CONNECT %s: %d", target, code)
		}
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/ip")
		if err != nil || body != "hello from allowed.test /ip" {
			t.Fatalf("body %q, %v", body, err)
		}
	})
}

// The hello arrives one byte per write: reassembled, decided, and replayed to
// the origin byte for byte.
func TestProxyHelloOneBytePerWrite(t *testing.T) {
	hello := pxChromiumHello(t)
	got := make(chan []byte, 1)
	_, port, conns := RawOrigin(t, pxRecorder(len(hello), got))
	p := Start(t, pxWithHost(t, baseConfig, "www.example.com"), nil)

	c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "www.example.com:"+itoa(port), nil)
	for i := range hello {
		if _, err := c.Write(hello[i : i+1]); err != nil {
			t.Fatalf("write byte %d: %v", i, err)
		}
	}
	if b := pxRecv(t, got, "the origin's bytes"); !bytes.Equal(b, hello) {
		t.Fatalf("origin received %d bytes, not the %d-byte hello as sent", len(b), len(hello))
	}
	// The origin closed: so does the tunnel.
	if rest, err := pxReadAll(c, 10*time.Second); err != nil || len(rest) != 0 {
		t.Fatalf("after the origin closed: %q, %v", rest, err)
	}
	if conns.Load() != 1 {
		t.Fatalf("origin connections: %d", conns.Load())
	}
	c.Close() // the tunnel's event is written when both sides are done
	ev := p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "www.example.com"))
	if ev.Str("event.action") != "allow" || ev.Str("egress.tls.ech") != "true" || ev.Str("source.bytes") != itoa(len(hello)) {
		t.Fatalf("event %v", ev)
	}
}

// A hello fragmented into many small TLS records is decided on its whole.
func TestProxyHelloFragmentedRecords(t *testing.T) {
	ca := NewCA(t)
	denyOrigin := NewOrigin(t, ca, nil, "www.tiktok.com")
	hello := pxFragment(pxChromiumHello(t), 10)
	got := make(chan []byte, 1)
	_, port, _ := RawOrigin(t, pxRecorder(len(hello), got))
	p := Start(t, pxWithHost(t, baseConfig, "www.example.com"), nil)

	t.Run("denied", func(t *testing.T) {
		// IP literal CONNECT so that only the SNI can deny.
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "127.0.0.1:"+itoa(denyOrigin.Port), nil)
		if _, err := c.Write(pxFragment(pxGoHello(t, "www.tiktok.com"), 10)); err != nil {
			t.Fatal(err)
		}
		b, _ := pxReadAll(c, 10*time.Second)
		if !bytes.Equal(b, pxAlertRecord(pxAlertAccessDenied)) {
			t.Fatalf("client received %x, want the access_denied alert", b)
		}
		pxNoConns(t, &denyOrigin.Conns, "origin")
		ev := p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "www.tiktok.com"))
		if ev.Str("event.reason") != "rule" || ev.Str("rule.name") != "no-social" {
			t.Fatalf("event %v", ev)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "www.example.com:"+itoa(port), nil)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		if b := pxRecv(t, got, "the origin's bytes"); !bytes.Equal(b, hello) {
			t.Fatalf("origin received %d bytes, not the %d fragmented bytes as sent", len(b), len(hello))
		}
	})
}

// Bytes in a tunnel that are not TLS: closed with nothing sent to the origin,
// unless tls.non_tls = "allow".
func TestProxyNonTLSInTunnel(t *testing.T) {
	const msg = "GET / HTTP/1.1\r\n\r\n"
	t.Run("deny", func(t *testing.T) {
		_, port, conns := RawOrigin(t, func(c net.Conn) { c.Close() })
		p := Start(t, baseConfig, nil)
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), nil)
		io.WriteString(c, msg)
		pxWantClosed(t, c)
		p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "non_tls", "event.action", "deny", "destination.domain", "allowed.test"))
		pxNoConns(t, conns, "origin")
	})
	t.Run("allow", func(t *testing.T) {
		got := make(chan []byte, 1)
		_, port, _ := RawOrigin(t, pxRecorder(len(msg), got))
		p := Start(t, pxWithTLS(t, `non_tls = "allow"`), nil)
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), nil)
		io.WriteString(c, msg)
		if b := pxRecv(t, got, "the origin's bytes"); string(b) != msg {
			t.Fatalf("origin received %q", b)
		}
	})
}

// A client that sends its hello in the same write as the CONNECT loses nothing.
func TestProxyConnectAndHelloInOneWrite(t *testing.T) {
	hello := pxChromiumHello(t)
	after := []byte("and then some application bytes")
	got := make(chan []byte, 1)
	_, port, _ := RawOrigin(t, pxRecorder(len(hello)+len(after), got))
	p := Start(t, pxWithHost(t, baseConfig, "www.example.com"), nil)

	// CONNECT + hello + more, all before reading the 200.
	pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "www.example.com:"+itoa(port), append(append([]byte(nil), hello...), after...))
	want := append(append([]byte(nil), hello...), after...)
	if b := pxRecv(t, got, "the origin's bytes"); !bytes.Equal(b, want) {
		t.Fatalf("origin received %d bytes %q..., want the hello and what followed (%d bytes)", len(b), b[min(len(b), len(hello)):], len(want))
	}

	t.Run("partial-hello", func(t *testing.T) {
		// Half the hello with the CONNECT, the rest after the 200.
		got := make(chan []byte, 1)
		_, port, _ := RawOrigin(t, pxRecorder(len(hello), got))
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "www.example.com:"+itoa(port), hello[:700])
		time.Sleep(50 * time.Millisecond)
		if _, err := c.Write(hello[700:]); err != nil {
			t.Fatal(err)
		}
		if b := pxRecv(t, got, "the origin's bytes"); !bytes.Equal(b, hello) {
			t.Fatalf("origin received %d bytes, not the %d-byte hello as sent", len(b), len(hello))
		}
	})
	t.Run("denied", func(t *testing.T) {
		// The same with a denied SNI on an IP literal: the alert, no origin.
		deny := make(chan []byte, 1)
		_, dport, conns := RawOrigin(t, pxRecorder(1, deny))
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "127.0.0.1:"+itoa(dport), pxGoHello(t, "www.tiktok.com"))
		b, _ := pxReadAll(c, 10*time.Second)
		if !bytes.Equal(b, pxAlertRecord(pxAlertAccessDenied)) {
			t.Fatalf("client received %x, want the access_denied alert", b)
		}
		pxNoConns(t, conns, "origin")
	})
}

// A client that stalls mid-hello is closed after hello_timeout (2s in
// baseConfig); others are served meanwhile.
func TestProxyHelloTimeout(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	p := Start(t, baseConfig, nil)

	stalled, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "other.test:"+itoa(origin.Port), nil)
	start := time.Now()
	if _, err := stalled.Write(pxGoHello(t, "other.test")[:10]); err != nil {
		t.Fatal(err)
	}
	closed := make(chan time.Duration, 1)
	go func() {
		pxReadAll(stalled, 15*time.Second)
		closed <- time.Since(start)
	}()

	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(origin.Port))
	if code != 200 {
		t.Fatalf("CONNECT: %d", code)
	}
	body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/t")
	if err != nil || body != "hello from allowed.test /t" {
		t.Fatalf("body %q, %v", body, err)
	}
	select {
	case d := <-closed:
		t.Fatalf("stalled client closed after %v, before another client was served", d)
	default:
	}
	d := pxRecv(t, closed, "the stalled client's close")
	if d < 1500*time.Millisecond || d > 10*time.Second {
		t.Fatalf("stalled client closed after %v, want about hello_timeout (2s)", d)
	}
	p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "hello_timeout", "event.action", "deny", "destination.domain", "other.test"))
	if origin.Conns.Load() != 1 {
		t.Fatalf("origin connections: %d, want 1 (the served client)", origin.Conns.Load())
	}
}

// 100 MB each way, at the same time, through one tunnel.
func TestProxyTunnelBulk(t *testing.T) {
	const size = 100 << 20
	hello := pxGoHello(t, "allowed.test")
	type sums struct{ got, sent [32]byte }
	originSums := make(chan sums, 1)
	_, port, _ := RawOrigin(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := make([]byte, len(hello))
		if _, err := io.ReadFull(c, h); err != nil || !bytes.Equal(h, hello) {
			originSums <- sums{}
			return
		}
		var s sums
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sent = sendStream(c, size, 2)
			c.(*net.TCPConn).CloseWrite()
		}()
		hr := sha256.New()
		io.Copy(hr, io.LimitReader(c, size))
		copy(s.got[:], hr.Sum(nil))
		wg.Wait()
		originSums <- s
	})
	p := Start(t, baseConfig, nil)

	c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), hello)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	var sent [32]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent = sendStream(c, size, 1)
	}()
	hr := sha256.New()
	n, err := io.Copy(hr, c)
	if err != nil || n != size {
		t.Fatalf("client received %d bytes, %v; want %d", n, err, size)
	}
	<-done
	o := pxRecv(t, originSums, "the origin")
	if o.got != sent {
		t.Fatal("upload: the origin's sha256 differs from what the client sent")
	}
	if [32]byte(hr.Sum(nil)) != o.sent {
		t.Fatal("download: the client's sha256 differs from what the origin sent")
	}
	t.Logf("2 × %d MB in %v", size>>20, time.Since(start))
	c.Close()
	ev := p.WaitEvent(t, 10*time.Second, pxEventWith("tls.client.server_name", "allowed.test", "event.action", "allow"))
	if ev.Str("source.bytes") != itoa(size+len(hello)) || ev.Str("destination.bytes") != itoa(size) {
		t.Fatalf("event bytes: source %s destination %s", ev.Str("source.bytes"), ev.Str("destination.bytes"))
	}
}

// sendStream writes n pseudo-random bytes (seeded by seed) to w and returns
// their sha256.
func sendStream(w io.Writer, n int, seed uint64) [32]byte {
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for n > 0 {
		b := buf[:min(n, len(buf))]
		rng.Read(b)
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			break
		}
		n -= len(b)
	}
	return [32]byte(h.Sum(nil))
}

// SPEC §8: a dial failure after the 200 closes the tunnel with an
// internal_error alert and is logged; a malformed or oversized hello gets
// decode_error. None reaches an origin.
func TestProxyTunnelFailures(t *testing.T) {
	p := Start(t, pxWithHost(t, baseConfig, "www.example.com"), nil)

	t.Run("dial-failure", func(t *testing.T) {
		port := freePort(t) // nothing listens there any more
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), nil)
		c.Write(pxGoHello(t, "allowed.test"))
		b, _ := pxReadAll(c, 10*time.Second)
		if !bytes.Equal(b, pxAlertRecord(80)) {
			t.Fatalf("client received %x, want the internal_error alert", b)
		}
		p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "destination_unavailable", "destination.port", itoa(port)))
	})
	t.Run("malformed", func(t *testing.T) {
		_, port, conns := RawOrigin(t, func(c net.Conn) { c.Close() })
		hello := pxGoHello(t, "allowed.test")
		hello[43] = 33 // legacy_session_id longer than 32 bytes: crypto/tls refuses it
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), hello)
		b, _ := pxReadAll(c, 10*time.Second)
		if !bytes.Equal(b, pxAlertRecord(50)) {
			t.Fatalf("client received %x, want the decode_error alert", b)
		}
		p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "malformed_client_hello", "destination.port", itoa(port)))
		pxNoConns(t, conns, "origin")
	})
	t.Run("oversized", func(t *testing.T) {
		_, port, conns := RawOrigin(t, func(c net.Conn) { c.Close() })
		// A handshake header announcing 16 KiB + 1 body bytes.
		body := 16<<10 + 1
		rec := []byte{22, 3, 1, 0, 4, 1, byte(body >> 16), byte(body >> 8), byte(body)}
		c, _ := pxRawConnect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(port), rec)
		b, _ := pxReadAll(c, 10*time.Second)
		if !bytes.Equal(b, pxAlertRecord(50)) {
			t.Fatalf("client received %x, want the decode_error alert", b)
		}
		pxNoConns(t, conns, "origin")
	})
}
