package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/dnscache/dnstest"
	"golang.org/x/net/dns/dnsmessage"
)

var (
	a1 = netip.MustParseAddr("192.0.2.1")
	a2 = netip.MustParseAddr("192.0.2.2")
	a6 = netip.MustParseAddr("2001:db8::1")
)

// clock is a settable time for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counts records the Observe calls.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) observe(r string) { c.mu.Lock(); defer c.mu.Unlock(); c.m[r]++ }
func (c *counts) get(r string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[r] }

// sysStub stands for Go's resolver.
type sysStub struct {
	calls atomic.Int32
	addrs []netip.Addr
	err   error
}

func (s *sysStub) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	s.calls.Add(1)
	return s.addrs, s.err
}

// newCache returns a cache asking srv, with empty system files, a settable
// clock, its counts and its system stub.
func newCache(t *testing.T, srv *dnstest.Server, opt Options) (*Cache, *clock, *counts, *sysStub) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("192.0.2.50 fromhosts.example alias.example\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "resolv.conf"), nil, 0o644)
	cn := &counts{m: map[string]int{}}
	sys := &sysStub{err: &net.DNSError{Err: "no such host", IsNotFound: true}}
	if srv != nil && opt.Servers == nil {
		opt.Servers = []netip.AddrPort{srv.Addr}
	}
	if opt.Size == 0 {
		opt.Size = 100
	}
	opt.Observe, opt.System = cn.observe, sys
	opt.Hosts, opt.ResolvConf = filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	c := New(opt)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	c.now = clk.now
	return c, clk, cn, sys
}

