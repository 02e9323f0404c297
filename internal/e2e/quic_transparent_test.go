package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestQUICAllowed: an HTTP/3 GET through the QUIC listener reaches an
// allowed loopback origin, for QUIC v1 and v2; the flow's one event, written
// when it has been idle for limits.idle_timeout, carries the SNI, a JA4 with
// the "q" prefix and the bytes both ways. quic-go's ClientHello has a
// post-quantum key share (X25519MLKEM768), so it spans two Initial packets:
// the listener decided it only after reassembling both.
func TestQUICAllowed(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits { idle_timeout = "2s" }`)
	for _, v := range []struct {
		name    string
		version quic.Version
	}{{"v1", quic.Version1}, {"v2", quic.Version2}} {
		t.Run(v.name, func(t *testing.T) {
			c := newH3Client(t, "127.0.0.1", listen, ca.Pool, v.version)
			body, err := c.Get("https://allowed.test/")
			if err != nil || body != "h3 ok allowed.test" {
				t.Fatalf("GET: %q, %v\n%s", body, err, p.Stderr())
			}
			c.Close()
			e := p.WaitEvent(t, 15*time.Second, func(e Event) bool {
				return e.Str("egress.listener") == "transparent_quic" && e.Str("source.port") == portOf(c.Addr)
			})
			if e.Str("event.action") != "allow" || e.Str("tls.client.server_name") != "allowed.test" ||
				e.Str("destination.ip") != "127.0.0.1" || e.Str("destination.port") != strconv.Itoa(origin.Port) {
				t.Errorf("event %v", e)
			}
			if ja4 := e.Str("egress.tls.ja4"); !strings.HasPrefix(ja4, "q13d") {
				t.Errorf("ja4 %q, want the QUIC prefix q13d", ja4)
			}
			up, _ := strconv.Atoi(e.Str("source.bytes"))
			down, _ := strconv.Atoi(e.Str("destination.bytes"))
			if up < 2400 || down < 1000 {
				t.Errorf("bytes up %d down %d", up, down)
			}
		})
	}
	if n := len(quicEvents(p)); n != 2 {
		t.Errorf("%d transparent_quic events, want one per flow (2)", n)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func quicEvents(p *Proc) []Event {
	var out []Event
	for _, e := range p.Events() {
		if e.Str("egress.listener") == "transparent_quic" {
			out = append(out, e)
		}
	}
	return out
}

// TestQUICDenied: a denied SNI gets a server Initial with CONNECTION_CLOSE
// CRYPTO_ERROR 0x131 (access_denied) at once, and the origin sees no packet.
func TestQUICDenied(t *testing.T) {
	ca := NewCA(t)
	port, packets := udpCounter(t)
	p, listen := startQUIC(t, port, "")
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	start := time.Now()
	_, err := c.Get("https://www.tiktok.com/")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 || !te.Remote {
		t.Fatalf("GET: %v, want a remote CRYPTO_ERROR 0x131", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the close took %v", d)
	}
	e := quicEvent(t, p, "www.tiktok.com", 5*time.Second)
	if e.Str("event.action") != "deny" || e.Str("rule.name") != "no-social" || e.Str("egress.segment") != "office" {
		t.Errorf("event %v", e)
	}
	if !strings.HasPrefix(e.Str("egress.tls.ja4"), "q") {
		t.Errorf("ja4 %q", e.Str("egress.tls.ja4"))
	}
	time.Sleep(200 * time.Millisecond) // anything in flight would have arrived
	if n := packets.Load(); n != 0 {
		t.Fatalf("the origin received %d packets of a denied flow", n)
	}
	waitMetric(t, p, `egress_decisions_total{action="deny",listener="transparent_quic",reason="rule",rule="no-social",segment="office"}`, atLeast(1))
}

// TestQUICReorderAndLoss: the client's Initial datagrams reach the listener
// in reverse order, or the first is lost and retransmitted; the hello is
// reassembled either way and the GET succeeds.
func TestQUICReorderAndLoss(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, "")
	cases := map[string]func(n int, d []byte) [][]byte{
		// Hold the first datagram and send it after the second.
		"reversed": func() func(int, []byte) [][]byte {
			var held []byte
			return func(n int, d []byte) [][]byte {
				switch n {
				case 1:
					held = d
					return nil
				case 2:
					return [][]byte{d, held}
				}
				return [][]byte{d}
			}
		}(),
		// Lose the first datagram; the client retransmits its data.
		"first lost": func(n int, d []byte) [][]byte {
			if n == 1 {
				return nil
			}
			return [][]byte{d}
		},
	}
	for name, rewrite := range cases {
		t.Run(name, func(t *testing.T) {
			shim := newUDPShim(t, listen, rewrite)
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			c := newH3ClientOn(t, pc, shim.Addr, ca.Pool)
			body, err := c.Get("https://allowed.test/")
			if err != nil || body != "h3 ok allowed.test" {
				t.Fatalf("GET: %q, %v\n%s", body, err, p.Stderr())
			}
		})
	}
}

// TestQUICRetry: the origin answers every new connection with a Retry; it
// passes through, the client's second Initial (with the token) is relayed on
// the same flow, and the GET succeeds.
func TestQUICRetry(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, true, "retry.test")
	p, listen := startQUIC(t, origin.Port, `limits { idle_timeout = "1s" }`)
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	body, err := c.Get("https://retry.test/")
	if err != nil || body != "h3 ok retry.test" {
		t.Fatalf("GET: %q, %v\n%s", body, err, p.Stderr())
	}
	c.Close()
	e := quicEvent(t, p, "retry.test", 10*time.Second)
	if e.Str("event.action") != "allow" || e.Str("error.message") != "" {
		t.Errorf("event %v", e)
	}
	if n := len(quicEvents(p)); n != 1 {
		t.Errorf("%d events, want 1: the Retry must not start a second flow", n)
	}
}

// TestQUICDropped: garbage, a short-header packet of no flow, a long header
// of an unknown version, an Initial in a datagram under 1200 bytes and an
// Initial that does not authenticate are dropped and counted, with no event.
func TestQUICDropped(t *testing.T) {
	port, packets := udpCounter(t)
	p, listen := startQUIC(t, port, "")
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	initial := make([]byte, 1200)
	initial[0] = 0xc3
	copy(initial[1:], []byte{0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0x80})
	unknown := append([]byte(nil), initial...)
	copy(unknown[1:5], []byte{0xff, 0, 0, 0x1d})
	short := make([]byte, 1200)
	short[0] = 0x40
	sends := []struct {
		d      []byte
		reason string
	}{
		{[]byte("GET / HTTP/1.1\r\n\r\n"), "unknown_flow"}, // no long-header bit: read as a short header
		{short, "unknown_flow"},
		{unknown, "unknown_version"},
		{initial[:600], "malformed"},
		{initial, "decrypt_failed"},
	}
	want := map[string]float64{}
	for _, s := range sends {
		if _, err := c.Write(s.d); err != nil {
			t.Fatal(err)
		}
		want[s.reason]++
	}
	for reason, n := range want {
		waitMetric(t, p, quicDropped(reason), atLeast(n))
	}
	if n := len(quicEvents(p)); n != 0 {
		t.Errorf("%d events for dropped packets", n)
	}
	if packets.Load() != 0 {
		t.Errorf("the origin received %d packets", packets.Load())
	}
}

// TestQUICLimits: QUIC flows count against limits.per_source; a flow over
// it is refused with one event, and its retransmissions are dropped.
func TestQUICLimits(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits {
  per_source     = 1
  idle_timeout   = "30s"
  shutdown_grace = "1s"
}`)
	c1 := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	if _, err := c1.Get("https://allowed.test/"); err != nil {
		t.Fatalf("first flow: %v", err)
	}
	c2 := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	if _, err := c2.Get("https://allowed.test/"); err == nil {
		t.Fatal("second flow from the same source allowed over per_source = 1")
	}
	e := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_quic" && e.Str("event.reason") == "connection_limit"
	})
	if e.Str("source.port") != portOf(c2.Addr) {
		t.Errorf("limit event %v", e)
	}
	waitMetric(t, p, `egress_connections_rejected_total{listener="transparent_quic",reason="per_source"}`, atLeast(1))
	waitMetric(t, p, quicDropped("closed_flow"), atLeast(1))
	limitEvents := 0
	for _, e := range quicEvents(p) {
		if e.Str("event.reason") == "connection_limit" {
			limitEvents++
		}
	}
	if limitEvents != 1 {
		t.Errorf("%d limit events for one refused flow", limitEvents)
	}
}

