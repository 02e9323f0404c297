package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAttest: the report's accessors name a rule's categories (not its own
// domains), networks and ports, and each category's list sources.
func TestAttest(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "lists"), 0o755)
	os.WriteFile(filepath.Join(dir, "lists", "b.txt"), []byte("b.example\n"), 0o600)
	hcl := `
category "a" { domains = ["a.example"] }
category "b" {
  files = ["lists/b.txt"]
}
category "c" { domains = ["c.example"] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "r1" {
    action     = "deny"
    categories = ["c", "a"]
    domains    = ["own.example"]
    ports      = [443]
  }
  rule "r2" {
    action = "deny"
    cidrs  = ["192.0.2.0/24"]
  }
  rule "r3" {
    action     = "deny"
    categories = ["b"]
  }
}
`
	p := filepath.Join(dir, "c.hcl")
	os.WriteFile(p, []byte(hcl), 0o600)
	cfg, diags := Load(p, Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs := cfg.Policy.Segments()[0].Rules()
	cats, inline := cfg.AttestCategories(rs[0])
	if strings.Join(cats, ",") != "a,c" || !inline || !slices.Equal(rs[0].AttestPorts(), []uint16{443}) || rs[0].AttestCIDRs() != nil {
		t.Errorf("r1: %v %v %v %v", cats, inline, rs[0].AttestPorts(), rs[0].AttestCIDRs())
	}
	if cats, inline := cfg.AttestCategories(rs[1]); cats != nil || inline || rs[1].AttestCIDRs()[0].String() != "192.0.2.0/24" {
		t.Errorf("r2: %v %v %v", cats, inline, rs[1].AttestCIDRs())
	}
	if cats, inline := cfg.AttestCategories(rs[2]); strings.Join(cats, ",") != "b" || inline {
		t.Errorf("r3: %v %v", cats, inline)
	}
	src := cfg.AttestCategorySources()
	if strings.Join(src["a"], ",") != "inline domains" || len(src["b"]) != 1 || src["b"][0] != filepath.Join(dir, "lists", "b.txt") {
		t.Errorf("sources %v", src)
	}
}