func lookup(t *testing.T, c *Cache, name string) ([]netip.Addr, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.LookupNetIP(ctx, "ip", name)
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// An answer is kept for its TTL, then asked again; MaxTTL caps a long TTL.
func TestKeptForTTL(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("www.example", dnstest.Record{Addrs: []netip.Addr{a1, a6}, TTL: 60})
	srv.Set("long.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 86400})
	c, clk, cn, _ := newCache(t, srv, Options{MaxTTL: 5 * time.Minute})

	for i := range 5 {
		addrs, err := lookup(t, c, "www.example")
		if err != nil || !slices.Equal(addrs, []netip.Addr{a1, a6}) {
			t.Fatalf("lookup %d: %v %v", i, addrs, err)
		}
	}
	if q := srv.Queries("www.example"); q != 2 { // one A, one AAAA
		t.Fatalf("%d queries for 5 lookups within the TTL, want 2", q)
	}
	if cn.get(ResultResolved) != 1 || cn.get(ResultHit) != 4 {
		t.Fatalf("results %v", cn.m)
	}
	clk.add(61 * time.Second)
	lookup(t, c, "www.example")
	if q := srv.Queries("www.example"); q != 4 {
		t.Fatalf("%d queries after the TTL, want 4", q)
	}

	lookup(t, c, "long.example")
	clk.add(4 * time.Minute) // 60 s of 300 left: not yet the last tenth (prefetch)
	lookup(t, c, "long.example")
	if q := srv.Queries("long.example"); q != 2 {
		t.Fatalf("long.example asked again within dns_max_ttl: %d", q)
	}
	clk.add(61 * time.Second)
	lookup(t, c, "long.example")
	if q := srv.Queries("long.example"); q != 4 {
		t.Fatalf("long.example: a 1-day TTL must be cut to dns_max_ttl: %d queries", q)
	}
	if c.Len() != 2 {
		t.Fatalf("Len %d", c.Len())
	}
}

// TTL 0 is never kept (only shared while in flight).
func TestZeroTTLNotKept(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("zero.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 0})
	c, _, _, _ := newCache(t, srv, Options{})
	lookup(t, c, "zero.example")
	lookup(t, c, "zero.example")
	if q := srv.Queries("zero.example"); q != 4 {
		t.Fatalf("%d queries, want 4", q)
	}
	if c.Len() != 0 {
		t.Fatalf("Len %d", c.Len())
	}
}

// NXDOMAIN and NODATA are kept for the SOA's minimum, at most
// NegativeTTL; without an SOA, not at all (RFC 2308).
func TestNegative(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("nx.example", dnstest.Record{NX: true, SOAMin: 600})
	srv.Set("nodata.example", dnstest.Record{SOAMin: 10})
	srv.Set("nosoa.example", dnstest.Record{NX: true})
	c, clk, _, _ := newCache(t, srv, Options{NegativeTTL: 30 * time.Second})

	for _, n := range []string{"nx.example", "nodata.example", "nosoa.example"} {
		for range 2 {
			if addrs, err := lookup(t, c, n); !isNotFound(err) || addrs != nil {
				t.Fatalf("%s: %v %v, want not found", n, addrs, err)
			}
		}
	}
	if srv.Queries("nx.example") != 2 || srv.Queries("nodata.example") != 2 {
		t.Fatalf("negative answers not kept: %d %d", srv.Queries("nx.example"), srv.Queries("nodata.example"))
	}
	if q := srv.Queries("nosoa.example"); q != 4 {
		t.Fatalf("NXDOMAIN without SOA kept: %d queries", q)
	}
	clk.add(11 * time.Second)
	lookup(t, c, "nodata.example")
	lookup(t, c, "nx.example")
	if srv.Queries("nodata.example") != 4 || srv.Queries("nx.example") != 2 {
		t.Fatalf("after 11 s: nodata %d (want 4), nx %d (want 2)", srv.Queries("nodata.example"), srv.Queries("nx.example"))
	}
	clk.add(20 * time.Second)
	lookup(t, c, "nx.example")
	if q := srv.Queries("nx.example"); q != 4 {
		t.Fatalf("NXDOMAIN kept past NegativeTTL: %d", q)
	}
}

// A thousand connections asking for one name at once make one query pair.
func TestOneQueryInFlight(t *testing.T) {
	srv := dnstest.Start(t)
	// TTL 0: a lookup that began after the answer would ask again, so all
	// begin together (start) and the answer takes a second.
	srv.Set("busy.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 0, Delay: time.Second})
	c, _, cn, _ := newCache(t, srv, Options{})
	var wg sync.WaitGroup
	var bad atomic.Int32
	start := make(chan struct{})
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			addrs, err := lookup(t, c, "busy.example")
			if err != nil || len(addrs) != 1 || addrs[0] != a1 {
				bad.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d lookups failed", bad.Load())
	}
	if q := srv.Queries("busy.example"); q != 2 {
		t.Fatalf("%d queries for 1000 concurrent lookups, want 2", q)
	}
	if cn.get(ResultShared)+cn.get(ResultResolved) != 1000 {
		t.Fatalf("results %v", cn.m)
	}
}

// A caller that gives up does not cancel the query others wait for, and
// its own wait ends at its deadline.
func TestCallerGivesUp(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("slow.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Delay: 300 * time.Millisecond})
	c, _, _, _ := newCache(t, srv, Options{})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.LookupNetIP(short, "ip", "slow.example"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short lookup: %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("a caller past its deadline waited %v", d)
	}
	// The query went on under its own deadline: the next caller gets its
	// answer without a second query.
	if addrs, err := lookup(t, c, "slow.example"); err != nil || addrs[0] != a1 {
		t.Fatalf("%v %v", addrs, err)
	}
	if q := srv.Queries("slow.example"); q != 2 {
		t.Fatalf("%d queries, want 2", q)
	}
}

// Only the name asked and its CNAME chain count; a record for another
// name, and a reply with the wrong ID, are ignored.
func TestForeignAndForgedIgnored(t *testing.T) {
	srv := dnstest.Start(t)
	evil := netip.MustParseAddr("198.51.100.66")
	srv.Set("cdn.example", dnstest.Record{CNAME: "edge.cdn.example", Addrs: []netip.Addr{a2}, TTL: 120, Foreign: evil})
	srv.Set("forged.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Forged: evil})
	c, _, _, _ := newCache(t, srv, Options{})
	addrs, err := lookup(t, c, "cdn.example")
	if err != nil || !slices.Equal(addrs, []netip.Addr{a2}) {
		t.Fatalf("cdn.example: %v %v, want only the CNAME target's address", addrs, err)
	}
	addrs, err = lookup(t, c, "forged.example")
	if err != nil || !slices.Equal(addrs, []netip.Addr{a1}) {
		t.Fatalf("forged.example: %v %v, want the reply with the right ID", addrs, err)
	}
	if addrs, err := lookup(t, c, "foreign.example"); err == nil {
		t.Fatalf("foreign.example was cached from another name's answer: %v", addrs)
	}
}

// A truncated UDP reply is asked again over TCP.
func TestTruncatedOverTCP(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("big.example", dnstest.Record{Addrs: []netip.Addr{a1, a6}, TTL: 60, Truncate: true})
	c, _, _, _ := newCache(t, srv, Options{})
	addrs, err := lookup(t, c, "big.example")
	if err != nil || !slices.Equal(addrs, []netip.Addr{a1, a6}) {
		t.Fatalf("%v %v", addrs, err)
	}
	if srv.TCPQueries() != 2 {
		t.Fatalf("%d TCP queries, want 2", srv.TCPQueries())
	}
}

// SERVFAIL from the first server: the second is asked. A failure is never
// kept: the next lookup asks again.
func TestServerFailure(t *testing.T) {
	bad, good := dnstest.Start(t), dnstest.Start(t)
	bad.Set("x.example", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
	good.Set("x.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	c, _, _, _ := newCache(t, nil, Options{Servers: []netip.AddrPort{bad.Addr, good.Addr}})
	if addrs, err := lookup(t, c, "x.example"); err != nil || addrs[0] != a1 {
		t.Fatalf("%v %v", addrs, err)
	}

	only, _, cn, _ := newCache(t, bad, Options{})
	for range 2 {
		if _, err := lookup(t, only, "x.example"); err == nil || isNotFound(err) {
			t.Fatalf("SERVFAIL everywhere: %v, want a failure that is not 'not found'", err)
		}
	}
	if cn.get(ResultFailed) != 2 || only.Len() != 0 {
		t.Fatalf("failures %d, Len %d", cn.get(ResultFailed), only.Len())
	}
}

// A server that never answers: the lookup fails at the caller's deadline,
// and the cache stays usable.
func TestDeadServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("hang.example", dnstest.Record{Drop: true})
	srv.Set("ok.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	c, _, _, _ := newCache(t, srv, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.LookupNetIP(ctx, "ip", "hang.example"); err == nil {
		t.Fatal("a dropped query answered")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("lookup took %v past a 300 ms deadline", d)
	}
	if _, err := lookup(t, c, "ok.example"); err != nil {
		t.Fatal(err)
	}
}

// The table never holds more than Size names, however many are asked.
func TestBoundedSize(t *testing.T) {
	srv := dnstest.Start(t)
	c, _, _, _ := newCache(t, srv, Options{Size: 8})
	for i := range 50 {
		n := "n" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example"
		srv.Set(n, dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 600})
		if _, err := lookup(t, c, n); err != nil {
			t.Fatal(err)
		}
		if c.Len() > 8 {
			t.Fatalf("Len %d > 8 after %d names", c.Len(), i+1)
		}
	}
}

// At most MaxInFlight queries run at once; the rest wait for a slot and
// fail at their deadline without a socket.
func TestInFlightBound(t *testing.T) {
	srv := dnstest.Start(t)
	c, _, _, _ := newCache(t, srv, Options{MaxInFlight: 4})
	var wg sync.WaitGroup
	for i := range 40 {
		n := "h" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example"
		srv.Set(n, dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Delay: 100 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c.LookupNetIP(ctx, "ip", n)
		}()
	}
	wg.Wait()
	if m := srv.MaxInFlight(); m > 8 { // 4 names, A and AAAA each
		t.Fatalf("%d queries in flight at once, want at most 8", m)
	}
}

// /etc/hosts and reserved names need no query; a name without a dot and
// localhost go to the system resolver.
func TestHostsReservedSystem(t *testing.T) {
	srv := dnstest.Start(t)
	c, _, cn, sys := newCache(t, srv, Options{})
	if addrs, err := lookup(t, c, "alias.example"); err != nil || addrs[0] != netip.MustParseAddr("192.0.2.50") {
		t.Fatalf("hosts: %v %v", addrs, err)
	}
	if _, err := lookup(t, c, "banned.invalid"); !isNotFound(err) {
		t.Fatalf(".invalid: %v", err)
	}
	sys.addrs, sys.err = []netip.Addr{a2}, nil
	for _, n := range []string{"intranet", "localhost", "db.localhost"} {
		if addrs, err := lookup(t, c, n); err != nil || addrs[0] != a2 {
			t.Fatalf("%s: %v %v", n, addrs, err)
		}
	}
	if q := srv.Queries("alias.example") + srv.Queries("banned.invalid") + srv.Queries("intranet"); q != 0 {
		t.Fatalf("%d queries", q)
	}
	if cn.get(ResultHosts) != 2 || cn.get(ResultSystem) != 3 || sys.calls.Load() != 3 {
		t.Fatalf("results %v, system calls %d", cn.m, sys.calls.Load())
	}
}

// A name the servers do not know that the search list could complete is
// asked of the system resolver; its "not found" is kept.
func TestSearchListFallback(t *testing.T) {
	srv := dnstest.Start(t)
	c, _, cn, sys := newCache(t, nil, Options{})
	c.conf = &watched[sysConf]{path: os.DevNull, parse: func([]byte) sysConf {
		return sysConf{servers: []netip.AddrPort{srv.Addr}, search: []string{"svc.cluster.local"}, ndots: 5, timeout: time.Second, attempts: 1}
	}}
	sys.addrs, sys.err = []netip.Addr{a2}, nil
	if addrs, err := lookup(t, c, "api.team"); err != nil || addrs[0] != a2 {
		t.Fatalf("%v %v", addrs, err)
	}
	if srv.Queries("api.team") != 2 || sys.calls.Load() != 1 {
		t.Fatalf("queries %d, system %d", srv.Queries("api.team"), sys.calls.Load())
	}
	// A name with more dots than ndots-1 is answered by the servers alone.
	if _, err := lookup(t, c, "a.b.c.d.e.example"); !isNotFound(err) || sys.calls.Load() != 1 {
		t.Fatalf("%v, system %d", err, sys.calls.Load())
	}
	_ = cn
}

// "ip4" and "ip6" filter the answer.
func TestNetworks(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("dual.example", dnstest.Record{Addrs: []netip.Addr{a1, a6}, TTL: 60})
	c, _, _, _ := newCache(t, srv, Options{})
	ctx := context.Background()
	if a, err := c.LookupNetIP(ctx, "ip6", "dual.example"); err != nil || !slices.Equal(a, []netip.Addr{a6}) {
		t.Fatalf("ip6: %v %v", a, err)
	}
	if a, err := c.LookupNetIP(ctx, "ip4", "dual.example"); err != nil || !slices.Equal(a, []netip.Addr{a1}) {
		t.Fatalf("ip4: %v %v", a, err)
	}
}

func TestParseResolvConf(t *testing.T) {
	c := parseResolvConf([]byte(`# comment
nameserver 10.0.0.53
nameserver 2001:db8::53 ; trailing
nameserver not-an-ip
nameserver 10.0.0.54
nameserver 10.0.0.55
search Ns.Svc.Cluster.Local. svc.cluster.local
options ndots:5 timeout:2 attempts:3 rotate
`))
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("10.0.0.54:53")}
	if !slices.Equal(c.servers, want) || !slices.Equal(c.search, []string{"ns.svc.cluster.local", "svc.cluster.local"}) ||
		c.ndots != 5 || c.timeout != 2*time.Second || c.attempts != 3 {
		t.Fatalf("%+v", c)
	}
	if d := parseResolvConf(nil); d.ndots != 1 || d.attempts != 2 || d.timeout != 5*time.Second || d.servers != nil {
		t.Fatalf("defaults %+v", d)
	}
}

func TestParseHosts(t *testing.T) {
	h := parseHosts([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost # c\nbad line\n10.1.2.3 Intranet.Example. db\n"))
	if !slices.Equal(h["localhost"], []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}) ||
		h["intranet.example"][0] != netip.MustParseAddr("10.1.2.3") || h["db"] == nil || len(h) != 4 {
		t.Fatalf("%v", h)
	}
}

// Peek answers only from what is at hand: never a query, never a wait.
func TestPeek(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("p.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60})
	srv.Set("slow.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Delay: 300 * time.Millisecond})
	c, clk, _, _ := newCache(t, srv, Options{})
	if _, ok, _ := c.Peek("p.example"); ok {
		t.Fatal("Peek answered a name never looked up")
	}
	lookup(t, c, "p.example")
	if a, ok, err := c.Peek("p.example"); !ok || err != nil || a[0] != a1 {
		t.Fatalf("after a lookup: %v %v %v", a, ok, err)
	}
	clk.add(61 * time.Second)
	if _, ok, _ := c.Peek("p.example"); ok {
		t.Fatal("Peek answered from an expired entry")
	}
	go lookup(t, c, "slow.example")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, ok, _ := c.Peek("slow.example"); ok || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Peek on a name in flight: ok %v after %v", ok, time.Since(start))
	}
	if _, ok, err := c.Peek("x.invalid"); !ok || !isNotFound(err) {
		t.Fatalf(".invalid: %v %v", ok, err)
	}
	if a, ok, _ := c.Peek("fromhosts.example"); !ok || len(a) != 1 {
		t.Fatalf("hosts: %v %v", a, ok)
	}
	if q := srv.Queries("p.example"); q != 2 {
		t.Fatalf("%d queries", q)
	}
}

// A table full of names in flight (a flood of names whose server hangs)
// does not grow: the extra lookups are answered without being kept.
func TestFullOfInFlight(t *testing.T) {
	srv := dnstest.Start(t)
	c, _, _, _ := newCache(t, srv, Options{Size: 4})
	var wg sync.WaitGroup
	for i := range 12 {
		n := "f" + string(rune('a'+i)) + ".example"
		srv.Set(n, dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Delay: 200 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := lookup(t, c, n); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if c.Len() > 4 {
		t.Fatalf("Len %d with Size 4", c.Len())
	}
	wg.Wait()
	if c.Len() > 4 {
		t.Fatalf("Len %d with Size 4", c.Len())
	}
}

// openFDs counts this process's descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// A hostile server: junk datagrams, a forged and a doubled reply, a reply
// larger than asked for, a TCP answer announced and never sent. Each
// lookup ends with the right answer or a failure within its deadline,
// nothing hostile is kept, another name is served meanwhile, and the
// sockets and goroutines are gone afterwards.
func TestHostileServer(t *testing.T) {
	srv := dnstest.Start(t)
	evil := netip.MustParseAddr("198.51.100.66")
	srv.Set("junk.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Garbage: 50, Twice: true, Forged: evil})
	srv.Set("huge.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Many: 200})
	srv.Set("stall.example", dnstest.Record{Addrs: []netip.Addr{a1}, TTL: 60, Truncate: true, TCPStall: true})
	srv.Set("fine.example", dnstest.Record{Addrs: []netip.Addr{a2}, TTL: 60})
	c, _, cn, _ := newCache(t, srv, Options{Timeout: 500 * time.Millisecond})
	fds, goroutines := openFDs(t), runtime.NumGoroutine()

	if addrs, err := lookup(t, c, "junk.example"); err != nil || !slices.Equal(addrs, []netip.Addr{a1}) {
		t.Fatalf("junk: %v %v", addrs, err)
	}
	var wg sync.WaitGroup
	for _, n := range []string{"huge.example", "stall.example"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			if addrs, err := c.LookupNetIP(ctx, "ip", n); err == nil {
				t.Errorf("%s answered %v", n, addrs)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("%s took %v past a 500 ms deadline", n, d)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if addrs, err := lookup(t, c, "fine.example"); err != nil || addrs[0] != a2 {
		t.Fatalf("another name while the hostile ones hang: %v %v", addrs, err)
	}
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); c.Len() != 2 || openFDs(t) > fds || runtime.NumGoroutine() > goroutines+4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the lookups: Len %d (want 2: junk and fine), fds %d (before %d), goroutines %d (before %d)",
				c.Len(), openFDs(t), fds, runtime.NumGoroutine(), goroutines)
		}
	}
	if cn.get(ResultFailed) != 2 {
		t.Fatalf("results %v", cn.m)
	}
}