// TestQUICReloadCloses: a reload that denies an open flow's SNI closes the
// flow (limits.enforce_on_reload): its event says config_reload, and the
// client's later packets, of no flow any more, are dropped and counted.
func TestQUICReloadCloses(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits { idle_timeout = "60s" }`)
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	if body, err := c.Get("https://allowed.test/"); err != nil || body != "h3 ok allowed.test" {
		t.Fatalf("GET: %q, %v", body, err)
	}
	old, err := os.ReadFile(p.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(old), `domains = ["tiktok.com"]`, `domains = ["tiktok.com", "allowed.test"]`, 1)
	if err := os.WriteFile(p.ConfigPath+".tmp", []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p.ConfigPath+".tmp", p.ConfigPath); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	e := p.WaitEvent(t, 10*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_quic" && e.Str("event.reason") == "config_reload"
	})
	if e.Str("event.action") != "deny" || e.Str("tls.client.server_name") != "allowed.test" || e.Str("source.bytes") == "" {
		t.Errorf("event %v", e)
	}
	waitMetric(t, p, "egress_tunnels_closed_on_reload_total", atLeast(1))
	before := hxMetric(t, p, quicDropped("unknown_flow"))
	if _, err := c.Get("https://allowed.test/again"); err == nil {
		t.Fatal("a request on the closed flow succeeded")
	}
	waitMetric(t, p, quicDropped("unknown_flow"), atLeast(before+1))
	if n := origin.Requests.Load(); n != 1 {
		t.Errorf("origin served %d requests, want 1", n)
	}
}

// TestQUICShutdownDrains: on SIGTERM an open flow keeps relaying through
// limits.shutdown_grace, then it is closed with its event, and egress exits.
func TestQUICShutdownDrains(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits {
  idle_timeout   = "60s"
  shutdown_grace = "3s"
}`)
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	if _, err := c.Get("https://allowed.test/"); err != nil {
		t.Fatalf("GET: %v", err)
	}
	p.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // the shutdown has begun (not a synchronisation: the GET must work either way)
	if body, err := c.Get("https://allowed.test/during-drain"); err != nil || body != "h3 ok allowed.test" {
		t.Fatalf("GET during the drain: %q, %v", body, err)
	}
	select {
	case <-p.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("egress did not exit after the grace period")
	}
	e := quicEvent(t, p, "allowed.test", time.Second)
	if e.Str("event.action") != "allow" || e.Str("error.message") != "closed: shutdown" {
		t.Errorf("event %v", e)
	}
	if n := origin.Requests.Load(); n != 2 {
		t.Errorf("origin served %d requests, want 2", n)
	}
}

