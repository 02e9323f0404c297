package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Tunnels whose client stops reading while the origin streams (the "hostile
// clients" issue, defect 8): the tunnel closes once no byte moved either way
// for idle_timeout, and until then the client's own bytes still reach the
// origin. docs/operations.md, "Tunnels whose peer stops reading".

var stuckConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
tls { hello_timeout = "2s" }
upstream {
  hosts = { "stream.test" = "127.0.0.1" }
  allow_private = ["127.0.0.0/8"]
}
limits { idle_timeout = "2s" }
segment "office" {
  sources = ["127.0.0.1/32"]
  default = "allow"
}
`

// stuckOrigin answers each connection by reading the ClientHello the proxy
// replays, then writing as fast as it can until a write fails; what it reads
// after the hello goes to got. written is the total it wrote.
type stuckOrigin struct {
	port    int
	written atomic.Int64
	ended   chan error    // a write failed (the tunnel closed)
	got     chan []byte   // bytes read after the hello
	conns   *atomic.Int64 // connections accepted
}

func newStuckOrigin(t *testing.T, helloLen int) *stuckOrigin {
	o := &stuckOrigin{ended: make(chan error, 1), got: make(chan []byte, 64)}
	_, o.port, o.conns = RawOrigin(t, func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, helloLen)); err != nil {
			o.ended <- err
			return
		}
		c.SetReadDeadline(time.Time{})
		go func() {
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				if k > 0 {
					o.got <- append([]byte(nil), buf[:k]...)
				}
				if err != nil {
					return
				}
			}
		}()
		buf := bytes.Repeat([]byte("s"), 64<<10)
		for {
			k, err := c.Write(buf)
			o.written.Add(int64(k))
			if err != nil {
				o.ended <- err
				return
			}
		}
	})
	return o
}

// stalled waits until no origin write completed for quiet: every buffer
// between the origin and the client is full.
func (o *stuckOrigin) stalled(t *testing.T, quiet, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last, since := o.written.Load(), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("origin still writing after %v (%d bytes)", within, o.written.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if w := o.written.Load(); w != last {
			last, since = w, time.Now()
		}
	}
}

// openStuck opens a CONNECT tunnel to the origin and sends a ClientHello;
// the client never reads.
func openStuck(t *testing.T, p *Proc, o *stuckOrigin, hello []byte) net.Conn {
	t.Helper()
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "stream.test:"+itoa(o.port))
	if code != 200 {
		t.Fatalf("CONNECT: %d", code)
	}
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	return c
}

// The client never reads; the origin streams. With idle_timeout = "2s" the
// tunnel closes soon after the buffers are full, and its event carries the
// byte counts and the reason.
func TestTunnelStuckReaderClosed(t *testing.T) {
	hello := pxGoHello(t, "stream.test")
	o := newStuckOrigin(t, len(hello))
	p := Start(t, stuckConfig, nil)
	c := openStuck(t, p, o, hello)
	defer c.Close()
	o.stalled(t, 300*time.Millisecond, 30*time.Second)
	// Closed by idle_timeout (2 s, checked every 0.5 s) after the stall; the
	// bound leaves room for a busy machine, and is far below "never".
	select {
	case <-o.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("tunnel with a client that never reads still open 15 s after the stall (idle_timeout 2s)")
	}
	ev := p.WaitEvent(t, 10*time.Second, pxEventWith("tls.client.server_name", "stream.test", "event.action", "allow"))
	src, _ := strconv.ParseInt(ev.Str("source.bytes"), 10, 64)
	dst, _ := strconv.ParseInt(ev.Str("destination.bytes"), 10, 64)
	if src != int64(len(hello)) || dst <= 0 || dst > o.written.Load() {
		t.Fatalf("event bytes: source %d (want %d), destination %d (origin wrote %d); event %v", src, len(hello), dst, o.written.Load(), ev)
	}
	if ev.Str("error.message") != "tunnel idle" {
		t.Fatalf("error.message %q, want \"tunnel idle\"; event %v", ev.Str("error.message"), ev)
	}
	// The client's end is closed too.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
		t.Fatalf("client: %v", err)
	}
}

// While the download is stuck (the client does not read), the client's own
// bytes still reach the origin, several times, well within idle_timeout.
func TestTunnelStuckReaderUploadFlows(t *testing.T) {
	hello := pxGoHello(t, "stream.test")
	o := newStuckOrigin(t, len(hello))
	p := Start(t, stuckConfig, nil)
	c := openStuck(t, p, o, hello)
	defer c.Close()
	o.stalled(t, 300*time.Millisecond, 30*time.Second)
	for i := 0; i < 3; i++ {
		msg := []byte("from the client " + itoa(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		var got []byte
		deadline := time.After(5 * time.Second)
		for !bytes.Equal(got, msg) {
			select {
			case b := <-o.got:
				got = append(got, b...)
				if len(got) > len(msg) {
					t.Fatalf("origin got %q, want %q", got, msg)
				}
			case <-deadline:
				t.Fatalf("message %d: origin got %q within 5 s, want %q (the upload stopped with the download)", i, got, msg)
			}
		}
		// Longer than the proxy's park interval between messages.
		time.Sleep(300 * time.Millisecond)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
