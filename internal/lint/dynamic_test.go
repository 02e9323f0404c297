package lint

import (
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
	"github.com/hashicorp/hcl/v2"
)

// A category fed at run time (feeds) is only partly known to lint: nothing
// may be concluded from what its known part lacks.
func TestDynamicCategories(t *testing.T) {
	at := func(line int) hcl.Range {
		return hcl.Range{Filename: "x.hcl", Start: hcl.Pos{Line: line, Column: 1}}
	}
	feed := &rules.CategoryInfo{Name: "feed", Range: at(1), Dynamic: true,
		Patterns: []rules.DomainPattern{pat("a.example")}}
	empty := &rules.CategoryInfo{Name: "empty-feed", Range: at(2), Dynamic: true}
	static := &rules.CategoryInfo{Name: "static", Range: at(3), Patterns: []rules.DomainPattern{pat("a.example")}}
	rule := func(name string, line int, a rules.Action, cat string, doms ...string) *rules.RuleInfo {
		r := &rules.RuleInfo{Name: name, Ruleset: "s", RulesetKind: "segment", Range: at(line), Action: a,
			Owner: "o", Ticket: "t", ExpiresText: "2030-01-01"}
		if cat != "" {
			r.Categories = []rules.NameRef{{Name: cat, Range: at(line)}}
		}
		for _, d := range doms {
			r.Domains = append(r.Domains, pat(d))
		}
		return r
	}
	inv := &rules.Inventory{
		Categories: []*rules.CategoryInfo{feed, empty, static},
		Segments: []*rules.SegmentInfo{{Name: "s", Range: at(10), Default: rules.Allow, Rules: []*rules.RuleInfo{
			rule("static-ban", 11, rules.Deny, "static"),
			rule("feed-ban", 12, rules.Deny, "feed"),             // not shadowed: the feed brings more names
			rule("empty-feed-ban", 13, rules.Deny, "empty-feed"), // not unreachable: names arrive at run time
			rule("exception", 14, rules.Allow, "", "b.example"),
			rule("feed-ban-2", 15, rules.Deny, "feed"), // the exception may be within it: not wider
		}}},
	}
	for _, f := range Run(inv, Options{Now: func() time.Time { return testNow }}) {
		t.Errorf("unexpected finding: %s", f)
	}
	// The same with a static category instead is shadowed: the test can fail.
	inv.Categories[0].Dynamic = false
	got := Run(inv, Options{Now: func() time.Time { return testNow }})
	if len(got) == 0 || got[0].Check != CheckShadowed || got[0].Line != 12 {
		t.Errorf("static control: %v", got)
	}
}

// A rule with a matcher lint does not model (say groups, added later) may
// match less than it seems: it never covers a later rule, and is never
// proven wider than its bans.
func TestUnmodelledMatchers(t *testing.T) {
	at := func(line int) hcl.Range {
		return hcl.Range{Filename: "x.hcl", Start: hcl.Pos{Line: line, Column: 1}}
	}
	mk := func(name string, line int, a rules.Action, other []string, doms ...string) *rules.RuleInfo {
		r := &rules.RuleInfo{Name: name, Ruleset: "s", RulesetKind: "segment", Range: at(line), Action: a,
			Owner: "o", Ticket: "t", ExpiresText: "2030-01-01", Other: other}
		for _, d := range doms {
			r.Domains = append(r.Domains, pat(d))
		}
		return r
	}
	for _, other := range [][]string{{"groups"}, nil} {
		inv := &rules.Inventory{Segments: []*rules.SegmentInfo{{Name: "s", Range: at(10), Default: rules.Allow, Rules: []*rules.RuleInfo{
			mk("for-some-groups", 11, rules.Allow, other, "example.com", "example.org"),
			mk("ban", 12, rules.Deny, nil, "www.example.com"),
		}}}}
		got := Run(inv, Options{Now: func() time.Time { return testNow }})
		if other != nil && len(got) != 0 {
			t.Errorf("with %v: %v", other, got)
		}
		if other == nil && (len(got) != 2 || got[0].Check != CheckExceptionWider || got[1].Check != CheckShadowed) {
			t.Errorf("control: %v", got)
		}
	}
}
