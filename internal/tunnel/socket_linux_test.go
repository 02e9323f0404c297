package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// socketOf turns c into a Socket (its descriptor duplicated, c closed).
func socketOf(t *testing.T, c *net.TCPConn) *Socket {
	t.Helper()
	s, err := SocketOf(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSocketNeverWaits(t *testing.T) {
	peer, c := pair(t)
	defer peer.Close()
	s := socketOf(t, c)
	buf := make([]byte, 64)
	if _, err := s.Read(buf); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("read of an empty socket: %v, want ErrWouldBlock", err)
	}
	peer.Write([]byte("hi"))
	var n int
	waitUntil(t, 5*time.Second, func() bool {
		k, err := s.Read(buf)
		n = k
		return err == nil
	}, "bytes readable")
	if string(buf[:n]) != "hi" {
		t.Fatalf("read %q", buf[:n])
	}
	// Writes until the peer's buffers are full, then says so with the count.
	big := make([]byte, 1<<20)
	var total int
	for i := 0; i < 200; i++ {
		k, err := s.Write(big)
		total += k
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 199 {
			t.Fatal("200 MiB written to a peer that reads nothing")
		}
	}
	if total == 0 {
		t.Fatal("nothing written")
	}
	peer.CloseWrite()
	waitUntil(t, 5*time.Second, func() bool { _, err := s.Read(buf); return err == io.EOF }, "EOF")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if s.FD() != -1 {
		t.Fatal("a closed Socket still has a descriptor")
	}
}

func TestWatcherEventsAndStop(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: Watchers need epoll (Linux)")
	}
	peer, c := pair(t)
	defer peer.Close()
	s := socketOf(t, c)
	defer s.Close()
	var ins atomic.Int32
	w, err := NewWatcher(watchFuncs{func(way int, events uint32) {
		if way == 7 && events&EventIn != 0 {
			ins.Add(1)
		}
	}, nil})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(s, 7); err != nil {
		t.Fatal(err)
	}
	peer.Write([]byte("x"))
	waitUntil(t, 5*time.Second, func() bool { return ins.Load() >= 1 }, "an input event")
	s.Read(make([]byte, 8))
	w.Stop()
	before := ins.Load()
	peer.Write([]byte("y"))
	time.Sleep(100 * time.Millisecond)
	if ins.Load() != before {
		t.Fatal("an event reached a stopped Watcher")
	}
}

