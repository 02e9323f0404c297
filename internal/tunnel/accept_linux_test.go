package tunnel

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// acceptOn starts an Acceptor on a new loopback listener whose serve sends
// every Socket (and its peer) to the returned channel.
type accepted struct {
	s    *Socket
	peer netip.AddrPort
}

func acceptOn(t *testing.T, serve func(*Socket, netip.AddrPort), onPanic func(any)) (*Acceptor, string) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	a, err := Accept(ln, serve, nil, onPanic)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, addr
}

// TestAcceptServes: connections accepted on the parkers arrive as Sockets
// with their peer's and their own address; bytes go both ways; the
// listener's own socket left Go's (a second Accept on it fails: it is
// closed).
func TestAcceptServes(t *testing.T) {
	got := make(chan accepted, 8)
	_, addr := acceptOn(t, func(s *Socket, peer netip.AddrPort) { got <- accepted{s, peer} }, nil)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var a accepted
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted in 5 s")
	}
	defer a.s.Close()
	if a.peer.String() != c.LocalAddr().String() || a.s.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("peer %v / %v, the client is %v", a.peer, a.s.RemoteAddr(), c.LocalAddr())
	}
	if a.s.LocalAddr().String() != addr {
		t.Fatalf("local address %v, want %v", a.s.LocalAddr(), addr)
	}
	if a.s.RemoteAddrPort() != a.peer || a.s.LocalAddrPort().String() != addr {
		t.Fatalf("RemoteAddrPort %v (peer %v), LocalAddrPort %v (want %s)", a.s.RemoteAddrPort(), a.peer, a.s.LocalAddrPort(), addr)
	}
	if a.s.RemoteAddr() != a.s.RemoteAddr() || a.s.LocalAddr() != a.s.LocalAddr() {
		t.Fatal("a Socket made a new net.Addr on a second call")
	}
	// What a flow on the parkers asks of every connection allocates nothing.
	var fd int
	if allocs := testing.AllocsPerRun(50, func() {
		_, _ = a.s.RemoteAddrPort(), a.s.LocalAddrPort()
		a.s.Control(func(d uintptr) { fd = int(d) })
	}); allocs != 0 || fd <= 0 {
		t.Fatalf("%v allocations (fd %d)", allocs, fd)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 8)
	var n int
	waitUntil(t, 5*time.Second, func() bool { n, err = a.s.Read(buf); return err == nil }, "the client's bytes")
	if string(buf[:n]) != "ping" {
		t.Fatalf("read %q", buf[:n])
	}
	if _, err := a.s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

// TestAcceptWildcardLocal: on a wildcard listener each Socket asks the
// kernel for its own address.
func TestAcceptWildcardLocal(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	got := make(chan *Socket, 1)
	a, err := Accept(ln, func(s *Socket, _ netip.AddrPort) { got <- s }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), uint16(port)).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		defer s.Close()
		if s.LocalAddr().String() != c.RemoteAddr().String() || s.LocalAddrPort().String() != c.RemoteAddr().String() {
			t.Fatalf("local %v (%v), the client dialed %v", s.LocalAddr(), s.LocalAddrPort(), c.RemoteAddr())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted")
	}
}

// TestAcceptBurst: more connections queued at once than one event accepts
// (acceptBatch) are all served, without a further arrival to wake the
// parker.
func TestAcceptBurst(t *testing.T) {
	var served atomic.Int32
	var mu sync.Mutex
	var socks []*Socket
	_, addr := acceptOn(t, func(s *Socket, _ netip.AddrPort) {
		served.Add(1)
		mu.Lock()
		socks = append(socks, s)
		mu.Unlock()
	}, nil)
	defer func() {
		mu.Lock()
		for _, s := range socks {
			s.Close()
		}
		mu.Unlock()
	}()
	const n = 5*acceptBatch + 3
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitUntil(t, 10*time.Second, func() bool { return served.Load() == n }, "every queued connection served")
}

// TestAcceptClose: after Close returns nothing more is served, the port
// refuses, a second Close says so, and no descriptor is left.
func TestAcceptClose(t *testing.T) {
	before := openFDs(t)
	var served, after atomic.Int32
	var closed atomic.Bool
	var mu sync.Mutex
	var socks []*Socket
	a, addr := acceptOn(t, func(s *Socket, _ netip.AddrPort) {
		if closed.Load() {
			after.Add(1)
		}
		served.Add(1)
		mu.Lock()
		socks = append(socks, s)
		mu.Unlock()
	}, nil)
	// Dialers run while it closes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
			}
		}()
	}
	waitUntil(t, 10*time.Second, func() bool { return served.Load() > 20 }, "connections served before the close")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	close(stop)
	wg.Wait()
	if after.Load() != 0 {
		t.Fatalf("%d connections served after Close returned", after.Load())
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed")
	}
	if err := a.Close(); err == nil {
		t.Fatal("a second Close succeeded")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts after Close")
	}
	mu.Lock()
	for _, s := range socks {
		s.Close()
	}
	mu.Unlock()
	if got := openFDs(t); got > before {
		t.Fatalf("%d descriptors open, %d before", got, before)
	}
}

// TestAcceptPanic: a panic in serve goes to onPanic and the parker goes on
// accepting (and serving every other waiter).
func TestAcceptPanic(t *testing.T) {
	var panics, served atomic.Int32
	var first atomic.Bool
	_, addr := acceptOn(t, func(s *Socket, _ netip.AddrPort) {
		defer s.Close()
		if first.CompareAndSwap(false, true) {
			panic("serve bug")
		}
		served.Add(1)
	}, func(any) { panics.Add(1) })
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitUntil(t, 5*time.Second, func() bool { return panics.Load() == 1 && served.Load() == 2 }, "one panic, two served")
}

// TestAcceptBackoff: out of descriptors, accepting pauses with a back-off
// (reported) rather than spinning on the still-readable queue, then goes
// on: the queued connection is served.
func TestAcceptBackoff(t *testing.T) {
	var fails atomic.Int32
	accept4 = func(fd int) (int, netip.AddrPort, error) {
		if fails.Add(1) <= 3 {
			return -1, netip.AddrPort{}, unix.EMFILE
		}
		return rawAccept4(fd)
	}
	defer func() { accept4 = rawAccept4 }()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Socket, 1)
	var mu sync.Mutex
	var retries []time.Duration
	a, err := Accept(ln, func(s *Socket, _ netip.AddrPort) { got <- s }, func(err error, retry time.Duration) {
		if err != unix.EMFILE {
			t.Errorf("reported %v", err)
		}
		mu.Lock()
		retries = append(retries, retry)
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("not served after the back-off")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(retries) != 3 || retries[0] != 5*time.Millisecond || retries[1] != 10*time.Millisecond || retries[2] != 20*time.Millisecond {
		t.Fatalf("back-offs %v, want 5ms 10ms 20ms", retries)
	}
	// 3 failures, the success, and usually the EAGAIN that ends the batch
	// (one more if two parkers were woken; none when the wait ended before
	// the parker asked again, seen under -race in CI): a spin would be
	// thousands.
	if n := fails.Load(); n < 4 || n > 8 {
		t.Fatalf("%d accept calls for 3 failures and a success", n)
	}
}
