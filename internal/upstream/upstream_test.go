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
