package tunnel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Tunnels whose peer stops reading: the client never reads while the origin
// writes as fast as it can. Each test runs with parking (the default) and
// without (ParkAfter < 0: both ways keep their goroutines).

var parkModes = []struct {
	name      string
	parkAfter time.Duration
}{
	{"parked", 50 * time.Millisecond},
	{"unparked", -1},
}

// streamer writes a counted pattern to c until a write fails, and says how
// much it wrote.
type streamer struct {
	written atomic.Int64
	done    chan error
}

func stream(c net.Conn) *streamer {
	s := &streamer{done: make(chan error, 1)}
	go func() {
		buf := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
		for {
			k, err := c.Write(buf)
			s.written.Add(int64(k))
			if err != nil {
				s.done <- err
				return
			}
		}
	}()
	return s
}

// stalled waits until no write of s has completed for quiet: every buffer
// between the origin and the client that stopped reading is full.
func (s *streamer) stalled(t *testing.T, quiet, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	last, since := s.written.Load(), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("origin still writing after %v (%d bytes): the client's side is not full", within, s.written.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if w := s.written.Load(); w != last {
			last, since = w, time.Now()
		}
	}
	return last
}

// TestStuckReaderClosesAfterIdle: a tunnel whose client stopped reading, with
// the download blocked in a write, closes as idle once no byte moved for the
// idle timeout; its result counts the bytes it passed on.
func TestStuckReaderClosesAfterIdle(t *testing.T) {
	for _, m := range parkModes {
		t.Run(m.name, func(t *testing.T) {
			client, proxyClient := pair(t)
			proxyServer, server := pair(t)
			defer client.Close()
			defer server.Close()
			const idle = time.Second
			res := make(chan Result, 1)
			Start(proxyClient, proxyServer, Options{Idle: idle, ParkAfter: m.parkAfter, OnDone: func(r Result) { res <- r }})
			s := stream(server)
			s.stalled(t, 300*time.Millisecond, 30*time.Second)
			stalledAt := time.Now()
			select {
			case r := <-res:
				if !errors.Is(r.Err, ErrIdle) {
					t.Fatalf("err %v, want ErrIdle", r.Err)
				}
				if r.Download <= 0 || r.Upload != 0 {
					t.Fatalf("counts: up %d down %d", r.Upload, r.Download)
				}
				// Closed only after the idle timeout (the stall started at
				// most quiet before stalledAt); by construction no later
				// than 1.25 × idle after, plus scheduling.
				if el := time.Since(stalledAt); el < idle/2 {
					t.Fatalf("closed %v after the stall, before the idle timeout", el)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("stuck tunnel still open 15 s after its stall (idle timeout %v)", idle)
			}
			// Both ends see the close: the origin's write fails.
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("origin's write still blocked after the tunnel closed")
			}
		})
	}
}

// TestOtherWayFlowsWhileOneIsStuck: while the download is blocked in a write
// (the client does not read), the client's own bytes keep reaching the
// origin; once the client reads again it gets every byte, in order.
func TestOtherWayFlowsWhileOneIsStuck(t *testing.T) {
	for _, m := range parkModes {
		t.Run(m.name, func(t *testing.T) {
			client, proxyClient := pair(t)
			proxyServer, server := pair(t)
			defer client.Close()
			defer server.Close()
			res := make(chan Result, 1)
			Start(proxyClient, proxyServer, Options{Idle: time.Minute, ParkAfter: m.parkAfter, OnDone: func(r Result) { res <- r }})
			s := stream(server)
			s.stalled(t, 300*time.Millisecond, 30*time.Second)
			// Longer than ParkAfter between messages: a way that would stop
			// with its copy (the bug) has stopped by then.
			for i := 0; i < 5; i++ {
				msg := []byte{'p', 'i', 'n', 'g', byte('0' + i)}
				if _, err := client.Write(msg); err != nil {
					t.Fatal(err)
				}
				server.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("message %d from the client: %q, %v (download stuck, upload must flow)", i, got, err)
				}
				time.Sleep(150 * time.Millisecond)
			}
			// The client reads again: everything the origin wrote arrives.
			server.SetDeadline(time.Time{})
			server.CloseWrite() // ends the origin's writer with an error
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("origin writer did not stop")
			}
			want := s.written.Load()
			client.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, sum, err := readPattern(client)
			if err != nil || n != want || !sum {
				t.Fatalf("client read %d of %d bytes (pattern intact: %v), %v", n, want, sum, err)
			}
			client.Close()
			select {
			case r := <-res:
				if r.Download != want || r.Upload != 5*5 {
					t.Fatalf("counts: up %d down %d, want 25 and %d", r.Upload, r.Download, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("tunnel did not end")
			}
		})
	}
}

