package tunnel

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The relay (relay_linux.go): a tunnel of two TCP connections starts
// detached and its parker copies both ways; a way goes back to a goroutine
// of its own only when its destination does not take a whole read, or when
// it turns bulk. The inline tests (inline_test.go) run relayed too.

// relaying reports whether p is detached and no goroutine copies a way.
func relaying(t *testing.T, p *Pipe) bool {
	t.Helper()
	if !isDetached(t, p) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running == 0
}

// TestRelayShortTunnelNoGoroutine: a handshake, a request and an answer go
// through a tunnel that stays detached from start to end: no way ever has a
// goroutine, and the result is exact.
func TestRelayShortTunnelNoGoroutine(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, OnDone: func(r Result) { res = r }})
	if !relaying(t, p) {
		t.Fatal("a new tunnel of two TCP connections is not relayed by its parker")
	}
	msgs := []struct {
		from, to *net.TCPConn
		b        []byte
	}{
		{client, server, bytes.Repeat([]byte("h"), 1700)},
		{server, client, bytes.Repeat([]byte("s"), 6000)},
		{client, server, bytes.Repeat([]byte("g"), 300)},
		{server, client, bytes.Repeat([]byte("r"), 40000)}, // more than the parker's buffer
	}
	var up, down int64
	for i, m := range msgs {
		echo(t, m.from, m.to, string(m.b))
		if !relaying(t, p) {
			t.Fatalf("message %d: the tunnel left the relay", i)
		}
		if m.from == client {
			up += int64(len(m.b))
		} else {
			down += int64(len(m.b))
		}
	}
	client.CloseWrite()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(server); err != nil || len(b) != 0 {
		t.Fatalf("server after the client's half-close: %q %v", b, err)
	}
	server.Close()
	waitDone(t, p)
	if res.Upload != up || res.Download != down || res.Err != nil {
		t.Fatalf("result %+v, want %d up, %d down, no error", res, up, down)
	}
}

// TestRelaySlowReader: a destination that stops reading makes the parker
// hand the way, with the bytes it could not write, to a goroutine, before
// the way is anywhere near bulk; when the destination reads again every
// byte arrives, in order, once. The tunnel can be relayed again later.
func TestRelaySlowReader(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	// Small buffers on the way to the server: what the server does not
	// read fills them within a few kilobytes, far below bulkAfter.
	server.SetReadBuffer(4096)
	proxyServer.SetWriteBuffer(4096)
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, OnDone: func(r Result) { res = r }})
	const size = bulkAfter / 2
	data := make([]byte, size)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() { _, err := client.Write(data); werr <- err }()
	waitUntil(t, 10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.dirs[0].running
	}, "the upload way on a goroutine (the server does not read)")
	if n := p.dirs[0].n.Load(); n >= bulkAfter {
		t.Fatalf("%d bytes copied before the hand-off: the way turned bulk, the slow reader was not what moved it", n)
	}
	server.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, size)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the server got other bytes than the client sent (order or content)")
	}
	echo(t, server, client, "answer")
	client.CloseWrite()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(server); err != nil || len(b) != 0 {
		t.Fatalf("server after the client's half-close: %d bytes, %v", len(b), err)
	}
	server.Close()
	waitDone(t, p)
	if res.Upload != size || res.Download != int64(len("answer")) || res.Err != nil {
		t.Fatalf("result %+v, want %d up, %d down", res, size, len("answer"))
	}
}

// TestRelayDataThenClose: bytes and the FIN that follows them at once
// (often one event) all arrive, then the EOF, for sizes around the parker's
// buffer, both ways, many times.
func TestRelayDataThenClose(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	for i := 0; i < 60; i++ {
		size := []int{1, 100, inlineSize - 1, inlineSize, inlineSize + 1, 3*inlineSize + 7}[i%6]
		client, proxyClient := pair(t)
		proxyServer, server := pair(t)
		p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second})
		from, to := client, server
		if i%2 == 1 {
			from, to = server, client
		}
		data := bytes.Repeat([]byte{byte(i)}, size)
		if _, err := from.Write(data); err != nil {
			t.Fatal(err)
		}
		from.Close()
		to.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(to)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("run %d (%d bytes): got %d bytes, %v", i, size, len(got), err)
		}
		to.Close()
		waitDone(t, p)
	}
}

// TestRelayReset: a client that resets its connection while the tunnel is
// relayed ends the tunnel with an error; the destination sees its
// connection closed.
func TestRelayReset(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer server.Close()
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, OnDone: func(r Result) { res = r }})
	echo(t, client, server, "hello")
	client.SetLinger(0)
	client.Close() // RST
	seesClose(t, server, "server")
	waitDone(t, p)
	if res.Err == nil {
		t.Fatalf("result %+v: a reset should end the tunnel with an error", res)
	}
}

// panicCounter panics on the n-th Add: a stand-in for a bug in code the
// parker runs for a tunnel.
type panicCounter struct{ n atomic.Int32 }

func (c *panicCounter) Add(int64, int64) {
	if c.n.Add(1) == 2 {
		panic("counter bug")
	}
}

// TestRelayPanicEndsTheTunnelOnly: a panic while the parker relays a tunnel
// ends that tunnel (reported to OnPanic, its result delivered) and every
// parker goes on relaying the others.
func TestRelayPanicEndsTheTunnelOnly(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	var panics atomic.Int32
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, Counter: &panicCounter{},
		OnPanic: func(any) { panics.Add(1) }})
	echo(t, client, server, "one")
	server.Write([]byte("two")) // the second Add panics
	waitDone(t, p)
	if panics.Load() != 1 {
		t.Fatalf("OnPanic called %d times, want 1", panics.Load())
	}
	seesClose(t, client, "client")
	// Every parker still relays: one tunnel on each, round robin.
	for i := 0; i < 2*len(parkers.all); i++ {
		c, pc := pair(t)
		ps, s := pair(t)
		q := Start(pc, ps, Options{Idle: 10 * time.Second})
		echo(t, c, s, "still")
		echo(t, s, c, "relayed")
		q.Close()
		waitDone(t, q)
		c.Close()
		s.Close()
	}
}

// TestRelayCloseWhileCopying: Close from other goroutines while the parkers
// copy both ways of many tunnels: every tunnel ends once, no descriptor is
// closed twice or leaked (a socket opened meanwhile still works).
func TestRelayCloseWhileCopying(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	fds := openFDs(t)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		client, proxyClient := pair(t)
		proxyServer, server := pair(t)
		var done atomic.Int32
		p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, OnDone: func(Result) { done.Add(1) }})
		stop := make(chan struct{})
		for _, c := range []*net.TCPConn{client, server} {
			wg.Add(2)
			go func() { // writes until the tunnel is closed
				defer wg.Done()
				b := make([]byte, 2000)
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.SetWriteDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
			go func() { // and reads
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c)
			}()
		}
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		s1, s2 := pair(t)
		p.Close()
		waitDone(t, p)
		close(stop)
		echo(t, s1, s2, "sentinel")
		s1.Close()
		s2.Close()
		client.Close()
		server.Close()
		if n := done.Load(); n != 1 {
			t.Fatalf("tunnel %d: OnDone ran %d times", i, n)
		}
	}
	wg.Wait()
	// Ways that turned bulk took splice pipes from Go's pool, which keeps
	// them until collections empty it.
	waitUntil(t, 5*time.Second, func() bool { runtime.GC(); return openFDs(t) <= fds }, "no descriptor leaked")
}
