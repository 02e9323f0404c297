package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func TestResolve(t *testing.T) {
	d := &Dialer{
		Hosts:        map[string]netip.Addr{"intranet.example": netip.MustParseAddr("10.1.2.3"), "origin.test": netip.MustParseAddr("127.0.0.1")},
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")},
		Resolver: fakeResolver{
			"public.example":  addrs("2001:db8::1", "93.184.216.34"),
			"private.example": addrs("192.168.1.1", "fd00::1"),
			"mixed.example":   addrs("127.0.0.1", "93.184.216.35"),
			"rebind.example":  addrs("169.254.169.254"),
		},
	}
	tests := []struct {
		name string
		ip   string
		want string
		err  error
	}{
		{name: "intranet.example", want: "10.1.2.3"},
		{name: "origin.test", err: ErrPrivate},
		{name: "public.example", want: "93.184.216.34"},
		{name: "private.example", err: ErrPrivate},
		{name: "mixed.example", want: "93.184.216.35"},
		{name: "rebind.example", err: ErrPrivate},
		{name: "nxdomain.example", err: ErrDNS},
		{ip: "127.0.0.1", err: ErrPrivate},
		{ip: "::1", err: ErrPrivate},
		{ip: "0.0.0.0", err: ErrPrivate},
		{ip: "224.0.0.1", err: ErrPrivate},
		{ip: "fe80::1", err: ErrPrivate},
		{ip: "100.64.1.1", err: ErrPrivate},
		{ip: "::ffff:127.0.0.1", err: ErrPrivate},
		{ip: "10.1.2.200", want: "10.1.2.200"},
		{ip: "10.1.3.1", err: ErrPrivate},
		{ip: "8.8.8.8", want: "8.8.8.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name+tt.ip, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			got, err := d.Resolve(context.Background(), tt.name, ip)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %v, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestDialLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	d := &Dialer{Timeout: 2 * time.Second}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	c, err := d.Dial(context.Background(), netip.MustParseAddr("127.0.0.1"), port)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	if _, err := d.Dial(context.Background(), netip.MustParseAddr("127.0.0.1"), port); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dial to closed port: %v", err)
	}
}

// IPv6 forms of IPv4 addresses (the "hostile clients" issue, defect 5): the
// IPv4 rules apply to the address a NAT64 address of 64:ff9b::/96 stands
// for; the other IPv4-embedding ranges are refused whole.
func TestEmbeddedIPv4(t *testing.T) {
	plain := &Dialer{}
	allow := &Dialer{AllowPrivate: []netip.Prefix{
		netip.MustParsePrefix("10.1.2.0/24"),         // the IPv4 form: permits its NAT64 form too
		netip.MustParsePrefix("64:ff9b::a9fe:0/112"), // an IPv6 form: permits exactly that
		netip.MustParsePrefix("2002:a01:203::/48"),
	}}
	tests := []struct {
		ip       string
		embedded string // "" = none
		plain    bool   // permitted without allow_private
		allow    bool   // permitted with it
	}{
		// The literals.
		{"64:ff9b::a9fe:a9fe", "169.254.169.254", false, true},
		{"64:ff9b::7f00:1", "127.0.0.1", false, false},
		{"::ffff:0:7f00:1", "127.0.0.1", false, false},
		{"::7f00:1", "127.0.0.1", false, false},
		{"64:ff9b::a00:1", "10.0.0.1", false, false},
		// Well-known NAT64 of a public address: how IPv6-only networks
		// reach IPv4 sites.
		{"64:ff9b::808:808", "8.8.8.8", true, true},
		{"64:ff9b::5db8:d822", "93.184.216.34", true, true},
		{"64:ff9b::6440:1", "100.64.0.1", false, false},
		{"64:ff9b::", "0.0.0.0", false, false},
		{"64:ff9b::ffff:ffff", "255.255.255.255", false, false},
		{"64:ff9b::a01:203", "10.1.2.3", false, true},
		// Outside the /96: not NAT64, and 64:ff9b::/32 beyond it is not special.
		{"64:ff9b:0:1::a00:1", "", true, true},
		// Local-use NAT64: the operator chose where the IPv4 address sits.
		{"64:ff9b:1::808:808", "", false, false},
		{"64:ff9b:1:ffff::a00:1", "", false, false},
		// IPv4-compatible (deprecated) and IPv4-translated (SIIT): refused
		// whole, public or not.
		{"::808:808", "8.8.8.8", false, false},
		{"::a01:203", "10.1.2.3", false, false},
		{"::ffff:0:808:808", "8.8.8.8", false, false},
		{"::", "", false, false},
		{"::1", "", false, false},
		// IPv4-mapped is IPv4.
		{"::ffff:a01:203", "", false, true},
		{"::ffff:808:808", "", true, true},
		// 6to4 (router in bits 16-47) and Teredo (client inverted in the
		// last 32 bits): refused whole; allow_private may list the IPv6 form.
		{"2002:a00:1::1", "10.0.0.1", false, false},
		{"2002:808:808::1", "8.8.8.8", false, false},
		{"2002:a01:203::1", "10.1.2.3", false, true},
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1", false, false},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", false, false},
		// Ordinary IPv6.
		{"2606:4700::1111", "", true, true},
		{"fd00::1", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			a := netip.MustParseAddr(tt.ip)
			v4, ok := Embedded(a)
			if got := ""; ok {
				got = v4.String()
				if got != tt.embedded {
					t.Errorf("Embedded = %s, want %q", got, tt.embedded)
				}
			} else if tt.embedded != "" {
				t.Errorf("Embedded: none, want %s", tt.embedded)
			}
			if got := plain.Permitted(a); got != tt.plain {
				t.Errorf("Permitted = %v, want %v", got, tt.plain)
			}
			if got := allow.Permitted(a); got != tt.allow {
				t.Errorf("Permitted with allow_private = %v, want %v", got, tt.allow)
			}
			if Refused(a) == tt.plain {
				t.Errorf("Refused = %v", Refused(a))
			}
		})
	}
}