// readPattern reads c to EOF and checks the stream's pattern.
func readPattern(c net.Conn) (n int64, ok bool, err error) {
	const pat = "0123456789abcdef"
	buf := make([]byte, 64<<10)
	ok = true
	for {
		k, rerr := c.Read(buf)
		for i := 0; i < k; i++ {
			if buf[i] != pat[(n+int64(i))%int64(len(pat))] {
				ok = false
			}
		}
		n += int64(k)
		if rerr == io.EOF {
			return n, ok, nil
		}
		if rerr != nil {
			return n, ok, rerr
		}
	}
}

// TestSlowReaderLosesNothing: a client that reads slowly, with pauses shorter
// than the idle timeout, keeps its tunnel (short idle timeout, the download
// blocked in writes again and again) and gets every byte.
func TestSlowReaderLosesNothing(t *testing.T) {
	for _, m := range parkModes {
		t.Run(m.name, func(t *testing.T) {
			client, proxyClient := pair(t)
			proxyServer, server := pair(t)
			defer client.Close()
			defer server.Close()
			res := make(chan Result, 1)
			Start(proxyClient, proxyServer, Options{Idle: time.Second, ParkAfter: m.parkAfter, OnDone: func(r Result) { res <- r }})
			data := make([]byte, 3<<20)
			for i := range data {
				data[i] = byte(i * 7)
			}
			go func() {
				server.Write(data)
				server.CloseWrite()
			}()
			var got []byte
			buf := make([]byte, 64<<10)
			client.SetReadDeadline(time.Now().Add(60 * time.Second))
			for {
				k, err := client.Read(buf)
				got = append(got, buf[:k]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				time.Sleep(40 * time.Millisecond)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("got %d bytes of %d, or not the same", len(got), len(data))
			}
			client.Close()
			select {
			case r := <-res:
				if r.Err != nil || r.Download != int64(len(data)) {
					t.Fatalf("result %+v", r)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("tunnel did not end")
			}
		})
	}
}

// TestStuckTunnelKernelMemoryBounded: with the tunnel's socket options, what
// the proxy's two sockets hold for a stuck tunnel is bounded by rcvbufCap and
// notsentLowat, not by the kernel's autotuning maxima.
func TestStuckTunnelKernelMemoryBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIP: socket options are set on Linux")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	p := Start(proxyClient, proxyServer, Options{Idle: time.Minute})
	defer p.Close()
	s := stream(server)
	s.stalled(t, 300*time.Millisecond, 30*time.Second)
	var held int64
	for _, c := range []*net.TCPConn{proxyClient, proxyServer} {
		r, w := meminfo(t, c)
		held += r + w
	}
	// The receive queue may use the whole doubled SO_RCVBUF; the send
	// queue holds notsentLowat unsent plus a little in flight.
	if limit := int64(2*rcvbufCap + 2*notsentLowat + 512<<10); held > limit {
		t.Fatalf("proxy's sockets hold %d bytes for a stuck tunnel, limit %d", held, limit)
	}
	t.Logf("proxy's sockets hold %d KiB for a stuck tunnel", held>>10)
}

// TestStuckWayCutAfterUserTimeout: a client that never reads but trickles
// bytes the other way keeps the tunnel from being idle; the kernel still cuts
// it once the client has held its window closed for TCP_USER_TIMEOUT (twice
// the idle timeout; Linux 5.11 and later).
func TestStuckWayCutAfterUserTimeout(t *testing.T) {
	if !kernelAtLeast(5, 11) {
		t.Skip("SKIP: TCP_USER_TIMEOUT covers a closed window from Linux 5.11")
	}
	client, proxyClient := pair(t)
	proxyServer, server := pair(t)
	defer client.Close()
	defer server.Close()
	const idle = time.Second
	res := make(chan Result, 1)
	Start(proxyClient, proxyServer, Options{Idle: idle, OnDone: func(r Result) { res <- r }})
	s := stream(server)
	go io.Copy(io.Discard, server)
	s.stalled(t, 300*time.Millisecond, 30*time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(15 * time.Second)
	for {
		select {
		case r := <-res:
			if errors.Is(r.Err, ErrIdle) || r.Err == nil || r.Upload == 0 {
				t.Fatalf("result %+v: want a timeout error while the upload trickled", r)
			}
			return
		case <-tick.C:
			client.Write([]byte("x"))
		case <-limit:
			t.Fatalf("a way stuck on a closed window for 15 s was not cut (TCP_USER_TIMEOUT %v)", userTimeout(idle))
		}
	}
}