func TestWatcherPanicIsContained(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: Watchers need epoll (Linux)")
	}
	var panics atomic.Int32
	for i := 0; i < 2*len(parkers.all); i++ { // every parker: round robin
		peer, c := pair(t)
		s := socketOf(t, c)
		w, err := NewWatcher(watchFuncs{func(int, uint32) { panic("watcher bug") }, func(any) { panics.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		w.Add(s, 0)
		peer.Write([]byte("x"))
		want := int32(i + 1)
		waitUntil(t, 5*time.Second, func() bool { return panics.Load() >= want }, "the panic reported")
		w.Stop()
		s.Close()
		peer.Close()
	}
	// The parkers still relay.
	c, pc := pair(t)
	ps, sv := pair(t)
	defer c.Close()
	defer sv.Close()
	p := Start(pc, ps, Options{Idle: 10 * time.Second})
	echo(t, c, sv, "still")
	p.Close()
	waitDone(t, p)
}

// TestTunnelAdoptsSockets: a tunnel of two Sockets takes their descriptors
// (nothing duplicated) and is relayed; the Sockets no longer close them.
func TestTunnelAdoptsSockets(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	client, pc := pair(t)
	ps, server := pair(t)
	defer client.Close()
	defer server.Close()
	cs, ss := socketOf(t, pc), socketOf(t, ps)
	var res Result
	p := New(cs, ss, Options{Idle: 10 * time.Second, OnDone: func(r Result) { res = r }})
	p.Serve()
	if !relaying(t, p) {
		t.Fatal("a tunnel of two Sockets is not relayed")
	}
	if cs.FD() != -1 || ss.FD() != -1 {
		t.Fatal("the Sockets still hold the descriptors the tunnel adopted")
	}
	cs.Close() // nothing: the tunnel's now
	msg := bytes.Repeat([]byte("a"), 3000)
	echo(t, client, server, string(msg))
	echo(t, server, client, "answer")
	client.Close()
	server.Close()
	waitDone(t, p)
	if res.Upload != int64(len(msg)) || res.Download != int64(len("answer")) {
		t.Fatalf("result %+v", res)
	}
}

// TestTunnelTakesOverWatchedSockets: a tunnel of Sockets a stopped Watcher
// left in its parker's set joins that parker and takes the registrations
// over (EPOLL_CTL_MOD); bytes whose events the Watcher got, and the
// stopped Watcher dropped, are relayed all the same. Sockets of two
// Watchers on different parkers leave the other set first.
func TestTunnelTakesOverWatchedSockets(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: Watchers need epoll (Linux)")
	}
	for _, two := range []bool{false, true} {
		client, pc := pair(t)
		ps, server := pair(t)
		cs, ss := socketOf(t, pc), socketOf(t, ps)
		var ins [2]atomic.Int32
		seen := watchFuncs{func(way int, events uint32) {
			if events&EventIn != 0 {
				ins[way].Add(1)
			}
		}, nil}
		wc, err := NewWatcher(seen)
		if err != nil {
			t.Fatal(err)
		}
		ws := wc
		if two {
			if len(parkers.all) < 2 {
				t.Log("one parker: the two-Watcher case is the one-Watcher case")
			}
			if ws, err = NewWatcher(seen); err != nil {
				t.Fatal(err)
			}
		}
		if err := wc.AddInput(cs, 0); err != nil {
			t.Fatal(err)
		}
		if err := ws.Add(ss, 1); err != nil {
			t.Fatal(err)
		}
		// Both sockets have bytes waiting, and their (edge-triggered)
		// events went to the Watchers, which stop without reading them.
		client.Write([]byte("hello"))
		server.Write([]byte("first answer"))
		waitUntil(t, 5*time.Second, func() bool { return ins[0].Load() > 0 && ins[1].Load() > 0 }, "both input events")
		wc.Stop()
		ws.Stop()
		var res Result
		done := make(chan struct{})
		p := New(cs, ss, Options{Idle: 10 * time.Second, OnDone: func(r Result) { res = r; close(done) }})
		p.Serve()
		if !relaying(t, p) {
			t.Fatal("a tunnel of two watched Sockets is not relayed")
		}
		if !two && p.parkID>>32 != uint64(wc.k.index) {
			t.Fatalf("the tunnel is on parker %d, its Sockets were in parker %d's set", p.parkID>>32, wc.k.index)
		}
		expect(t, server, "hello")
		expect(t, client, "first answer")
		echo(t, client, server, "more")
		echo(t, server, client, "and more")
		client.Close()
		server.Close()
		ended := func() bool {
			select {
			case <-done: // OnDone ran: res is set
				return true
			default:
				return false
			}
		}
		waitUntil(t, 5*time.Second, ended, "the tunnel's end")
		if res.Upload != int64(len("hellomore")) || res.Download != int64(len("first answerand more")) {
			t.Fatalf("two Watchers %v: result %+v", two, res)
		}
	}
}

// TestWatcherTakesOverSocket: a Socket a stopped Watcher left in its set
// is taken over by the next Watcher, on the same parker (NewWatcherOf: a
// MOD) or another one (out of the first set, then ADD): the bytes whose
// event the stopped Watcher dropped are reported to the new one. NetConn
// of such a Socket gives a working connection.
func TestWatcherTakesOverSocket(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: Watchers need epoll (Linux)")
	}
	for _, how := range []string{"same parker", "next parker", "NetConn"} {
		peer, c := pair(t)
		s := socketOf(t, c)
		var first atomic.Int32
		w1, err := NewWatcher(watchFuncs{func(int, uint32) { first.Add(1) }, nil})
		if err != nil {
			t.Fatal(err)
		}
		if err := w1.AddInput(s, 0); err != nil {
			t.Fatal(err)
		}
		peer.Write([]byte("x"))
		waitUntil(t, 5*time.Second, func() bool { return first.Load() > 0 }, "the first Watcher's event")
		w1.Stop()
		if s.parker() != w1.k {
			t.Fatalf("%s: the stopped Watcher's Socket is not in its parker's set", how)
		}
		if how == "NetConn" {
			nc, err := s.NetConn()
			if err != nil {
				t.Fatal(err)
			}
			expect(t, nc, "x")
			nc.Close()
			peer.Close()
			continue
		}
		var second atomic.Int32
		h := watchFuncs{func(way int, ev uint32) {
			if way == 3 && ev&EventIn != 0 {
				second.Add(1)
			}
		}, nil}
		var w2 *Watcher
		if how == "same parker" {
			w2, err = NewWatcherOf(h, s)
			if err == nil && w2.k != w1.k {
				t.Fatal("NewWatcherOf did not choose the Socket's parker")
			}
		} else {
			w2, err = NewWatcher(h)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w2.AddInput(s, 3); err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		waitUntil(t, 5*time.Second, func() bool { return second.Load() > 0 }, how+": the waiting byte reported to the second Watcher")
		if s.parker() != w2.k {
			t.Fatalf("%s: the Socket is not in the second Watcher's set", how)
		}
		buf := make([]byte, 8)
		if n, err := s.Read(buf); n != 1 || err != nil {
			t.Fatalf("%s: read %d, %v", how, n, err)
		}
		w2.Remove(s)
		if s.parker() != nil {
			t.Fatalf("%s: Remove left the Socket marked in a set", how)
		}
		w2.Stop()
		s.Close()
		peer.Close()
	}
}

// expect reads exactly want from c (5 s at most).
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q (%v), want %q", got, err, want)
	}
	c.SetReadDeadline(time.Time{})
}

