package dnscache

import (
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/dnscache/dnstest"
	"golang.org/x/net/dns/dnsmessage"
)

// waitCount waits (bounded) until get() reaches want.
func waitCount(t *testing.T, what string, get func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, get(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPrefetch: a hit in the last tenth of the TTL asks again in the
// background (once, however many hits), and the new answer replaces the old
// one before it expires: the name is never waited for. A hit earlier in the
// TTL asks nothing; so does one on the event loops' Peek, which prefetches
// too.
func TestPrefetch(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 100})
	c, clk, cn, _ := newCache(t, srv, Options{})
	lookup(t, c, "www.example")
	if q := srv.Queries("www.example"); q != 2 {
		t.Fatalf("%d queries, want 2", q)
	}
	clk.add(85 * time.Second) // 15 s left of 100: not yet
	lookup(t, c, "www.example")
	time.Sleep(20 * time.Millisecond)
	if q := srv.Queries("www.example"); q != 2 {
		t.Fatalf("%d queries with 15 s of 100 left, want 2 (no prefetch yet)", q)
	}

	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 100})
	clk.add(6 * time.Second) // 9 s left: prefetch
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if addrs, err := lookup(t, c, "www.example"); err != nil || len(addrs) != 1 {
				t.Errorf("lookup during the prefetch: %v %v", addrs, err)
			}
		}()
	}
	wg.Wait()
	waitCount(t, "prefetched", func() int { return cn.get(ResultPrefetched) }, 1)
	if q := srv.Queries("www.example"); q != 4 {
		t.Fatalf("%d queries after 20 hits in the last tenth, want 4 (one prefetch)", q)
	}
	clk.add(20 * time.Second) // the old answer has expired; the new one holds
	if addrs, ok, err := c.Peek("www.example"); !ok || err != nil || !slices.Equal(addrs, []netip.Addr{a2}) {
		t.Fatalf("Peek after the old TTL: %v %v %v, want the prefetched answer", addrs, ok, err)
	}
	if q := srv.Queries("www.example"); q != 4 || cn.get(ResultResolved) != 1 {
		t.Fatalf("%d queries, results %v: the name was waited for", q, cn.m)
	}

	// Peek (on an event loop) prefetches as a lookup does. The prefetched
	// answer came at 91 s for 100 s: at 182 s, 9 s are left.
	clk.add(71 * time.Second)
	if _, ok, _ := c.Peek("www.example"); !ok {
		t.Fatal("Peek in the last tenth: not a hit")
	}
	waitCount(t, "prefetched", func() int { return cn.get(ResultPrefetched) }, 2)
	if q := srv.Queries("www.example"); q != 6 {
		t.Fatalf("%d queries, want 6", q)
	}
}

// TestPrefetchNot: no prefetch for a short TTL, a negative answer, or when
// every query slot is taken; a prefetch that fails keeps the old answer until
// it expires, then the name is asked as usual.
func TestPrefetchNot(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("short.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 5})
	srv.Set("nx.example", dnstest.Record{NX: true, SOAMin: 20})
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 100})
	c, clk, cn, _ := newCache(t, srv, Options{NegativeTTL: 20 * time.Second})
	lookup(t, c, "short.example")
	lookup(t, c, "nx.example")
	lookup(t, c, "www.example")
	clk.add(4900 * time.Millisecond) // short: 0.1 s left of 5; nx: 15.1 s of 20
	lookup(t, c, "short.example")
	clk.add(14 * time.Second) // nx: 1.1 s left of 20
	lookup(t, c, "nx.example")
	time.Sleep(20 * time.Millisecond)
	if q := srv.Queries("short.example") + srv.Queries("nx.example"); q != 4 {
		t.Fatalf("%d queries: a short TTL or a negative answer was prefetched", q)
	}

	// Every slot taken: no prefetch, and nothing waits for one.
	for range cap(c.slots) {
		c.slots <- struct{}{}
	}
	clk.add(72 * time.Second) // www: 9.1 s left of 100
	start := time.Now()
	if _, ok, _ := c.Peek("www.example"); !ok {
		t.Fatal("Peek: not a hit")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Peek took %v with every slot taken", d)
	}
	for range cap(c.slots) {
		<-c.slots
	}
	time.Sleep(20 * time.Millisecond)
	if q := srv.Queries("www.example"); q != 2 {
		t.Fatalf("%d queries with every slot taken, want 2", q)
	}

	// A prefetch that fails: the old answer stays until it expires.
	srv.Set("www.example", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
	lookup(t, c, "www.example") // a slot is free now: prefetch, which fails
	waitCount(t, "prefetch_failed", func() int { return cn.get(ResultPrefetchFailed) }, 1)
	if addrs, err := lookup(t, c, "www.example"); err != nil || addrs[0] != a1 {
		t.Fatalf("after a failed prefetch: %v %v, want the old answer", addrs, err)
	}
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 100})
	clk.add(10 * time.Second) // expired
	if addrs, err := lookup(t, c, "www.example"); err != nil || addrs[0] != a2 {
		t.Fatalf("after the TTL: %v %v, want a fresh answer", addrs, err)
	}
	if cn.get(ResultPrefetched) != 0 || c.Len() != 3 {
		t.Fatalf("results %v, %d names", cn.m, c.Len())
	}
}

// TestPrefetchDeadServer: names in use whose server has gone silent, all hit
// in the last tenth of their TTL: prefetches take at most a quarter of the
// query slots, each held for the whole Timeout, so a connection's lookup of
// another name still gets a slot at once and its answer; once the silent
// queries end, the slots and goroutines are back.
func TestPrefetchDeadServer(t *testing.T) {
	srv := dnstest.Start(t)
	const names = 40
	name := func(i int) string { return "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example" }
	for i := range names {
		srv.Set(name(i), dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 100})
	}
	srv.Set("fresh.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 100})
	c, clk, _, _ := newCache(t, srv, Options{MaxInFlight: 8, Timeout: 2 * time.Second})
	for i := range names {
		lookup(t, c, name(i))
	}
	g0 := runtime.NumGoroutine()
	for i := range names {
		srv.Set(name(i), dnstest.Record{Drop: true})
	}
	clk.add(95 * time.Second)
	for i := range names {
		if _, ok, _ := c.Peek(name(i)); !ok {
			t.Fatalf("Peek %s: not a hit", name(i))
		}
	}
	if n := c.prefetching.Load(); n != 2 {
		t.Fatalf("%d prefetches running, want 2 (a quarter of 8 slots)", n)
	}
	start := time.Now()
	if addrs, err := lookup(t, c, "fresh.example"); err != nil || addrs[0] != a2 {
		t.Fatalf("a lookup while prefetches hang: %v %v", addrs, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a lookup waited %v behind hanging prefetches", d)
	}
	waitCount(t, "prefetches ended", func() int { return 2 - int(c.prefetching.Load()) }, 2)
	waitCount(t, "slots free", func() int { return cap(c.slots) - len(c.slots) }, cap(c.slots))
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the prefetches", runtime.NumGoroutine(), g0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
