package tunnel

import (
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func waitUntil(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func echo(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil || string(buf) != msg {
		t.Fatalf("got %q, %v", buf, err)
	}
}

// TestParkAndWake: a quiet tunnel gives its goroutines back, and the first
// byte either way brings it back, in order and complete.
func TestParkAndWake(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	before := Parked()
	p := Start(proxyClient, proxyServer, Options{Idle: time.Minute, ParkAfter: 100 * time.Millisecond})
	echo(t, client, server, "hello")
	waitUntil(t, 5*time.Second, func() bool { return Parked() == before+1 }, "tunnel parked")
	echo(t, server, client, "answer while parked")
	waitUntil(t, 5*time.Second, func() bool { return Parked() == before+1 }, "tunnel parked again")
	echo(t, client, server, "client speaks first")
	client.CloseWrite()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("half-close not passed on: %d %v", n, err)
	}
	waitUntil(t, 5*time.Second, func() bool { return Parked() == before+1 }, "half-closed tunnel parked")
	echo(t, server, client, "after the half-close")
	server.Close()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("tunnel did not end")
	}
}

// TestParkedTunnelsHoldNoGoroutines: 200 quiet tunnels, no goroutine each.
func TestParkedTunnelsHoldNoGoroutines(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	const n = 200
	base := runtime.NumGoroutine()
	var ends []net.Conn
	before := Parked()
	for i := 0; i < n; i++ {
		client, proxyClient := pair(t)
		proxyServer, server := pair(t)
		ends = append(ends, client, server)
		Start(proxyClient, proxyServer, Options{Idle: time.Minute, ParkAfter: 50 * time.Millisecond})
	}
	waitUntil(t, 10*time.Second, func() bool { return Parked() == before+n }, "all tunnels parked")
	if g := runtime.NumGoroutine() - base; g > 10 {
		t.Fatalf("%d goroutines for %d parked tunnels", g, n)
	}
	for _, c := range ends {
		c.Close()
	}
	waitUntil(t, 10*time.Second, func() bool { return Parked() == before }, "closed tunnels unparked")
}

func TestParkedIdleTimeout(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	res := make(chan Result, 1)
	start := time.Now()
	Start(proxyClient, proxyServer, Options{Idle: 400 * time.Millisecond, ParkAfter: 50 * time.Millisecond, OnDone: func(r Result) { res <- r }})
	select {
	case r := <-res:
		if !errors.Is(r.Err, ErrIdle) {
			t.Fatalf("err %v", r.Err)
		}
		if el := time.Since(start); el < 350*time.Millisecond {
			t.Fatalf("closed after %v", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("parked idle tunnel not closed")
	}
}

func TestCloseParked(t *testing.T) {
	if !canPark() {
		t.Skip("SKIP: parking needs epoll (Linux)")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	before := Parked()
	res := make(chan Result, 1)
	p := Start(proxyClient, proxyServer, Options{Idle: time.Minute, ParkAfter: 50 * time.Millisecond, OnDone: func(r Result) { res <- r }})
	waitUntil(t, 5*time.Second, func() bool { return Parked() == before+1 }, "parked")
	p.Close()
	select {
	case r := <-res:
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("err %v", r.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a parked tunnel did not finish it")
	}
	if Parked() != before {
		t.Fatal("still parked")
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client still open")
	}
}