// A name whose answer (DNS64, or upstream.hosts) is a NAT64 form of a
// private address is refused, and the message names the embedded address.
func TestResolveEmbedded(t *testing.T) {
	d := &Dialer{
		Hosts: map[string]netip.Addr{"meta.example": netip.MustParseAddr("64:ff9b::7f00:1")},
		Resolver: fakeResolver{
			"dns64.example":  addrs("64:ff9b::a00:1"),
			"public.example": addrs("64:ff9b::5db8:d822"),
			"mixed.example":  addrs("64:ff9b::a9fe:a9fe", "64:ff9b::808:808"),
		},
	}
	for _, tt := range []struct {
		name, ip, want, err string
	}{
		{name: "meta.example", err: "destination address prohibited: meta.example is 64:ff9b::7f00:1 (embeds 127.0.0.1) (upstream.hosts)"},
		{name: "dns64.example", err: "destination address prohibited: dns64.example resolves to 64:ff9b::a00:1 (embeds 10.0.0.1)"},
		{name: "public.example", want: "64:ff9b::5db8:d822"},
		{name: "mixed.example", want: "64:ff9b::808:808"},
		{ip: "64:ff9b::a9fe:a9fe", err: "destination address prohibited: 64:ff9b::a9fe:a9fe (embeds 169.254.169.254)"},
	} {
		t.Run(tt.name+tt.ip, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			got, err := d.Resolve(context.Background(), tt.name, ip)
			if tt.err != "" {
				if !errors.Is(err, ErrPrivate) || err.Error() != tt.err {
					t.Fatalf("got %v, %v; want %s", got, err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// TestAtOnce: an address or a name in hosts needs no lookup; any other
// name does.
func TestAtOnce(t *testing.T) {
	d := &Dialer{Hosts: map[string]netip.Addr{"intranet.test": netip.MustParseAddr("10.1.2.3")}}
	for _, c := range []struct {
		name string
		ip   netip.Addr
		want bool
	}{
		{"", netip.MustParseAddr("93.184.216.34"), true},
		{"intranet.test", netip.Addr{}, true},
		{"example.com", netip.Addr{}, false},
	} {
		if got := d.AtOnce(c.name, c.ip); got != c.want {
			t.Errorf("AtOnce(%q, %v) = %v, want %v", c.name, c.ip, got, c.want)
		}
	}
}

// peeker holds fresh answers for some names.
type peeker struct {
	fakeResolver
	held map[string][]netip.Addr
}

func (p peeker) Peek(host string) ([]netip.Addr, bool, error) {
	a, ok := p.held[host]
	return a, ok, nil
}

// ResolveNow answers an IP, a hosts name or a name the resolver holds,
// with Resolve's checks and choice; anything else is "not now".
func TestResolveNow(t *testing.T) {
	d := &Dialer{
		Hosts:    map[string]netip.Addr{"h.test": netip.MustParseAddr("192.0.2.7")},
		Resolver: peeker{held: map[string][]netip.Addr{"held.test": {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.9")}}},
	}
	for _, tt := range []struct {
		name string
		ip   netip.Addr
		want netip.Addr
		ok   bool
	}{
		{"", netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"), true},
		{"h.test", netip.Addr{}, netip.MustParseAddr("192.0.2.7"), true},
		{"held.test", netip.Addr{}, netip.MustParseAddr("192.0.2.9"), true}, // the private one skipped, IPv4 first
		{"other.test", netip.Addr{}, netip.Addr{}, false},
	} {
		got, ok, err := d.ResolveNow(tt.name, tt.ip)
		if ok != tt.ok || got != tt.want || (ok && err != nil) {
			t.Errorf("%s %v: %v %v %v, want %v %v", tt.name, tt.ip, got, ok, err, tt.want, tt.ok)
		}
	}
	d.Resolver = fakeResolver{}
	if _, ok, _ := d.ResolveNow("held.test", netip.Addr{}); ok {
		t.Error("a resolver that cannot peek answered now")
	}
}
