package dnscache

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/egress-proxy/egress/internal/dnscache/dnstest"
)

// BenchmarkLookup: a cached name, one asked every time (TTL 0) of a DNS
// server on loopback (the cheapest a query can be), and the same name
// through Go's resolver (what every lookup cost before the cache) sent to
// the same server.
//
//	go test -run NONE -bench Lookup -benchmem ./internal/dnscache
func BenchmarkLookup(b *testing.B) {
	srv := dnstest.Start(b)
	lo := netip.MustParseAddr("192.0.2.1")
	srv.Set("kept.example", dnstest.Record{Addrs: []netip.Addr{lo}, TTL: 3600})
	srv.Set("asked.example", dnstest.Record{Addrs: []netip.Addr{lo}, TTL: 0})
	c := New(Options{Servers: []netip.AddrPort{srv.Addr}, Size: 100})
	ctx := context.Background()
	goRes := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Addr.String())
	}}
	b.Run("go-resolver", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := goRes.LookupNetIP(ctx, "ip", "asked.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, name := range []string{"kept.example", "asked.example"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.LookupNetIP(ctx, "ip", name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
