package upstream

import (
	"net/netip"
	"testing"
)

// BenchmarkPermitted: the address check run once per dial.
func BenchmarkPermitted(b *testing.B) {
	d := &Dialer{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	var as []netip.Addr
	for _, s := range []string{"93.184.216.34", "10.1.2.3", "127.0.0.1", "2606:4700::1111", "64:ff9b::808:808", "64:ff9b::a9fe:a9fe", "2002:a00:1::1", "fd00::1"} {
		as = append(as, netip.MustParseAddr(s))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Permitted(as[i%len(as)])
	}
}
