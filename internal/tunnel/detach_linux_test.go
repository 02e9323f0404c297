package tunnel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// The tunnels of these tests detach at every park, the path with the most
// system calls; TestRedetachGap restores the gap for itself.
func init() { redetachAfter = 0 }

// isDetached says whether p holds its sockets as bare descriptors, and
// checks that it then holds no connection at all.
func isDetached(t *testing.T, p *Pipe) bool {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.detached {
		return false
	}
	if p.client != nil || p.server != nil {
		t.Fatal("detached tunnel still holds a connection")
	}
	for i := range p.dirs {
		d := &p.dirs[i]
		if d.src != nil || d.dst != nil {
			t.Fatalf("detached way %d still holds a connection", i)
		}
		if _, ok := d.rc.(*rawSock); !ok {
			t.Fatalf("detached way %d: rc %T", i, d.rc)
		}
	}
	return true
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// detachedPair starts a tunnel between two loopback pairs and waits until
// it is parked and detached.
func detachedPair(t *testing.T, opt Options) (client, server *net.TCPConn, p *Pipe) {
	t.Helper()
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	if opt.ParkAfter == 0 {
		opt.ParkAfter = 30 * time.Millisecond
	}
	p = Start(proxyClient, proxyServer, opt)
	waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "tunnel detached")
	return client, server, p
}

// seesClose: c's peer (the proxy) closed: a read ends with EOF or an error,
// not a timeout.
func seesClose(t *testing.T, c net.Conn, who string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the proxy's side was not closed", who)
		}
		return
	}
}

// TestDetachedHoldsNoConn: a tunnel parked both ways holds two descriptors,
// not two net.TCPConns, and park/wake cycles leak no descriptor.
func TestDetachedHoldsNoConn(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, server, p := detachedPair(t, Options{Idle: time.Minute})
	fds := openFDs(t)
	for i := 0; i < 30; i++ {
		if i%2 == 0 {
			echo(t, client, server, "up")
		} else {
			echo(t, server, client, "down")
		}
		waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "detached again")
		if n := openFDs(t); n != fds {
			t.Fatalf("cycle %d: %d descriptors open, %d after the first park", i, n, fds)
		}
	}
	p.Close()
	waitDone(t, p)
	if n := openFDs(t); n != fds-2 {
		t.Fatalf("%d descriptors open after the close, want %d", n, fds-2)
	}
}

// TestDetachedRelaysIntact: bytes both ways at once, across many detaches
// and wakes, arrive complete and in order.
func TestDetachedRelaysIntact(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, server, p := detachedPair(t, Options{Idle: time.Minute, ParkAfter: 20 * time.Millisecond})
	rng := rand.New(rand.NewPCG(1, 2))
	for cycle := 0; cycle < 25; cycle++ {
		up := make([]byte, 1+rng.IntN(300<<10)) // some cycles pass bulkAfter: splice too
		down := make([]byte, 1+rng.IntN(300<<10))
		for i := range up {
			up[i] = byte(rng.Uint32())
		}
		for i := range down {
			down[i] = byte(rng.Uint32())
		}
		var wg sync.WaitGroup
		var gotUp, gotDown [32]byte
		var errUp, errDown error
		relay := func(from, to net.Conn, b []byte, sum *[32]byte, err *error) {
			defer wg.Done()
			go from.Write(b)
			to.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, len(b))
			_, *err = io.ReadFull(to, got)
			*sum = sha256.Sum256(got)
		}
		wg.Add(2)
		go relay(client, server, up, &gotUp, &errUp)
		go relay(server, client, down, &gotDown, &errDown)
		wg.Wait()
		if errUp != nil || errDown != nil {
			t.Fatalf("cycle %d: %v %v", cycle, errUp, errDown)
		}
		if gotUp != sha256.Sum256(up) || gotDown != sha256.Sum256(down) {
			t.Fatalf("cycle %d: bytes changed on the way", cycle)
		}
		waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "detached again")
	}
	p.Close()
	waitDone(t, p)
}

// TestDetachedHalfClose: EOF from the client while detached is passed on,
// the other way still works (and detaches again), and the server's close
// ends the tunnel.
func TestDetachedHalfClose(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, server, p := detachedPair(t, Options{Idle: time.Minute})
	client.CloseWrite()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("half-close not passed on: %d %v", n, err)
	}
	waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "half-closed tunnel detached")
	echo(t, server, client, "after the half-close")
	waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "detached again")
	echo(t, server, client, "once more")
	server.Close()
	waitDone(t, p)
	seesClose(t, client, "client")
}

