// Package upstream owns the way out: resolving a destination name
// (upstream.hosts first, then DNS), refusing addresses the proxy must never
// reach (loopback, private, link-local, multicast, unspecified, unless listed
// in upstream.allow_private), and dialing exactly the address that was checked
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
}

// Resolve returns the address to dial for a normalised name or an IP literal
// (name "" and ip set). It fails with ErrDNS or ErrPrivate.
func (d *Dialer) Resolve(ctx context.Context, name string, ip netip.Addr) (netip.Addr, error) {
	if ip.IsValid() {
		ip = ip.Unmap()
		if !d.Permitted(ip) {
			return netip.Addr{}, fmt.Errorf("%w: %v", ErrPrivate, ip)
		}
		return ip, nil
	}
	if a, ok := d.Hosts[name]; ok {
		if !d.Permitted(a) {
			return netip.Addr{}, fmt.Errorf("%w: %s is %v (upstream.hosts)", ErrPrivate, name, a)
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
	return netip.Addr{}, fmt.Errorf("%w: %s resolves to %v", ErrPrivate, name, refused)
}

// Permitted reports whether a is a public destination, or is listed in
// allow_private.
func (d *Dialer) Permitted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range d.AllowPrivate {
		if p.Contains(a) {
			return true
		}
	}
	return !Refused(a)
}

// refusedRanges are special-purpose ranges beyond what netip classifies
// (RFC 6890 and successors): a proxy that dials them can be used to reach the
// inside of the network or the proxy's own host.
var refusedRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001::/23"),      // IETF protocol assignments (Teredo etc.)
	netip.MustParsePrefix("2002::/16"),      // 6to4: embeds arbitrary IPv4
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
}

// Refused reports whether a is loopback, private, link-local, multicast,
// unspecified or another special-purpose address.
func Refused(a netip.Addr) bool {
	a = a.Unmap()
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
// ErrUnavailable.
func (d *Dialer) Dial(ctx context.Context, addr netip.Addr, port uint16) (*net.TCPConn, error) {
	// No TCP keepalive: an idle tunnel ends at limits.idle_timeout, and the
	// dial saves four setsockopt calls.
	nd := net.Dialer{Timeout: d.Timeout, KeepAlive: -1}
	c, err := nd.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return c.(*net.TCPConn), nil
}
