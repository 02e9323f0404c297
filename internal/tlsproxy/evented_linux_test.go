package tlsproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/tunnel"
	"golang.org/x/sys/unix"
)

// The evented flow (evented_linux.go) on real loopback sockets: the client
// is a tunnel.Socket as the transparent listener makes it, the destination a
// real listener, DNS a stub that answers for dns.test on a delay (the
// lookup's goroutine) and fails for anything else.

type stubDNS struct{ calls atomic.Int32 }

func (r *stubDNS) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	r.calls.Add(1)
	time.Sleep(20 * time.Millisecond)
	if host == "dns.test" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, errors.New("no such host (stub)")
}

// eventedHarness is newHarness with real dials and the stub DNS.
func eventedHarness(t *testing.T, extra string) (*harness, *stubDNS) {
	t.Helper()
	if !tunnel.CanWatch() {
		t.Skip("SKIP: the evented flow needs epoll (Linux)")
	}
	h := newHarness(t, "")
	dns := &stubDNS{}
	st := h.store.Publish(loadFlowConfig(t, h.dir, extra, okDomains+`, "dns.test"`))
	st.Dialer.DialConn, st.Dialer.Resolver = nil, dns
	st.Dialer.Timeout = 2 * time.Second
	return h, dns
}

// clientHello is the first record a Go TLS client sends for name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	a.Close()
	return append(hdr, body...)
}

// eventedFlow accepts one client on a loopback listener, turns the accepted
// socket into a tunnel.Socket and serves it evented to port.
func (h *harness) eventedFlow(port uint16) (client net.Conn, fl *testFlow) {
	h.t.Helper()
	return h.eventedFlowWith(port, nil)
}

// eventedFlowWith is eventedFlow with set applied to the Flow first (a
// CONNECT's fields).
func (h *harness) eventedFlowWith(port uint16, set func(*Flow)) (client net.Conn, fl *testFlow) {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		h.t.Fatal(err)
	}
	rc, _ := c.(*net.TCPConn).SyscallConn()
	var fd int
	rc.Control(func(f uintptr) { fd, _ = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) })
	sock := tunnel.NewSocket(fd, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	c.Close()
	fl = &testFlow{done: make(chan struct{})}
	fl.conn = h.track.Track("test")
	var once atomic.Bool
	f := &Flow{Listener: audit.ListenerTransparentHTTPS, Client: sock, Src: clientSrc, Start: time.Now(), Port: port,
		OrigDest: netip.MustParseAddrPort("127.0.0.1:443"), Conn: fl.conn,
		Done: func() {
			if !once.CompareAndSwap(false, true) {
				h.t.Errorf("Done called twice")
				return
			}
			h.track.Untrack(fl.conn)
			close(fl.done)
		}}
	if set != nil {
		set(f)
	}
	h.p.ServeEvented(f)
	return client, fl
}

// echoOrigin accepts connections on a loopback port and echoes each back.
func echoOrigin(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func readAllBounded(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %d bytes)", err, len(b))
	}
	return b
}

// TestEventedAllowed: names from upstream.hosts (resolved at once) and from
// DNS (looked up on a goroutine) are dialed, the hello replayed exactly,
// and the tunnel relays both ways; one allow event each.
func TestEventedAllowed(t *testing.T) {
	for _, name := range []string{"allowed.test", "dns.test"} {
		t.Run(name, func(t *testing.T) {
			h, dns := eventedHarness(t, "")
			port := echoOrigin(t)
			client, fl := h.eventedFlow(port)
			hello := clientHello(t, name)
			client.Write(hello)
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			back := make([]byte, len(hello))
			if _, err := io.ReadFull(client, back); err != nil || string(back) != string(hello) {
				t.Fatalf("the echo of the hello: %v", err)
			}
			client.Write([]byte("more"))
			if _, err := io.ReadFull(client, back[:4]); err != nil || string(back[:4]) != "more" {
				t.Fatalf("relayed after the hello: %q %v", back[:4], err)
			}
			client.Close()
			fl.wait(t)
			ev := h.event()
			if ev.Action != "allow" || ev.DestDomain != name || ev.DestIP != "127.0.0.1" || ev.SourceBytes != int64(len(hello)+4) {
				t.Fatalf("event %+v", ev)
			}
			if wantDNS := name == "dns.test"; (dns.calls.Load() > 0) != wantDNS {
				t.Fatalf("%d DNS lookups for %s", dns.calls.Load(), name)
			}
		})
	}
}