// TestTunnelOfClosedSocket: a Socket closed before its tunnel started ends
// the tunnel at once, its result delivered, the other descriptor closed.
func TestTunnelOfClosedSocket(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: the relay needs epoll (Linux)")
	}
	client, pc := pair(t)
	ps, server := pair(t)
	defer client.Close()
	defer server.Close()
	cs, ss := socketOf(t, pc), socketOf(t, ps)
	cs.Close()
	p := Start(cs, ss, Options{Idle: 10 * time.Second})
	waitDone(t, p)
	seesClose(t, server, "server")
}

// watchFuncs is a Watched made of two functions.
type watchFuncs struct {
	event   func(way int, events uint32)
	onPanic func(any)
}

func (f watchFuncs) SocketEvent(way int, events uint32) { f.event(way, events) }

func (f watchFuncs) SocketPanic(v any) {
	if f.onPanic != nil {
		f.onPanic(v)
	}
}

// TestWatchedHandOverHostilePeers: clients that reset, close, or send twice
// while their sockets sit in a stopped Watcher's set, before the tunnel
// takes the registration over. Every tunnel ends (or relays every byte),
// and afterwards no descriptor and no parker table entry is left.
func TestWatchedHandOverHostilePeers(t *testing.T) {
	if !CanWatch() {
		t.Skip("SKIP: Watchers need epoll (Linux)")
	}
	tables := func() int {
		n := 0
		for _, k := range parkers.all {
			k.mu.Lock()
			n += len(k.table)
			k.mu.Unlock()
		}
		return n
	}
	NewWatcher(watchFuncs{func(int, uint32) {}, nil}) // the parkers exist before counting
	fds0, tab0 := openFDs(t), tables()
	const rounds = 60
	for i := 0; i < rounds; i++ {
		client, pc := pair(t)
		ps, server := pair(t)
		cs, ss := socketOf(t, pc), socketOf(t, ps)
		w, err := NewWatcher(watchFuncs{func(int, uint32) {}, nil})
		if err != nil {
			t.Fatal(err)
		}
		if w.AddInput(cs, 0) != nil || w.Add(ss, 1) != nil {
			t.Fatal("add")
		}
		how := i % 3
		switch how {
		case 0: // reset before the tunnel exists
			client.SetLinger(0)
			client.Close()
		case 1: // FIN before the tunnel exists
			client.Write([]byte("last words"))
			client.Close()
		case 2: // twice, before and after the hand-over
			client.Write([]byte("one"))
		}
		w.Stop()
		done := make(chan Result, 1)
		p := New(cs, ss, Options{Idle: 10 * time.Second, OnDone: func(r Result) { done <- r }})
		p.Serve()
		switch how {
		case 1:
			expect(t, server, "last words")
		case 2:
			client.Write([]byte("two"))
			expect(t, server, "onetwo")
			client.Close()
		}
		server.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d (%d): the tunnel did not end", i, how)
		}
	}
	waitUntil(t, 5*time.Second, func() bool { return openFDs(t) <= fds0 && tables() <= tab0 },
		"every descriptor closed and every parker entry gone")
}
