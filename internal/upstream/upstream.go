// Package upstream owns the way out: resolving a destination name
// (upstream.hosts first, then DNS), refusing addresses the proxy must never
// reach (loopback, private, link-local, multicast, unspecified, and their
// IPv6 forms that carry an IPv4 address, unless listed in
// upstream.allow_private), and dialing exactly the address that was checked
// — never a second lookup (SPEC §5.4).
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

var (
	// ErrDNS: the name did not resolve (Proxy-Status error=dns_error).
	ErrDNS = errors.New("dns error")
	// ErrPrivate: every address of the name is in a refused range
	// (Proxy-Status error=destination_ip_prohibited).
	ErrPrivate = errors.New("destination address prohibited")
	// ErrUnavailable: the dial failed (Proxy-Status error=destination_unavailable).
	ErrUnavailable = errors.New("destination unavailable")
)

// Resolver looks names up. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer resolves, checks and dials. It is immutable; build a new one when the
// config changes.
type Dialer struct {
	Hosts        map[string]netip.Addr // normalised name → address, checked before DNS
	AllowPrivate []netip.Prefix
	Timeout      time.Duration
	Resolver     Resolver // nil: net.DefaultResolver
	// DialConn, when set, is how Dial connects (tests: in-memory
	// connections, no sockets). nil: a TCP dial.
	DialConn func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// Peeker is a Resolver that can answer from what it holds, without
// waiting: ok false means a lookup would be needed (*dnscache.Cache).
type Peeker interface {
	Peek(host string) (addrs []netip.Addr, ok bool, err error)
}

// AtOnce reports whether Resolve answers name (normalised) or ip without a
// DNS lookup: an IP literal, or a name in Hosts. What may wait for DNS is
// kept off the event loops.
func (d *Dialer) AtOnce(name string, ip netip.Addr) bool {
	if ip.IsValid() {
		return true
	}
	_, hosted := d.Hosts[name]
	return hosted
}

// ResolveNow is Resolve without waiting, for the event loops: an IP
// literal, a name in Hosts, or a name the Resolver holds a fresh answer
// for (a Peeker). ok false: a DNS lookup is needed; call Resolve where
// waiting is allowed.
func (d *Dialer) ResolveNow(name string, ip netip.Addr) (addr netip.Addr, ok bool, err error) {
	if d.AtOnce(name, ip) {
		addr, err = d.Resolve(context.Background(), name, ip)
		return addr, true, err
	}
	p, peeks := d.Resolver.(Peeker)
	if !peeks {
		return netip.Addr{}, false, nil
	}
	addrs, ok, lerr := p.Peek(name)
	if !ok {
		return netip.Addr{}, false, nil
	}
	addr, err = d.pick(name, addrs, lerr)
	return addr, true, err
}

// Resolve returns the address to dial for a normalised name or an IP literal
// (name "" and ip set). It fails with ErrDNS or ErrPrivate.
func (d *Dialer) Resolve(ctx context.Context, name string, ip netip.Addr) (netip.Addr, error) {
	if ip.IsValid() {
		ip = ip.Unmap()
		if !d.Permitted(ip) {
			return netip.Addr{}, fmt.Errorf("%w: %s", ErrPrivate, describe(ip))
		}
		return ip, nil
	}
	if a, ok := d.Hosts[name]; ok {
		if !d.Permitted(a) {
			return netip.Addr{}, fmt.Errorf("%w: %s is %s (upstream.hosts)", ErrPrivate, name, describe(a))
		}
		return a, nil
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	addrs, err := r.LookupNetIP(ctx, "ip", name)
	return d.pick(name, addrs, err)
}

// pick chooses the address to dial among a lookup's answers: the first
// permitted one, IPv4 first.
func (d *Dialer) pick(name string, addrs []netip.Addr, err error) (netip.Addr, error) {
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("%w: %s: %v", ErrDNS, name, err)
	}
	// The first permitted address wins; IPv4 first for reachability.
	var refused netip.Addr
	for _, want4 := range []bool{true, false} {
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is4() != want4 {
				continue
			}
			if d.Permitted(a) {
				return a, nil
			}
			refused = a
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: %s resolves to %s", ErrPrivate, name, describe(refused))
}

// Permitted reports whether a is a public destination, or is listed in
// allow_private. An address of the well-known NAT64 prefix 64:ff9b::/96
// stands for the IPv4 address in its last 32 bits, and the IPv4 rules apply
// to that address: permitted if it is public or allow_private lists it (or
// lists the IPv6 form). See Refused for the other IPv4-embedding ranges.
func (d *Dialer) Permitted(a netip.Addr) bool {
	a = a.Unmap()
	if d.allowed(a) {
		return true
	}
	if v4, ok := nat64(a); ok {
		return d.allowed(v4) || !Refused(v4)
	}
	return !Refused(a)
}

func (d *Dialer) allowed(a netip.Addr) bool {
	for _, p := range d.AllowPrivate {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IPv6 ranges whose addresses carry an IPv4 address (RFC 6890 registry).
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052: IPv4 in the last 32 bits
	nat64LocalUse  = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215: operator's own NAT64 prefixes
	v4Compatible   = netip.MustParsePrefix("::/96")           // RFC 4291 §2.5.5.1, deprecated
	v4Translated   = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 SIIT
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056: IPv4 in bits 16-47
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380: server in bits 32-63, client in the last 32 bits inverted
)

// nat64 returns the IPv4 address a well-known-prefix NAT64 address stands for.
func nat64(a netip.Addr) (netip.Addr, bool) {
	if !nat64WellKnown.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// Embedded returns the IPv4 address that an IPv6 address of an
// IPv4-embedding range carries, for messages: the translated address of
// 64:ff9b::/96, the last 32 bits of ::/96 and ::ffff:0:0:0/96, the router of
// a 6to4 address, the client of a Teredo address. A local-use NAT64 address
// (64:ff9b:1::/48) has none: where the IPv4 address sits depends on a prefix
// length only its operator knows.
func Embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64WellKnown.Contains(a), v4Translated.Contains(a),
		v4Compatible.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return netip.AddrFrom4([4]byte(b[12:])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case teredo.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

// describe is a for error messages, with the IPv4 address it embeds.
func describe(a netip.Addr) string {
	if v4, ok := Embedded(a); ok {
		return fmt.Sprintf("%v (embeds %v)", a, v4)
	}
	return a.String()
}

// refusedRanges are special-purpose ranges beyond what netip classifies
// (RFC 6890 and successors): a proxy that dials them can be used to reach the
// inside of the network or the proxy's own host.
//
// The IPv4-embedding ranges other than 64:ff9b::/96 are refused whatever
// IPv4 address they carry: none is a destination on the Internet today
// (IPv4-compatible and 6to4 addresses are deprecated, IPv4-translated ones
// live inside a SIIT domain, Teredo is a client-side tunnel, and the place of
// the IPv4 address in a local-use NAT64 address is the operator's choice),
// while the host's own tunnels or translators would deliver them to the IPv4
// address inside — private ones included.
var refusedRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	v4Compatible,                           // ::a.b.c.d, deprecated (:: and ::1 too)
	v4Translated,                           // ::ffff:0:a.b.c.d, SIIT
	nat64LocalUse,                          // local-use NAT64
	netip.MustParsePrefix("100::/64"),      // discard-only
	netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments (Teredo etc.)
	sixToFour,                              // 6to4: embeds arbitrary IPv4
	netip.MustParsePrefix("fec0::/10"),     // deprecated site-local
}

// Refused reports whether a is loopback, private, link-local, multicast,
// unspecified or another special-purpose address. An IPv4-mapped address is
// judged as IPv4, a NAT64 address of 64:ff9b::/96 by the IPv4 address it
// stands for, and the other IPv4-embedding ranges are refused whole.
func Refused(a netip.Addr) bool {
	a = a.Unmap()
	if v4, ok := nat64(a); ok {
		return Refused(v4)
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range refusedRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Dial connects to addr:port within the timeout. The error wraps
// ErrUnavailable. Without DialConn the connection is a *net.TCPConn (the
// tunnel's kernel copy and parking need one).
func (d *Dialer) Dial(ctx context.Context, addr netip.Addr, port uint16) (net.Conn, error) {
	if d.DialConn != nil {
		if d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		c, err := d.DialConn(ctx, netip.AddrPortFrom(addr, port))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return c, nil
	}
	// No TCP keepalive: an idle tunnel ends at limits.idle_timeout, and the
	// dial saves four setsockopt calls.
	nd := net.Dialer{Timeout: d.Timeout, KeepAlive: -1}
	c, err := nd.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err) // %w: a timeout stays visible (net.Error)
	}
	return c.(*net.TCPConn), nil
}
