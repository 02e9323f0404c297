package tunnel

import (
	"math"
	"net"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// goroutinesCreated is the count of goroutines the process created so far.
func goroutinesCreated(t *testing.T) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Skip("SKIP: the runtime does not count created goroutines")
	}
	return s[0].Value.Uint64()
}

// shortTunnel runs a handshake-sized exchange through a tunnel started by
// start and returns how many goroutines were created from the start to the
// tunnel's end (OnDone has returned).
func shortTunnel(t *testing.T, start func(client, server *net.TCPConn, opt Options) *Pipe) uint64 {
	t.Helper()
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	canPark(proxyClient, proxyServer) // the parker's goroutine exists before counting
	done := make(chan struct{})
	before := goroutinesCreated(t)
	p := start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, OnDone: func(Result) { close(done) }})
	echo(t, client, server, "client hello")
	echo(t, server, client, "server flight")
	echo(t, client, server, "GET / HTTP/1.1\r\n\r\n")
	echo(t, server, client, "HTTP/1.1 200 OK\r\n\r\n")
	server.CloseWrite()
	client.CloseWrite()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel did not end")
	}
	<-p.Done()
	return goroutinesCreated(t) - before
}

// fewestGoroutines runs shortTunnel a few times and returns the fewest
// goroutines one run created: the runtime creates some of its own lazily
// (the collector's workers at the first cycle), which one run may catch.
func fewestGoroutines(t *testing.T, start func(client, server *net.TCPConn, opt Options) *Pipe) uint64 {
	t.Helper()
	runtime.GC()
	fewest := uint64(math.MaxUint64)
	for range 3 {
		fewest = min(fewest, shortTunnel(t, start))
	}
	return fewest
}

// TestShortTunnelGoroutines: a short tunnel started with Start creates no
// goroutine: its parker copies both ways and delivers the result
// (relay_linux.go). Before the relay: two, one per way; before the inline
// phase: three.
func TestShortTunnelGoroutines(t *testing.T) {
	want := uint64(0)
	if !canPark() {
		want = 2 // no parker: one goroutine per way
	}
	n := fewestGoroutines(t, func(c, s *net.TCPConn, opt Options) *Pipe { return Start(c, s, opt) })
	if n > want {
		t.Fatalf("a short tunnel created %d goroutines, want at most %d", n, want)
	}
}

// TestServeShortTunnelGoroutines: with Serve, the caller's goroutine returns
// at once and the parker copies both ways: a short tunnel creates no
// goroutine but the stand-in for the connection's.
func TestServeShortTunnelGoroutines(t *testing.T) {
	want := uint64(1)
	if !canPark() {
		want = 2 // the stand-in, which copies the upload way, and the download's
	}
	n := fewestGoroutines(t, func(c, s *net.TCPConn, opt Options) *Pipe {
		p := New(c, s, opt)
		go p.Serve() // stands for the connection's goroutine: counted
		return p
	})
	if n > want {
		t.Fatalf("a short tunnel created %d goroutines, want at most %d (the stand-in for the connection's)", n, want)
	}
}