// TestQUICHelloTimeout: a client whose hello never completes (only its
// first Initial datagram gets through; the second half of its post-quantum
// hello never does) holds its flow for tls.hello_timeout, then the flow is
// denied with reason hello_timeout and nothing reached the destination.
func TestQUICHelloTimeout(t *testing.T) {
	ca := NewCA(t)
	port, packets := udpCounter(t)
	p, listen := startQUIC(t, port, `tls { hello_timeout = "1s" }`)
	shim := newUDPShim(t, listen, func(n int, d []byte) [][]byte {
		if n == 1 {
			return [][]byte{d}
		}
		return nil
	})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := newH3ClientOn(t, pc, shim.Addr, ca.Pool)
	go c.Get("https://allowed.test/") // fails after its handshake timeout
	e := p.WaitEvent(t, 10*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_quic" && e.Str("event.reason") == "hello_timeout"
	})
	if e.Str("event.action") != "deny" {
		t.Errorf("event %v", e)
	}
	waitMetric(t, p, `egress_client_hello_errors_total{error="timeout",listener="transparent_quic"}`, atLeast(1))
	if packets.Load() != 0 {
		t.Errorf("the destination received %d packets", packets.Load())
	}
}

// TestQUICDestinationRefuses: an allowed flow to a port where nothing
// listens (ICMP port unreachable on loopback) is a failed allow: reason
// destination_unavailable, counted, and the client is closed at once.
func TestQUICDestinationRefuses(t *testing.T) {
	ca := NewCA(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	p, listen := startQUIC(t, closed, "")
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	start := time.Now()
	_, err = c.Get("https://allowed.test/")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x150 {
		t.Fatalf("GET: %v, want CRYPTO_ERROR 0x150 (internal_error)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the close took %v", d)
	}
	e := quicEvent(t, p, "allowed.test", 5*time.Second)
	if e.Str("event.action") != "allow" || e.Str("event.reason") != "destination_unavailable" {
		t.Errorf("event %v", e)
	}
	waitMetric(t, p, `egress_upstream_errors_total{reason="destination_unavailable"}`, atLeast(1))
}

// firstInitial returns the first datagram a real quic-go client sends: a
// valid client Initial carrying the first half of a post-quantum hello.
func firstInitial(t *testing.T) []byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go quic.DialAddr(ctx, pc.LocalAddr().String(), &tls.Config{ServerName: "allowed.test", NextProtos: []string{"h3"}}, nil)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf[:n]...)
}

