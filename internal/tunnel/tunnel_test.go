package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns two ends of a loopback TCP connection: the dialed one, and
// the accepted one, from a listener with ListenControl as the proxy's
// client-facing listeners have.
func pair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	lc := net.ListenConfig{Control: ListenControl}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

type count struct{ up, down atomic.Int64 }

func (c *count) Add(u, d int64) { c.up.Add(u); c.down.Add(d) }

// TestPipeBothWays: 8 MiB each way, concurrently, with half-close, hashes
// match and the counts are exact.
func TestPipeBothWays(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	var cnt count
	resc := make(chan Result, 1)
	go func() { resc <- Run(proxyClient, proxyServer, 10*time.Second, &cnt) }()

	const size = 8 << 20
	upData := make([]byte, size)
	downData := make([]byte, size)
	rand.Read(upData)
	rand.Read(downData)
	var wg sync.WaitGroup
	var gotAtServer, gotAtClient []byte
	wg.Add(4)
	go func() { defer wg.Done(); client.Write(upData); client.CloseWrite() }()
	go func() { defer wg.Done(); server.Write(downData); server.CloseWrite() }()
	go func() { defer wg.Done(); gotAtServer, _ = io.ReadAll(server) }()
	go func() { defer wg.Done(); gotAtClient, _ = io.ReadAll(client) }()
	wg.Wait()
	res := <-resc
	if sha256.Sum256(gotAtServer) != sha256.Sum256(upData) || sha256.Sum256(gotAtClient) != sha256.Sum256(downData) {
		t.Fatalf("data differs: %d/%d bytes", len(gotAtServer), len(gotAtClient))
	}
	if res.Upload != size || res.Download != size || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if cnt.up.Load() != size || cnt.down.Load() != size {
		t.Fatalf("counter %d/%d", cnt.up.Load(), cnt.down.Load())
	}
}

// TestHalfClose: the client finishes sending, and still receives the whole
// answer the server writes after seeing EOF.
func TestHalfClose(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	go Run(proxyClient, proxyServer, 0, nil)
	client.Write([]byte("request"))
	client.CloseWrite()
	req, err := io.ReadAll(server)
	if err != nil || string(req) != "request" {
		t.Fatalf("server read %q %v", req, err)
	}
	server.Write([]byte("answer after EOF"))
	server.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "answer after EOF" {
		t.Fatalf("client read %q %v", got, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	start := time.Now()
	resc := make(chan Result, 1)
	go func() { resc <- Run(proxyClient, proxyServer, 200*time.Millisecond, nil) }()
	select {
	case res := <-resc:
		if !errors.Is(res.Err, ErrIdle) {
			t.Fatalf("err %v", res.Err)
		}
		if el := time.Since(start); el < 100*time.Millisecond {
			t.Fatalf("closed after %v, before the idle timeout", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle tunnel not closed")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client still open")
	}
}

// TestActiveOneWayIsNotIdle: a download that keeps flowing keeps the tunnel
// open although the client sends nothing.
func TestActiveOneWayIsNotIdle(t *testing.T) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	resc := make(chan Result, 1)
	go func() { resc <- Run(proxyClient, proxyServer, 150*time.Millisecond, nil) }()
	go io.Copy(io.Discard, client)
	deadline := time.Now().Add(1 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := server.Write(bytes.Repeat([]byte("x"), 1024)); err != nil {
			t.Fatalf("tunnel closed while active: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	server.Close()
	client.Close()
	select {
	case res := <-resc:
		if errors.Is(res.Err, ErrIdle) {
			t.Fatalf("reported idle: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel did not end")
	}
}

// BenchmarkPipe measures bulk throughput through one tunnel (splice).
func BenchmarkPipe(b *testing.B) {
	client, proxyClient := pair(b)
	proxyServer, server := pair(b)
	go Run(proxyClient, proxyServer, time.Minute, nil)
	go io.Copy(io.Discard, server)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
}
