package rules

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"
)

func TestInspect(t *testing.T) {
	fsys := fstest.MapFS{
		"cfg/a.hcl": {Data: []byte(`category "social" {
  domains = ["facebook.com", "*.tiktok.com"]
  files   = ["lists/more.txt"]
}
policy "base" {
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
    ports      = []
  }
}
`)},
		"cfg/b.hcl": {Data: []byte(`segment "s" {
  sources  = ["10.1.0.0/16", "fd00::/48"]
  default  = "deny"
  policies = ["base"]
  rule "exception" {
    action  = "allow"
    domains = ["x.com"]
    cidrs   = ["192.0.2.0/24"]
    owner   = "o"
    expires = "2030-01-02"
  }
}
`)},
		"cfg/lists/more.txt": {Data: []byte("# comment\n\n0.0.0.0 a.example b.example\n||c.example^\n")},
	}
	inv, diags := Inspect("cfg", Options{FS: fsys, Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	if len(inv.HCLFiles) != 2 || inv.Config == nil {
		t.Fatalf("%v", inv.HCLFiles)
	}
	var pats []string
	for _, p := range inv.Category("social").Patterns {
		pats = append(pats, fmt.Sprintf("%s@%s:%d:%d", p, p.Range.Filename, p.Range.Start.Line, p.Range.Start.Column))
	}
	want := "[facebook.com@cfg/a.hcl:2:14 *.tiktok.com@cfg/a.hcl:2:30 a.example@cfg/lists/more.txt:3:1 b.example@cfg/lists/more.txt:3:1 c.example@cfg/lists/more.txt:4:1]"
	if fmt.Sprint(pats) != want {
		t.Errorf("patterns\n got %v\nwant %s", pats, want)
	}
	r := inv.Policy("base").Rules[0]
	if !r.HasPorts || r.Ports != nil || !r.HasCategories || r.Categories[0].Range.Start.Line != 8 || r.Attr["ports"].Start.Line != 9 || r.Range.Start.Line != 6 {
		t.Errorf("policy rule: %+v", r)
	}
	s := inv.Segments[0]
	if s.Default != Deny || len(s.Sources) != 2 || s.Sources[1].Range.Start.Line != 2 || s.Sources[1].Prefix.String() != "fd00::/48" {
		t.Errorf("segment: %+v", s)
	}
	order := inv.Order(s)
	if len(order) != 2 || order[0].Name != "exception" || order[1].Name != "no-social" {
		t.Errorf("order: %v", order)
	}
	e := order[0]
	if e.Action != Allow || e.Owner != "o" || e.Ticket != "" || !e.Expires.Equal(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)) ||
		len(e.CIDRs) != 1 || len(e.Domains) != 1 || e.Attr["expires"].Start.Line != 10 || e.RulesetKind != "segment" {
		t.Errorf("exception: %+v", e)
	}
	// A config with errors gives no inventory and Load's diagnostics.
	fsys["cfg/b.hcl"] = &fstest.MapFile{Data: []byte("segment \"s\" {\n  sources = [\"nope\"]\n  default = \"deny\"\n}\n")}
	if inv, diags := Inspect("cfg", Options{FS: fsys}); inv != nil || !diags.HasErrors() || diags[0].Subject.Start.Line != 2 {
		t.Errorf("invalid: %v %v", inv, diags)
	}
}
