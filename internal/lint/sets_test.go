package lint

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/egress-proxy/egress/internal/rules"
)

func pat(s string) rules.DomainPattern {
	if b, ok := strings.CutPrefix(s, "*."); ok {
		return rules.DomainPattern{Base: b, Sub: true}
	}
	return rules.DomainPattern{Base: s, Exact: true, Sub: true}
}

func set(ps ...string) domains {
	var out []rules.DomainPattern
	for _, p := range ps {
		out = append(out, pat(p))
	}
	return domains{newDomSet("t", out, false)}
}

func TestDomainAlgebra(t *testing.T) {
	tests := []struct {
		set            []string
		p              string
		covers, overls bool
	}{
		{[]string{"example.com"}, "example.com", true, true},
		{[]string{"example.com"}, "www.example.com", true, true},
		{[]string{"example.com"}, "*.example.com", true, true},
		{[]string{"*.example.com"}, "example.com", false, true},     // apex not covered, subdomains shared
		{[]string{"*.example.com"}, "www.example.com", true, true},  // www and below
		{[]string{"www.example.com"}, "example.com", false, true},   // a subdomain in common
		{[]string{"www.example.com"}, "*.example.com", false, true}, // idem
		{[]string{"notexample.com"}, "example.com", false, false},   // label boundary
		{[]string{"example.com"}, "notexample.com", false, false},   // idem
		{[]string{"com"}, "example.com", true, true},                // a TLD pattern covers its names
		{[]string{"a.example.com", "b.example.com"}, "example.com", false, true},
		{[]string{"example.org"}, "example.com", false, false},
	}
	for _, tt := range tests {
		d := set(tt.set...)
		if got := d.covers(pat(tt.p)); got != tt.covers {
			t.Errorf("%v covers %s = %t", tt.set, tt.p, got)
		}
		if got := d.overlaps(pat(tt.p)); got != tt.overls {
			t.Errorf("%v overlaps %s = %t", tt.set, tt.p, got)
		}
	}
	if !set("www.example.com").subsetOf(set("example.com")) || set("example.com").subsetOf(set("www.example.com")) {
		t.Error("subsetOf")
	}
	// A name only exact in the covering set: its subdomains are not covered.
	exactOnly := domains{newDomSet("t", []rules.DomainPattern{{Base: "example.com", Exact: true}}, false)}
	if exactOnly.covers(pat("example.com")) || !exactOnly.covers(rules.DomainPattern{Base: "example.com", Exact: true}) {
		t.Error("exact-only set")
	}
}

func TestPrefixCovered(t *testing.T) {
	pf := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		p    string
		by   []netip.Prefix
		want bool
	}{
		{"10.0.0.0/24", pf("10.0.0.0/16"), true},
		{"10.0.0.0/16", pf("10.0.0.0/24"), false},
		{"10.0.0.0/24", pf("10.0.0.0/25", "10.0.0.128/25"), true},
		{"10.0.0.0/24", pf("10.0.0.0/25", "10.0.0.128/26"), false},
		{"10.0.0.0/24", pf("10.0.0.0/25", "10.0.0.128/26", "10.0.0.192/26"), true},
		{"10.0.0.5/32", pf("10.0.0.5/32"), true},
		{"10.0.0.0/8", pf("::/0"), false}, // families never mix
		{"fd00::/48", pf("fd00::/49", "fd00:0:0:8000::/49"), true},
		{"0.0.0.0/0", pf("0.0.0.0/1", "128.0.0.0/1"), true},
	}
	for _, tt := range tests {
		if got := prefixCovered(netip.MustParsePrefix(tt.p), tt.by); got != tt.want {
			t.Errorf("%s covered by %v = %t", tt.p, tt.by, got)
		}
	}
}