// TestEventedRefusals: a denied name, a name that does not resolve and a
// destination that refuses each end with the alert and the event the
// goroutine flow gives.
func TestEventedRefusals(t *testing.T) {
	closed := func() uint16 { // a port nothing listens on
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		p := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return p
	}
	for _, tc := range []struct {
		name, reason string
		port         func() uint16
		alert        byte
	}{
		{"banned.test", "rule", nil, 49},
		{"nxdomain.test", "dns_error", nil, 80},
		{"allowed.test", "destination_unavailable", closed, 80},
	} {
		t.Run(tc.name+"/"+tc.reason, func(t *testing.T) {
			h, _ := eventedHarness(t, "")
			port := uint16(9)
			if tc.port != nil {
				port = tc.port()
			}
			client, fl := h.eventedFlow(port)
			client.Write(clientHello(t, tc.name))
			b := readAllBounded(t, client)
			if len(b) != 7 || b[0] != 0x15 || b[6] != tc.alert {
				t.Fatalf("answer %x, want alert %d", b, tc.alert)
			}
			fl.wait(t)
			if ev := h.event(); ev.Reason != tc.reason {
				t.Fatalf("event reason %q, want %q (%+v)", ev.Reason, tc.reason, ev)
			}
		})
	}
}

// TestEventedHelloTimeoutAndShutdown: half a hello is closed at
// hello_timeout; a pending hello closed by a shutdown records it; neither
// dials anything.
func TestEventedHelloTimeoutAndShutdown(t *testing.T) {
	h, dns := eventedHarness(t, `tls { hello_timeout = "300ms" }`)
	client, fl := h.eventedFlow(9)
	client.Write(clientHello(t, "allowed.test")[:40])
	readAllBounded(t, client)
	fl.wait(t)
	if ev := h.event(); ev.Reason != "hello_timeout" || ev.Action != "deny" {
		t.Fatalf("event %+v", ev)
	}

	h2, _ := eventedHarness(t, "")
	client, fl = h2.eventedFlow(9)
	client.Write([]byte{0x16, 0x03})
	time.Sleep(50 * time.Millisecond)
	h2.track.CloseAll()
	readAllBounded(t, client)
	fl.wait(t)
	if ev := h2.event(); ev.Reason != "shutdown" {
		t.Fatalf("event %+v", ev)
	}
	if dns.calls.Load() != 0 {
		t.Fatal("a flow without a hello looked a name up")
	}
}

// TestEventedConnect: a CONNECT's flow after its 200, evented: the hello
// read with the request (all of it, so no event will come for it) is
// decided at once, the destination checked before the 200 is dialed
// without a lookup, and the tunnel relays; a non-TLS CONNECT under
// tls.non_tls = allow is relayed on the CONNECT's decision alone.
func TestEventedConnect(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		first       func(t *testing.T) []byte
	}{
		{"hello buffered", "", func(t *testing.T) []byte { return clientHello(t, "allowed.test") }},
		{"not TLS, allowed", `tls { non_tls = "allow" }`, func(*testing.T) []byte { return []byte("SSH-2.0-test\r\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dns := eventedHarness(t, tc.extra)
			port := echoOrigin(t)
			st := h.store.Load()
			outer := st.Config.DecideOuter(clientSrc.Addr(), "allowed.test", port)
			first := tc.first(t)
			client, fl := h.eventedFlowWith(port, func(f *Flow) {
				f.Listener = audit.ListenerProxy
				f.Buffered = append([]byte(nil), first...)
				f.Connect = &Connect{Outer: outer, State: st, Dest: netip.MustParseAddr("127.0.0.1")}
			})
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			back := make([]byte, len(first))
			if _, err := io.ReadFull(client, back); err != nil || string(back) != string(first) {
				t.Fatalf("the echo of the buffered bytes: %q, %v", back, err)
			}
			client.Close()
			fl.wait(t)
			if ev := h.event(); ev.Action != "allow" || ev.DestDomain != "allowed.test" || ev.Method != "CONNECT" {
				t.Fatalf("event %+v", ev)
			}
			if dns.calls.Load() != 0 {
				t.Fatal("a destination checked before the 200 was looked up again")
			}
		})
	}
}

// TestEventedBytesWhileDialing: bytes the client sends after its hello while
// the name is looked up and dialed (their events come to the Watcher, which
// leaves them in the socket) reach the destination once the tunnel runs,
// without the client sending anything more.
func TestEventedBytesWhileDialing(t *testing.T) {
	h, _ := eventedHarness(t, "")
	port := echoOrigin(t)
	client, fl := h.eventedFlow(port)
	hello := clientHello(t, "dns.test") // looked up on a goroutine, 20 ms
	client.Write(hello)
	time.Sleep(5 * time.Millisecond)
	client.Write([]byte("early"))
	want := append(append([]byte(nil), hello...), "early"...)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != string(want) {
		t.Fatalf("echoed %d of %d bytes: %v", len(got), len(want), err)
	}
	client.Close()
	fl.wait(t)
}