// TestQUICSprayedInitials: a client spraying valid Initials from many ports
// (as one spoofing many addresses would) gets at most a quarter of
// limits.max_connections (at least 64) of flows collecting their hello; the
// rest are dropped and counted, and the flows end at tls.hello_timeout.
func TestQUICSprayedInitials(t *testing.T) {
	port, packets := udpCounter(t)
	d := firstInitial(t)
	p, listen := startQUIC(t, port, `limits { max_connections = 100 }
tls { hello_timeout = "3s" }`)
	const sprayed = 80
	for i := 0; i < sprayed; i++ {
		c, err := net.Dial("udp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	waitMetric(t, p, quicDropped("flow_table_full"), atLeast(sprayed-64))
	if v := hxMetric(t, p, `egress_active_connections{listener="transparent_quic"}`); v != 64 {
		t.Errorf("%v flows collecting, want 64", v)
	}
	waitMetric(t, p, `egress_active_connections{listener="transparent_quic"}`, func(v float64) bool { return v == 0 })
	// The events reach the file shortly after the flows end (the audit
	// writer lingers 5 ms and writes what gathered): wait for them, bounded.
	waitFor(t, 5*time.Second, func() bool { return len(quicEvents(p)) >= 64 }, "64 events")
	if n := len(quicEvents(p)); n != 64 {
		t.Errorf("%d events, want 64 (hello_timeout)", n)
	}
	if packets.Load() != 0 {
		t.Errorf("the destination received %d packets", packets.Load())
	}
}

// TestQUICSecondConnectionSameSocket: two names served from one address (a
// CDN). A client opens an allowed connection, then a second connection with
// a denied SNI from the same socket (so the same flow, and the allowed
// name's destination): the second connection's Initials are dropped
// (second_connection), it never reaches the origin, and the first keeps
// working.
func TestQUICSecondConnectionSameSocket(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test", "www.tiktok.com")
	p, listen := startQUIC(t, origin.Port, `limits { idle_timeout = "60s" }`)
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	if body, err := c.Get("https://allowed.test/"); err != nil || body != "h3 ok allowed.test" {
		t.Fatalf("first connection: %q, %v", body, err)
	}
	target, _ := net.ResolveUDPAddr("udp", listen)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := c.tr.Dial(ctx, target, &tls.Config{ServerName: "www.tiktok.com", RootCAs: ca.Pool, NextProtos: []string{"h3"}},
		&quic.Config{HandshakeIdleTimeout: 3 * time.Second})
	if err == nil {
		conn.CloseWithError(0, "")
		t.Fatalf("a second connection with a denied SNI completed its handshake on the allowed flow")
	}
	waitMetric(t, p, quicDropped("second_connection"), atLeast(1))
	if body, err := c.Get("https://allowed.test/still"); err != nil || body != "h3 ok allowed.test" {
		t.Fatalf("first connection after: %q, %v", body, err)
	}
	if n := origin.Requests.Load(); n != 2 {
		t.Errorf("origin served %d requests, want 2", n)
	}
}

// TestQUICVersionNegotiation: a client that starts with QUIC v2 at a
// v1-only origin gets the origin's Version Negotiation packet through the
// flow, which ends there; its v1 attempt is a new flow, decided again, and
// connects.
func TestQUICVersionNegotiation(t *testing.T) {
	ca := NewCA(t)
	origin := newQUICOriginVersions(t, ca, false, []quic.Version{quic.Version1}, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits { idle_timeout = "1s" }`)
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool) // for its socket
	target, _ := net.ResolveUDPAddr("udp", listen)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.tr.Dial(ctx, target, &tls.Config{ServerName: "allowed.test", RootCAs: ca.Pool, NextProtos: []string{"h3"}},
		&quic.Config{Versions: []quic.Version{quic.Version2, quic.Version1}})
	if err != nil {
		t.Fatalf("handshake: %v\n%s", err, p.Stderr())
	}
	if v := conn.ConnectionState().Version; v != quic.Version1 {
		t.Errorf("negotiated %v, want v1", v)
	}
	conn.CloseWithError(0, "")
	p.WaitEvent(t, 10*time.Second, func(Event) bool { return len(quicEvents(p)) == 2 })
	for _, e := range quicEvents(p) {
		if e.Str("event.action") != "allow" || e.Str("tls.client.server_name") != "allowed.test" || e.Str("error.message") != "" {
			t.Errorf("event %v", e)
		}
	}
}

// TestQUICMissingSNI: a ClientHello without SNI (a client dialing an IP
// address) is always denied on the QUIC listener, as on transparent TLS,
// with the close at once.
func TestQUICMissingSNI(t *testing.T) {
	ca := NewCA(t)
	port, packets := udpCounter(t)
	p, listen := startQUIC(t, port, "")
	c := newH3Client(t, "127.0.0.1", listen, ca.Pool)
	_, err := c.Get("https://127.0.0.1/") // crypto/tls sends no SNI for an IP address
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 {
		t.Fatalf("GET: %v, want CRYPTO_ERROR 0x131", err)
	}
	e := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_quic" && e.Str("event.reason") == "missing_sni"
	})
	if e.Str("event.action") != "deny" || !strings.HasPrefix(e.Str("egress.tls.ja4"), "q13i") {
		t.Errorf("event %v", e)
	}
	if packets.Load() != 0 {
		t.Errorf("the destination received %d packets", packets.Load())
	}
}

// TestQUICDeniedCloseLost: the CONNECTION_CLOSE of a denied flow is lost;
// the client's retransmitted Initial gets it again (one event, one
// decision), and the client fails with CRYPTO_ERROR 0x131.
func TestQUICDeniedCloseLost(t *testing.T) {
	ca := NewCA(t)
	port, packets := udpCounter(t)
	p, listen := startQUIC(t, port, "")
	shim := newUDPShim(t, listen, func(_ int, d []byte) [][]byte { return [][]byte{d} })
	shim.DropReplies.Store(1)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := newH3ClientOn(t, pc, shim.Addr, ca.Pool)
	start := time.Now()
	_, err = c.Get("https://www.tiktok.com/")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 {
		t.Fatalf("GET: %v, want CRYPTO_ERROR 0x131", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the close took %v", d)
	}
	waitMetric(t, p, quicDropped("closed_flow"), atLeast(1))
	if n := len(quicEvents(p)); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	if packets.Load() != 0 {
		t.Errorf("the destination received %d packets", packets.Load())
	}
}