// TestDetachedReset: a reset from the server while detached ends the tunnel
// with an error, and the client sees its side closed.
func TestDetachedReset(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	res := make(chan Result, 1)
	client, server, p := detachedPair(t, Options{Idle: time.Minute, OnDone: func(r Result) { res <- r }})
	server.SetLinger(0)
	server.Close()
	waitDone(t, p)
	if r := <-res; r.Err == nil {
		t.Fatal("a reset ended the tunnel without an error")
	}
	seesClose(t, client, "client")
}

// TestDetachedIdle: the idle watchdog reads the kernel's counters on the
// descriptors and closes a detached tunnel; both ends see it.
func TestDetachedIdle(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	res := make(chan Result, 1)
	start := time.Now()
	client, server, p := detachedPair(t, Options{Idle: 400 * time.Millisecond, ParkAfter: 30 * time.Millisecond, OnDone: func(r Result) { res <- r }})
	waitDone(t, p)
	if r := <-res; !errors.Is(r.Err, ErrIdle) {
		t.Fatalf("err %v", r.Err)
	}
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Fatalf("closed after %v", el)
	}
	seesClose(t, client, "client")
	seesClose(t, server, "server")
}

// TestDetachedClose: Close (a reload, a shutdown) of a detached tunnel
// closes both sockets.
func TestDetachedClose(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	res := make(chan Result, 1)
	client, server, p := detachedPair(t, Options{Idle: time.Minute, OnDone: func(r Result) { res <- r }})
	p.Close()
	waitDone(t, p)
	if r := <-res; !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("err %v", r.Err)
	}
	seesClose(t, client, "client")
	seesClose(t, server, "server")
}

// TestDetachedCloseRacesWake: Close against a wake against the watchdog,
// many times: every tunnel ends, both ends see it, and no descriptor is
// leaked or closed twice (a sentinel socket opened meanwhile stays usable).
func TestDetachedCloseRacesWake(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	iters := 150
	if testing.Short() {
		iters = 30
	}
	fds := openFDs(t)
	for i := 0; i < iters; i++ {
		func() {
			client, proxyClient := pair(t)
			proxyServer, server := pair(t)
			defer client.Close()
			defer server.Close()
			p := Start(proxyClient, proxyServer, Options{Idle: time.Duration(20+i%20) * time.Millisecond, ParkAfter: 5 * time.Millisecond})
			waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) || p.finishedNow() }, "detached")
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); client.Write([]byte("wake")) }()
			go func() { defer wg.Done(); server.Write([]byte("wake")) }()
			time.Sleep(time.Duration(i%7) * time.Millisecond)
			// A sentinel: if the tunnel closed a descriptor number twice,
			// it could be this socket's.
			s1, s2 := pair(t)
			p.Close()
			wg.Wait()
			waitDone(t, p)
			seesClose(t, client, "client")
			seesClose(t, server, "server")
			echo(t, s1, s2, "sentinel")
			s1.Close()
			s2.Close()
		}()
	}
	waitUntil(t, 5*time.Second, func() bool { return openFDs(t) <= fds }, "no descriptor leaked")
}

func (p *Pipe) finishedNow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.finished
}

// TestRedetachGap: a tunnel that parks again soon after a wake keeps its
// connections (no detach and attach per byte of a chatty peer); the idle
// watchdog detaches it at its next look.
func TestRedetachGap(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	redetachAfter = time.Hour
	defer func() { redetachAfter = 0 }()
	// The tunnel starts detached (relayed by its parker); no watchdog look
	// for 15 s. A way that turns bulk wakes: its goroutine makes the
	// connections again.
	client, server, p := detachedPair(t, Options{Idle: time.Minute})
	before := Parked()
	bulk(t, client, server, 2*bulkAfter)
	for i := 0; i < 5; i++ {
		echo(t, client, server, "chatty")
		waitUntil(t, 5*time.Second, func() bool { return Parked() == before }, "parked again")
		if isDetached(t, p) {
			t.Fatalf("round %d: detached again right after a wake", i)
		}
	}
	p.Close()
	waitDone(t, p)

	// With a watchdog looking every 500 ms, the parked tunnel detaches.
	client, server, p = detachedPair(t, Options{Idle: 2 * time.Second})
	bulk(t, server, client, 2*bulkAfter)
	waitUntil(t, 5*time.Second, func() bool { return Parked() == before }, "parked again")
	waitUntil(t, 5*time.Second, func() bool { return isDetached(t, p) }, "detached by the watchdog")
	echo(t, server, client, "still relayed")
	p.Close()
	waitDone(t, p)
}

// bulk sends n bytes from one end of a tunnel and reads them at the other.
func bulk(t *testing.T, from, to net.Conn, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := from.Write(bytes.Repeat([]byte("b"), n)); errc <- err }()
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(to, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
