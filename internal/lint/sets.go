package lint

import (
	"net/netip"
	"strings"

	"github.com/egress-proxy/egress/internal/rules"
)

// Set algebra over what rules match. Every answer here is exact or errs on
// the side that reports less: "covers" and "disjoint" answer true only when
// certain, "overlaps" may answer true when unsure.

const (
	kExact uint8 = 1 << iota // the base name itself
	kSub                     // every strict subdomain of the base
)

// domSet is one domain list (a category or a rule's inline domains), with
// the matcher's semantics: a name matches if it is a base with kExact, or has
// a strict parent suffix with kSub.
type domSet struct {
	name  string // "category social-media" or "inline domains"
	pats  []rules.DomainPattern
	kinds map[string]uint8
	under map[string]bool // every strict parent suffix of a base: "there is something below"
	// dynamic: more names arrive at run time (a category with feeds); pats
	// is a lower bound, so nothing may be concluded from what it lacks.
	dynamic bool
}

func newDomSet(name string, pats []rules.DomainPattern, dynamic bool) *domSet {
	s := &domSet{name: name, pats: pats, dynamic: dynamic, kinds: make(map[string]uint8, len(pats)), under: map[string]bool{}}
	for _, p := range pats {
		var k uint8
		if p.Exact {
			k |= kExact
		}
		if p.Sub {
			k |= kSub
		}
		s.kinds[p.Base] |= k
		for rest := p.Base; ; {
			dot := strings.IndexByte(rest, '.')
			if dot < 0 {
				break
			}
			rest = rest[dot+1:]
			s.under[rest] = true
		}
	}
	return s
}

// domains is the union of several sets: a rule's domain matcher.
type domains []*domSet

// matchesName: does the union match name exactly as the proxy would?
func (d domains) matchesName(name string) bool {
	for _, s := range d {
		if s.kinds[name]&kExact != 0 {
			return true
		}
	}
	return d.subAbove(name, false)
}

// subAbove: does some set hold a kSub pattern at a strict parent of name
// (or at name itself, when self), i.e. match every strict subdomain of name?
func (d domains) subAbove(name string, self bool) bool {
	rest := name
	if !self {
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			return false
		}
		rest = rest[dot+1:]
	}
	for {
		for _, s := range d {
			if s.kinds[rest]&kSub != 0 {
				return true
			}
		}
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			return false
		}
		rest = rest[dot+1:]
	}
}

// covers: is every name p matches also matched by d? Exact: the subdomains
// of a base are infinitely many, so only a kSub pattern at or above the base
// covers them.
func (d domains) covers(p rules.DomainPattern) bool {
	if p.Exact && !d.matchesName(p.Base) {
		return false
	}
	if p.Sub && !d.subAbove(p.Base, true) {
		return false
	}
	return true
}

// overlaps: is some name matched by both p and d?
func (d domains) overlaps(p rules.DomainPattern) bool {
	if p.Exact && d.matchesName(p.Base) {
		return true
	}
	if p.Sub {
		if d.subAbove(p.Base, true) {
			return true
		}
		for _, s := range d {
			if s.under[p.Base] {
				return true
			}
		}
	}
	return false
}

// each calls f with every pattern of the union until f returns false.
func (d domains) each(f func(set *domSet, p rules.DomainPattern) bool) {
	for _, s := range d {
		for _, p := range s.pats {
			if !f(s, p) {
				return
			}
		}
	}
}

// dynamic: some set of the union grows at run time.
func (d domains) dynamic() bool {
	for _, s := range d {
		if s.dynamic {
			return true
		}
	}
	return false
}

func (d domains) empty() bool {
	for _, s := range d {
		if len(s.pats) > 0 || s.dynamic {
			return false
		}
	}
	return true
}

// subsetOf: is every name d matches matched by o? Never certain when d
// grows at run time; o's known part is enough to cover.
func (d domains) subsetOf(o domains) bool {
	if d.dynamic() {
		return false
	}
	ok := true
	d.each(func(_ *domSet, p rules.DomainPattern) bool {
		ok = o.covers(p)
		return ok
	})
	return ok
}

// overlapsSet: some name matched by both? (may: true when either grows at
// run time)
func (d domains) overlapsSet(o domains) bool {
	if d.dynamic() || o.dynamic() {
		return true
	}
	hit := false
	d.each(func(_ *domSet, p rules.DomainPattern) bool {
		hit = o.overlaps(p)
		return !hit
	})
	return hit
}

// prefixCovered: is every address of p in the union of ps? Prefixes nest or
// are disjoint, so p is covered when one of ps contains it, or when both its
// halves are covered by the ps inside it.
func prefixCovered(p netip.Prefix, ps []netip.Prefix) bool {
	p = p.Masked()
	var inside []netip.Prefix
	for _, q := range ps {
		if q.Addr().Is4() != p.Addr().Is4() {
			continue
		}
		q = q.Masked()
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
		if q.Bits() > p.Bits() && p.Contains(q.Addr()) {
			inside = append(inside, q)
		}
	}
	if len(inside) == 0 || p.Bits() == p.Addr().BitLen() {
		return false
	}
	lo, hi := halves(p)
	return prefixCovered(lo, inside) && prefixCovered(hi, inside)
}

// halves splits p into its two prefixes one bit longer.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	i := p.Bits()
	b[i/8] |= 0x80 >> (i % 8)
	a, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(a, bits)
}

func prefixesCovered(ps, by []netip.Prefix) bool {
	for _, p := range ps {
		if !prefixCovered(p, by) {
			return false
		}
	}
	return true
}

func prefixesOverlap(a, b []netip.Prefix) (netip.Prefix, netip.Prefix, bool) {
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				return p, q, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}
