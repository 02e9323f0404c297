package tunnel

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// The inline phase (tunnel.go, runInline): the first bulkAfter bytes of each
// way are copied with read/write on the way's goroutine; only a way that
// passes them switches to splice. These tests hold the tunnel's guarantees
// in that phase and across the switch.

// bothCopiers runs test with the tunnel's default copier (relayed by its
// parker, relay_linux.go, a goroutine taking over for bulk or a slow peer)
// and with goroutines only (no parking: the inline phase from the start).
func bothCopiers(t *testing.T, test func(t *testing.T, park time.Duration)) {
	t.Run("relayed", func(t *testing.T) { test(t, 0) })
	t.Run("goroutines", func(t *testing.T) { test(t, -1) })
}

// waitDone waits for the tunnel to end and returns whether each way turned
// bulk (read after Done: the copies are over).
func waitDone(t *testing.T, p *Pipe) (upBulk, downBulk bool) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel did not end")
	}
	return p.dirs[0].bulk, p.dirs[1].bulk
}

// TestInlineShortTunnelNeverBulk: a request and an answer of a few
// kilobytes, like a TLS handshake and a GET, are copied inline from start to
// end: neither way takes the splice path; bytes and counts are exact.
func TestInlineShortTunnelNeverBulk(t *testing.T) { bothCopiers(t, testInlineShortTunnelNeverBulk) }

func testInlineShortTunnelNeverBulk(t *testing.T, park time.Duration) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	var cnt count
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, ParkAfter: park, Counter: &cnt, OnDone: func(r Result) { res = r }})
	hello := bytes.Repeat([]byte("h"), 517)
	flight := bytes.Repeat([]byte("s"), 4000)
	echo(t, client, server, string(hello))
	echo(t, server, client, string(flight))
	echo(t, client, server, "GET / HTTP/1.1\r\n\r\n")
	echo(t, server, client, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	server.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(client); err != nil || len(b) != 0 {
		t.Fatalf("client after the server's close: %q %v", b, err)
	}
	client.Close()
	up, down := waitDone(t, p)
	if up || down {
		t.Fatalf("a short tunnel took the splice path (upload %v, download %v)", up, down)
	}
	wantUp := int64(len(hello) + len("GET / HTTP/1.1\r\n\r\n"))
	wantDown := int64(len(flight) + len("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if res.Upload != wantUp || res.Download != wantDown || res.Err != nil {
		t.Fatalf("result %+v, want %d up, %d down", res, wantUp, wantDown)
	}
	if cnt.up.Load() != wantUp || cnt.down.Load() != wantDown {
		t.Fatalf("counter %d/%d", cnt.up.Load(), cnt.down.Load())
	}
}

// TestInlineTurnsBulkMidStream: each way starts with small writes (inline)
// and goes on with megabytes (past bulkAfter: splice); every byte arrives in
// order (checked by hash) and the counts are exact across the switch.
func TestInlineTurnsBulkMidStream(t *testing.T) { bothCopiers(t, testInlineTurnsBulkMidStream) }

func testInlineTurnsBulkMidStream(t *testing.T, park time.Duration) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	var cnt count
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, ParkAfter: park, Counter: &cnt, OnDone: func(r Result) { res = r }})

	const size = 3 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	send := func(c *net.TCPConn, data []byte) {
		// 200 small writes first (inline), then the rest in large ones.
		i := 0
		for ; i < 200*333; i += 333 {
			if _, err := c.Write(data[i : i+333]); err != nil {
				return
			}
		}
		c.Write(data[i:])
		c.CloseWrite()
	}
	var wg sync.WaitGroup
	var atServer, atClient []byte
	var errServer, errClient error
	wg.Add(4)
	go func() { defer wg.Done(); send(client, up) }()
	go func() { defer wg.Done(); send(server, down) }()
	go func() {
		defer wg.Done()
		server.SetReadDeadline(time.Now().Add(20 * time.Second))
		atServer, errServer = io.ReadAll(server)
	}()
	go func() {
		defer wg.Done()
		client.SetReadDeadline(time.Now().Add(20 * time.Second))
		atClient, errClient = io.ReadAll(client)
	}()
	wg.Wait()
	if errServer != nil || errClient != nil {
		t.Fatalf("reads: %v, %v", errServer, errClient)
	}
	if sha256.Sum256(atServer) != sha256.Sum256(up) || sha256.Sum256(atClient) != sha256.Sum256(down) {
		t.Fatalf("data differs: %d/%d bytes", len(atServer), len(atClient))
	}
	upBulk, downBulk := waitDone(t, p)
	if !upBulk || !downBulk {
		t.Fatalf("3 MiB each way did not switch to splice (upload %v, download %v)", upBulk, downBulk)
	}
	if res.Upload != size || res.Download != size || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if cnt.up.Load() != size || cnt.down.Load() != size {
		t.Fatalf("counter %d/%d", cnt.up.Load(), cnt.down.Load())
	}
}

// TestInlineHalfClose: the client's half-close during the inline phase
// reaches the server as EOF, and the server's answer written after it still
// reaches the client whole.
func TestInlineHalfClose(t *testing.T) { bothCopiers(t, testInlineHalfClose) }

func testInlineHalfClose(t *testing.T, park time.Duration) {
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	var res Result
	p := Start(proxyClient, proxyServer, Options{Idle: 10 * time.Second, ParkAfter: park, OnDone: func(r Result) { res = r }})
	client.Write([]byte("request"))
	client.CloseWrite()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := io.ReadAll(server)
	if err != nil || string(req) != "request" {
		t.Fatalf("server read %q %v", req, err)
	}
	answer := bytes.Repeat([]byte("answer after EOF "), 1000)
	// In two parts, apart: the way from the server is still copying inline
	// after the other one ended.
	server.Write(answer[:100])
	time.Sleep(20 * time.Millisecond)
	server.Write(answer[100:])
	server.CloseWrite()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("client read %d bytes, %v", len(got), err)
	}
	up, down := waitDone(t, p)
	if up || down {
		t.Fatalf("took the splice path (upload %v, download %v)", up, down)
	}
	if res.Upload != 7 || res.Download != int64(len(answer)) || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
}

// TestInlineIdleTimeout: a tunnel that moved a few bytes inline and then
// went quiet is closed as idle, parked or not, and both ends see the close.
func TestInlineIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		park time.Duration
	}{{"parking", 0}, {"never-parks", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			client, proxyClient := pair(t)
			proxyServer, server := pair(t)
			defer client.Close()
			defer server.Close()
			var res Result
			const idle = 300 * time.Millisecond
			p := Start(proxyClient, proxyServer, Options{Idle: idle, ParkAfter: tc.park, OnDone: func(r Result) { res = r }})
			echo(t, client, server, "hello")
			// Taken before the last byte moves: a lower bound that a slow
			// test goroutine cannot push past the close.
			quiet := time.Now()
			echo(t, server, client, "world")
			up, down := waitDone(t, p)
			if el := time.Since(quiet); el < idle*3/4 {
				t.Fatalf("closed %v after the last byte, before the idle timeout %v", el, idle)
			}
			if !errors.Is(res.Err, ErrIdle) || res.Upload != 5 || res.Download != 5 {
				t.Fatalf("result %+v", res)
			}
			if up || down {
				t.Fatalf("took the splice path (upload %v, download %v)", up, down)
			}
			for _, c := range []*net.TCPConn{client, server} {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					t.Fatal("an end still open after the idle close")
				}
			}
		})
	}
}
