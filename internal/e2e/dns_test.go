package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/dnscache/dnstest"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsConfig: the explicit proxy, extra blocks, names resolved through dns
// (a loopback server) within a 1 s dial_timeout, everything allowed from
// loopback.
func dnsConfig(dns *dnstest.Server, extra string) string {
	return fmt.Sprintf(`
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
%s
upstream {
  dial_timeout  = "1s"
  dns_servers   = [%q]
  allow_private = ["127.0.0.1/32"]
}
segment "office" {
  sources = ["127.0.0.0/8"]
  default = "allow"
}
`, extra, dns.Addr.String())
}

// Names not in upstream.hosts are resolved through upstream.dns_servers (a
// loopback DNS server here) and kept for their TTL: CONNECT and
// transparent connections to one name make one query pair, NXDOMAIN is a
// 502 dns_error kept for the SOA minimum, and a server that never answers
// costs its own connections dial_timeout while others are served.
func TestDNSCache(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "api.dns.test")
	dns := dnstest.Start(t)
	lo := netip.MustParseAddr("127.0.0.1")
	dns.Set("api.dns.test", dnstest.Record{Addrs: []netip.Addr{lo}, TTL: 300})
	dns.Set("gone.dns.test", dnstest.Record{NX: true, SOAMin: 60})
	dns.Set("hang.dns.test", dnstest.Record{Drop: true})
	p := Start(t, dnsConfig(dns, fmt.Sprintf(`
transparent {
  https_listen = "{{HTTPS}}"
  https_port   = %d
}`, origin.Port)), nil)
	target := fmt.Sprintf("api.dns.test:%d", origin.Port)

	for i := range 3 {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target)
		if code != 200 {
			t.Fatalf("CONNECT %d: %d", i, code)
		}
		if body, err := HTTPSGet(c, "api.dns.test", ca.Pool, "/x"); err != nil || !strings.Contains(body, "hello from api.dns.test") {
			t.Fatalf("through tunnel %d: %q %v", i, body, err)
		}
	}
	c := DialFrom(t, "127.0.0.3", p.HTTPSAddr)
	if body, err := HTTPSGet(c, "api.dns.test", ca.Pool, "/t"); err != nil || !strings.Contains(body, "hello from api.dns.test") {
		t.Fatalf("transparent: %q %v", body, err)
	}
	if q := dns.Queries("api.dns.test"); q != 2 {
		t.Fatalf("%d queries for 4 connections to one name, want 2 (A and AAAA once)", q)
	}

	for i := range 2 {
		if _, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", "gone.dns.test:443"); code != 502 {
			t.Fatalf("NXDOMAIN %d: %d, want 502", i, code)
		}
	}
	if q := dns.Queries("gone.dns.test"); q != 2 {
		t.Fatalf("%d queries for NXDOMAIN twice, want 2 (kept for the SOA minimum)", q)
	}

	// A dead server: its connection fails at dial_timeout; another name is
	// served meanwhile.
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	var hangCode int
	go func() {
		defer wg.Done()
		_, _, hangCode = Connect(t, p.ProxyAddr, "127.0.0.4", "hang.dns.test:443")
	}()
	time.Sleep(100 * time.Millisecond)
	if _, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target); code != 200 {
		t.Fatalf("CONNECT while another name's server hangs: %d", code)
	}
	wg.Wait()
	if d := time.Since(start); hangCode != 502 || d > 5*time.Second {
		t.Fatalf("dead DNS: %d after %v, want 502 within dial_timeout", hangCode, d)
	}

	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool { return e.Str("destination.domain") == "gone.dns.test" })
	if r := ev.Str("event.reason"); r != "dns_error" {
		t.Errorf("NXDOMAIN event reason %q, want dns_error", r)
	}
	want := map[string]float64{
		`egress_dns_lookups_total{result="resolved"}`: 2, // api and gone
		`egress_dns_lookups_total{result="hit"}`:      5, // api: 5 lookups, all but the first; gone: the second
		`egress_dns_lookups_total{result="failed"}`:   1, // hang (its query ends a moment after its caller gave up)
		`egress_dns_cache_entries`:                    2,
	}
	var wrong []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wrong = wrong[:0]
		for series, w := range want {
			if got := metricValue(t, p, series); got != w {
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %v", series, got, w))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wrong {
		t.Error(w)
	}
}

