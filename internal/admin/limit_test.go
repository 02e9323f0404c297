package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce reports whether the server closed c without a byte.
func closedAtOnce(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err == io.EOF
}

// TestLimitListener: connections that send nothing hold their slots; one
// over the per-source cap, then one over the total cap, is closed at once
// and reported, while another source is still served; a closed connection
// gives its slot back.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reasons []string
	ln := &limitListener{Listener: raw, per: map[netip.Addr]int{}, max: 4, maxPerSource: 2, rejected: func(r string) {
		mu.Lock()
		reasons = append(reasons, r)
		mu.Unlock()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	go Serve(ctx, ln, h)
	addr := raw.Addr().String()
	get := func(src string) error {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}}
		resp, err := c.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	waitOpen := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ln.Open() != n; {
			if time.Now().After(deadline) {
				t.Fatalf("open %d, want %d", ln.Open(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	a1, _ := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	waitOpen(2)
	if over := dialFrom(t, "127.0.0.1", addr); !closedAtOnce(over) {
		t.Fatal("a third connection from one source was not closed at once")
	}
	if err := get("127.0.0.2"); err != nil {
		t.Fatalf("another source not served while one is at its cap: %v", err)
	}
	waitOpen(2) // that request's connection gave its slot back
	dialFrom(t, "127.0.0.2", addr)
	dialFrom(t, "127.0.0.3", addr)
	waitOpen(4)
	if over := dialFrom(t, "127.0.0.4", addr); !closedAtOnce(over) {
		t.Fatal("a connection over the total cap was not closed at once")
	}
	a1.Close()
	waitOpen(3)
	if err := get("127.0.0.1"); err != nil {
		t.Fatalf("a slot given back is not reused: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 2 || reasons[0] != RejectPerSource || reasons[1] != RejectMaxConns {
		t.Fatalf("reported %v, want [per_source max_connections]", reasons)
	}
}
