package httpproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/tunnel"
)

// parkedBound is the live heap a parked CONNECT tunnel may keep in the
// proxy: the tunnel.Pipe (its two sockets as bare descriptors: no
// net.TCPConn), the sealed event, the registry entry, the limit slot and
// the idle watchdog. About 1.15 KB today; 1.8–1.9 KB while the tunnel kept
// its two net.TCPConns (~600 B with their addresses), 4.1 KB when the
// listener's connection state, the flow and the whole audit.Event stayed
// reachable.
const parkedBound = 1600

// A parked CONNECT tunnel keeps a compact record, not what set it up (the
// listener's connection, its request, the flow, the hello, the event under
// construction). Measured in bytes of live heap after GC, not in time: the
// heap growth of N parked tunnels, less that of N plain loopback
// connections held the same way (the test's own ends: a client and an
// origin socket per tunnel).
func TestParkedTunnelHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector inflates every allocation: heap bounds are meaningless under -race")
	}
	if testing.Short() {
		t.Skip("opens 2 × 200 loopback connections")
	}
	// What earlier tests of the package leave ending (their goroutines,
	// connections and timers) would be freed in the middle of the
	// measurement: it starts once the goroutines stop falling (5 s at most).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		g := runtime.NumGoroutine()
		time.Sleep(100 * time.Millisecond)
		if runtime.NumGoroutine() >= g {
			break
		}
	}
	const n, batch = 200, 25
	origin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	held := make(chan net.Conn, 4*n)
	go func() {
		for {
			c, err := origin.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	var kept []net.Conn
	defer func() {
		for _, c := range kept {
			c.Close()
		}
	}()
	take := func(k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			select {
			case c := <-held:
				kept = append(kept, c)
			case <-time.After(10 * time.Second):
				t.Fatalf("origin: %d of %d connections", i, k)
			}
		}
	}
	port := origin.Addr().(*net.TCPAddr).Port
	p := startProxy(t, "1h", `"tunnel.test" = "127.0.0.1"`)
	target := fmt.Sprintf("tunnel.test:%d", port)
	hello := goHello(t, "tunnel.test")
	parked0 := tunnel.Parked()
	open := func(k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			c := p.dial()
			kept = append(kept, c)
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64), &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
		}
		take(k)
	}
	waitParked := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for tunnel.Parked()-parked0 < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d tunnels parked", tunnel.Parked()-parked0, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The test's own ends, and the runtime's goroutine records a burst of
	// tunnels leaves (reused, not freed), measured first: N plain
	// connections, and a first batch of tunnels opened and closed.
	open(batch)
	waitParked(batch)
	for _, c := range kept {
		c.Close()
	}
	kept = kept[:0]
	deadline := time.Now().Add(20 * time.Second)
	for p.track.Open() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", p.track.Open())
		}
		time.Sleep(20 * time.Millisecond)
	}
	h0 := liveHeap()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", origin.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, c)
	}
	take(n)
	plain := liveHeap() - h0
	for _, c := range kept {
		c.Close()
	}
	kept = kept[:0]
	// Let the closed plain connections go before the tunnels' baseline.
	h1 := liveHeap()
	for i := 0; i < n; i += batch {
		open(batch)
		waitParked(i + batch)
	}
	tunnels := liveHeap() - h1
	per := (tunnels - plain) / n
	t.Logf("live heap per parked tunnel: %d B (tunnels and the test's ends %d B, the test's ends alone %d B, per tunnel)", per, tunnels/n, plain/n)
	if per > parkedBound {
		t.Fatalf("a parked CONNECT tunnel keeps %d B of live heap in the proxy, more than %d", per, parkedBound)
	}
	if got := p.track.Open(); got != n {
		t.Fatalf("%d tracked connections, want %d", got, n)
	}
}

// liveHeap is the heap in use after a full collection (sync.Pool contents
// dropped: two cycles).
func liveHeap() int64 {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
		// Objects with finalizers (an unclosed descriptor an earlier test
		// left) are freed a cycle after their finalizer ran, on a
		// goroutine of its own: give it the time to run.
		time.Sleep(10 * time.Millisecond)
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