// A flood of CONNECTs to unique names (random subdomains of an allowed
// wildcard) whose DNS server never answers: each gets 502 dns_error within
// dial_timeout, at most 256 names are asked at once, nothing is kept, the
// proxy's fds and goroutines return to their level, and a cached name is
// served throughout.
func TestHostileDNSFlood(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "api.dns.test")
	dns := dnstest.Start(t)
	dns.Set("api.dns.test", dnstest.Record{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, TTL: 300})
	const n = 300
	for i := range n {
		dns.Set(fmt.Sprintf("u%d.flood.test", i), dnstest.Record{Drop: true})
	}
	p := Start(t, dnsConfig(dns, ""), nil)
	target := fmt.Sprintf("api.dns.test:%d", origin.Port)
	if _, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target); code != 200 {
		t.Fatalf("before: %d", code)
	}
	base := hxResources(t, p)

	start := time.Now()
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, code := Connect(t, p.ProxyAddr, "127.0.0.5", fmt.Sprintf("u%d.flood.test:443", i))
			codes <- code
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if _, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target); code != 200 {
		t.Fatalf("a cached name during the flood: %d", code)
	}
	// The proxy's descriptors during the flood: the clients' and at most
	// one DNS socket per query in flight (256 names, a UDP socket each).
	peak := 0.0
	for i := 0; i < 10; i++ {
		peak = max(peak, hxResources(t, p).fds)
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 502 {
			t.Fatalf("a CONNECT whose DNS hangs got %d, want 502", code)
		}
	}
	t.Logf("flood of %d names: %v, peak fds %v (before %v)", n, time.Since(start), peak, base.fds)
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("the flood took %v with dial_timeout 1s", d)
	}
	if peak > base.fds+n+256+20 {
		t.Errorf("%v fds during the flood (%v before): more than the clients' plus one per DNS query in flight", peak, base.fds)
	}
	// A query ends at its own deadline, a moment after its first
	// caller's (set a little earlier): wait for the last ones.
	var entries, failed float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		entries = hxMetric(t, p, "egress_dns_cache_entries")
		failed = hxMetric(t, p, `egress_dns_lookups_total{result="failed"}`)
		if (entries == 1 && failed == n) || time.Now().After(deadline) {
			break
		}
	}
	if entries != 1 {
		t.Errorf("egress_dns_cache_entries = %v after the flood, want 1 (failures are not kept)", entries)
	}
	if failed != n {
		t.Errorf(`egress_dns_lookups_total{result="failed"} = %v, want %d`, failed, n)
	}
	hxWaitSettled(t, p, base, 5, 10, 10*time.Second)
	hxNoPanics(t, p)
	hxNoCrashLog(t, p)
}

// A DNS outage after a name's answer expired: by default the name is still
// served with the expired answer (serve-stale, RFC 8767), counted as
// result="stale"; with dns_serve_stale = "0s" the connection gets 502
// dns_error as before.
func TestDNSServeStale(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "api.dns.test")
	lo := netip.MustParseAddr("127.0.0.1")
	target := fmt.Sprintf("api.dns.test:%d", origin.Port)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) {
			dns := dnstest.Start(t)
			dns.Set("api.dns.test", dnstest.Record{Addrs: []netip.Addr{lo}, TTL: 1})
			extra := ""
			if off {
				extra = `dns_serve_stale = "0s"`
			}
			p := Start(t, strings.Replace(dnsConfig(dns, ""), "upstream {", "upstream {\n  "+extra, 1), nil)
			c, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target)
			if code != 200 {
				t.Fatalf("CONNECT: %d", code)
			}
			c.Close()
			dns.Set("api.dns.test", dnstest.Record{RCode: dnsmessage.RCodeServerFailure})
			time.Sleep(1500 * time.Millisecond) // the 1 s TTL is over
			c, _, code = Connect(t, p.ProxyAddr, "127.0.0.2", target)
			if off {
				if code != 502 {
					t.Fatalf("servers failing, dns_serve_stale off: %d, want 502", code)
				}
				return
			}
			if code != 200 {
				t.Fatalf("servers failing after the TTL: %d, want 200 from the expired answer", code)
			}
			if body, err := HTTPSGet(c, "api.dns.test", ca.Pool, "/stale"); err != nil || !strings.Contains(body, "hello from api.dns.test") {
				t.Fatalf("through the tunnel: %q %v", body, err)
			}
			if v := metricValue(t, p, `egress_dns_lookups_total{result="stale"}`); v != 1 {
				t.Fatalf(`egress_dns_lookups_total{result="stale"} = %v, want 1`, v)
			}
		})
	}
}
