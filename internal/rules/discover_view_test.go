package rules

import (
	"slices"
	"testing"
	"testing/fstest"
)

// TestDiscoverListsCategoryIDs checks that a category's set id is its index
// in Config.Categories, which DiscoverLists relies on, with inline rule
// domains and several categories holding one name.
func TestDiscoverListsCategoryIDs(t *testing.T) {
	const src = `
category "a" { domains = ["shared.example", "a.example"] }
category "b" { domains = ["*.shared.example", "b.example"] }
category "tiktok" { domains = ["tiktok.com", "tiktokcdn.com"] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "inline" {
    action  = "deny"
    domains = ["inline.example", "tiktok.com"]
  }
  rule "cats" {
    action     = "deny"
    categories = ["a", "b", "tiktok"]
  }
}
`
	cfg, diags := Load("c.hcl", Options{FS: fstest.MapFS{"c.hcl": {Data: []byte(src)}}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, tc := range []struct {
		name   string
		cats   []string
		listed bool
	}{
		{"shared.example", []string{"a"}, true},
		{"x.shared.example", []string{"a", "b"}, true}, // "name" matches subdomains too
		{"b.example", []string{"b"}, true},
		{"www.tiktok.com", []string{"tiktok"}, true},
		{"tiktok.com", []string{"tiktok"}, true},
		{"inline.example", nil, true},
		{"other.example", nil, false},
	} {
		cats, listed := cfg.DiscoverLists(tc.name, nil)
		slices.Sort(cats)
		if !slices.Equal(cats, tc.cats) || listed != tc.listed {
			t.Errorf("DiscoverLists(%q) = %v, %v; want %v, %v", tc.name, cats, listed, tc.cats, tc.listed)
		}
	}
	tt := cfg.DiscoverCategory("tiktok")
	if tt != 2 || cfg.DiscoverCategory("nope") != -1 {
		t.Fatalf("DiscoverCategory: tiktok=%d", tt)
	}
	if in, listed := cfg.DiscoverInCategory("v16.tiktokcdn.com", tt); !in || !listed {
		t.Errorf("v16.tiktokcdn.com: in=%v listed=%v", in, listed)
	}
	if in, listed := cfg.DiscoverInCategory("a.example", tt); in || !listed {
		t.Errorf("a.example: in=%v listed=%v", in, listed)
	}
	if in, listed := cfg.DiscoverInCategory("new.example", tt); in || listed {
		t.Errorf("new.example: in=%v listed=%v", in, listed)
	}
}
