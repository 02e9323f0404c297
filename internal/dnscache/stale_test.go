package dnscache

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/dnscache/dnstest"
	"golang.org/x/net/dns/dnsmessage"
)

// TestServeStale: once its answer has expired, a name whose servers fail is
// given the expired answer (RFC 8767), kept for StaleTTL; the servers are
// asked again after that, and a fresh answer replaces it. Past ServeStale
// after the first expiry, or with ServeStale 0, the failure shows. NXDOMAIN
// is an answer, not a failure: it is not covered up.
func TestServeStale(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	c, clk, cn, _ := newCache(t, srv, Options{ServeStale: time.Hour})
	lookup(t, c, "www.example")

	srv.Set("www.example", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
	clk.add(61 * time.Second)
	if addrs, err := lookup(t, c, "www.example"); err != nil || !slices.Equal(addrs, []netip.Addr{a1}) {
		t.Fatalf("servers failing after the TTL: %v %v, want the stale answer", addrs, err)
	}
	if cn.get(ResultStale) != 1 {
		t.Fatalf("results %v", cn.m)
	}
	q := srv.Queries("www.example")
	clk.add(StaleTTL / 2) // not yet the last tenth of StaleTTL (a prefetch)
	if addrs, err := lookup(t, c, "www.example"); err != nil || addrs[0] != a1 || srv.Queries("www.example") != q {
		t.Fatalf("within StaleTTL: %v %v, %d queries (had %d): want the stale answer from the cache", addrs, err, srv.Queries("www.example"), q)
	}
	clk.add(StaleTTL/2 + time.Second)
	if addrs, err := lookup(t, c, "www.example"); err != nil || addrs[0] != a1 || srv.Queries("www.example") == q {
		t.Fatalf("after StaleTTL: %v %v, %d queries: want the servers asked, then the stale answer", addrs, err, srv.Queries("www.example"))
	}

	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 60})
	clk.add(StaleTTL + time.Second)
	if addrs, err := lookup(t, c, "www.example"); err != nil || addrs[0] != a2 {
		t.Fatalf("servers back: %v %v, want the fresh answer", addrs, err)
	}

	// The limit runs from the first expiry, and stale answers do not extend it.
	srv.Set("www.example", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
	clk.add(61 * time.Second)  // a2 expired
	for i := 0; i < 200; i++ { // 200 × 31 s > 1 h
		if _, err := lookup(t, c, "www.example"); err != nil {
			if i < 100 { // the hour is 116 StaleTTLs of 31 s
				t.Fatalf("stale answer %d: %v", i, err)
			}
			break
		}
		if i == 199 {
			t.Fatal("a stale answer more than ServeStale after the expiry")
		}
		clk.add(StaleTTL + time.Second)
	}

	// NXDOMAIN is an answer.
	srv.Set("gone.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	lookup(t, c, "gone.example")
	srv.Set("gone.example", dnstest.Record{NX: true})
	clk.add(61 * time.Second)
	if _, err := lookup(t, c, "gone.example"); !isNotFound(err) {
		t.Fatalf("NXDOMAIN after the TTL: %v, want not found (not the stale answer)", err)
	}

	// ServeStale 0: the failure shows.
	off, clk2, _, _ := newCache(t, srv, Options{})
	srv.Set("off.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	lookup(t, off, "off.example")
	srv.Set("off.example", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
	clk2.add(61 * time.Second)
	if _, err := lookup(t, off, "off.example"); err == nil {
		t.Fatal("ServeStale 0: an answer from a failing server")
	}
}

// TestServeStaleSlowServer: a server that does not answer: a lookup gets
// the stale answer after StaleAnswerWait, not the whole query deadline, and
// so do the connections that share its query.
func TestServeStaleSlowServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	c, clk, cn, _ := newCache(t, srv, Options{ServeStale: time.Hour, Timeout: 10 * time.Second})
	lookup(t, c, "www.example")
	srv.Set("www.example", dnstest.Record{Drop: true})
	clk.add(61 * time.Second)
	start := time.Now()
	results := make(chan error, 4)
	for range 4 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			addrs, err := c.LookupNetIP(ctx, "ip", "www.example")
			if err == nil && (len(addrs) != 1 || addrs[0] != a1) {
				err = context.DeadlineExceeded
			}
			results <- err
		}()
	}
	for range 4 {
		if err := <-results; err != nil {
			t.Fatalf("lookup with a silent server: %v", err)
		}
	}
	if d := time.Since(start); d < StaleAnswerWait-100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("stale answers after %v, want about %v", d, StaleAnswerWait)
	}
	if n := cn.get(ResultStale); n < 3 {
		t.Fatalf("results %v: want the 3 that shared the query counted stale", cn.m)
	}
}
