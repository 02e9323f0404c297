package tunnel

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// panicConn panics on Read: a stand-in for a bug in a copy.
type panicConn struct{ net.Conn }

func (panicConn) Read([]byte) (int, error) { panic("read bug") }

// A panic in a tunnel's copy or in its OnDone ends that tunnel, reported to
// OnPanic; the process goes on.
func TestPanicEndsTheTunnelOnly(t *testing.T) {
	a, b := net.Pipe()
	c, d := net.Pipe()
	defer b.Close()
	defer d.Close()
	var panics atomic.Int32
	p := Start(panicConn{a}, c, Options{Idle: time.Minute, ParkAfter: -1,
		OnPanic: func(any) { panics.Add(1) },
		OnDone:  func(Result) { panic("OnDone bug") }})
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel did not end after its copy panicked")
	}
	if n := panics.Load(); n != 2 {
		t.Fatalf("OnPanic called %d times, want 2 (the copy, then OnDone)", n)
	}
}