// TestEventedDialTimeout: the flow's one timer, set again for the dial: a
// destination that never answers the SYN (its accept queue is full) ends
// the flow at upstream's timeout with destination_unavailable, after the
// hello's deadline was cleared; not at hello_timeout, and not never.
func TestEventedDialTimeout(t *testing.T) {
	h, _ := eventedHarness(t, `tls { hello_timeout = "200ms" }`)
	h.store.Load().Dialer.Timeout = 600 * time.Millisecond
	port := fullListener(t)
	client, fl := h.eventedFlow(port)
	start := time.Now()
	client.Write(clientHello(t, "allowed.test"))
	b := readAllBounded(t, client)
	took := time.Since(start)
	if len(b) != 7 || b[0] != 0x15 || b[6] != 80 {
		t.Fatalf("answer %x, want alert 80", b)
	}
	fl.wait(t)
	if ev := h.event(); ev.Reason != "destination_unavailable" {
		t.Fatalf("event reason %q (%+v)", ev.Reason, ev)
	}
	if took < 500*time.Millisecond {
		t.Fatalf("ended after %v: before the dial's 600 ms timeout", took)
	}
}

// fullListener is a loopback port whose accept queue is full: a SYN to it
// is dropped, so a connect to it waits until its own timeout.
func fullListener(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Fill the queue (backlog 0 holds one): dials until one does not
	// complete within 200 ms.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return port
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("SKIP: a loopback listener with backlog 0 took 8 connections; cannot make a destination that drops SYNs here")
	return 0
}

// TestEventedStaleTimer: a firing of the flow's timer meant for an earlier
// step (it was set again for a later deadline as it fired), or for a
// deadline already cleared, does nothing.
func TestEventedStaleTimer(t *testing.T) {
	for _, st := range []eventedState{stateHello, stateConnecting, stateReplaying} {
		e := &evented{state: st, deadline: time.Now().Add(time.Hour)}
		e.timedOut() // e.fl is empty: acting on it would panic in the step and be reported
		e.deadline = time.Time{}
		e.timedOut()
		if e.state != st {
			t.Fatalf("state %v became %v", st, e.state)
		}
	}
}

// TestEventedClientGoneWhileHelloAwaited: the client's socket is watched
// for input only while its hello is awaited (Watcher.AddInput); a client
// that half-closes after half a hello, half-closes before a byte, or resets
// before a byte is still seen at once (the peer's close and errors are
// always reported), not at hello_timeout. Each flow ends with one event,
// dials nothing, and leaves no descriptor behind.
func TestEventedClientGoneWhileHelloAwaited(t *testing.T) {
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	hello := clientHello(t, "allowed.test")
	for _, tc := range []struct {
		name string
		gone func(c *net.TCPConn)
	}{
		{"half a hello, then FIN", func(c *net.TCPConn) { c.Write(hello[:len(hello)/2]); c.CloseWrite() }},
		{"FIN before a byte", func(c *net.TCPConn) { c.CloseWrite() }},
		{"reset before a byte", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
		{"half a hello, then reset", func(c *net.TCPConn) { c.Write(hello[:10]); c.SetLinger(0); c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dns := eventedHarness(t, `tls { hello_timeout = "30s" }`)
			before := fds()
			client, fl := h.eventedFlow(9)
			time.Sleep(20 * time.Millisecond) // the flow waits on its parker
			start := time.Now()
			tc.gone(client.(*net.TCPConn))
			fl.wait(t)
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("flow ended %v after the client left: at hello_timeout, not at once", took)
			}
			if ev := h.event(); ev.Action != "deny" || ev.Reason == "hello_timeout" {
				t.Fatalf("event %+v", ev)
			}
			if dns.calls.Load() != 0 {
				t.Fatal("a flow without a hello looked a name up")
			}
			client.Close()
			waitFor(t, 5*time.Second, func() bool { return fds() <= before }, "descriptors back to before")
		})
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("after %v: not %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventedClosedAfterHandOver: a registry close (a reload, a shutdown)
// that comes while a step holds the lock waits for it on a goroutine of its
// own; when that step was the hand-over to the tunnel, the flow is empty by
// the time the close runs. It must see the flow over and do nothing (the
// tunnel is the Conn's closer then), and a panic reported then must not
// panic again while being reported (that would end the process: CI caught
// it once in httpproxy's shutdown test).
func TestEventedClosedAfterHandOver(t *testing.T) {
	e := &evented{state: stateDone} // what start leaves: e.fl emptied
	e.closedNow()
	e.SocketPanic("a bug after the hand-over")

	// The same race on real flows: closes at every moment around the
	// tunnel's start. Each flow ends exactly once (Done), the process
	// stands.
	h, _ := eventedHarness(t, "")
	port := echoOrigin(t)
	hello := clientHello(t, "allowed.test")
	for i := range 60 {
		client, fl := h.eventedFlow(port)
		client.Write(hello)
		go func() {
			time.Sleep(time.Duration(i%12) * 100 * time.Microsecond)
			fl.conn.Close("reload")
		}()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, client) // the echo, then the close's EOF or reset
		client.Close()
		fl.wait(t)
	}
}
