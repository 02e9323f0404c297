package rules

import (
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Read-only inventory of a configuration for static review (egress lint).
//
// The compiled Policy answers Decide and forgets where things were written;
// a reviewer needs both what each rule matches and where it is. Inspect loads
// the configuration exactly like Load (so a config with errors is refused
// with the same diagnostics) and then describes it again from the source,
// with positions: every category's patterns (inline and from list files,
// each with its file:line:col), every rule's matchers, the policies and the
// segments, in config order. Nothing here is used on the data path.

// Inventory describes one loaded configuration, with source positions.
type Inventory struct {
	Config     *Config // the compiled configuration, as Load returns it
	Categories []*CategoryInfo
	Policies   []*PolicyInfo
	Segments   []*SegmentInfo
	HCLFiles   []string // the .hcl files read, in load order
}

// DomainPattern is one domain pattern as the matcher reads it: Base matches
// itself when Exact and every strict subdomain when Sub ("tiktok.com" is
// both, "*.tiktok.com" is Sub only).
type DomainPattern struct {
	Base  string
	Exact bool
	Sub   bool
	Range hcl.Range // where it is written (an HCL list element or a list file line)
}

// String is the pattern as it would be written.
func (p DomainPattern) String() string {
	if p.Exact {
		return p.Base
	}
	return "*." + p.Base
}

// NameRef is a reference by name (a category of a rule, a policy of a segment).
type NameRef struct {
	Name  string
	Range hcl.Range
}

// CategoryInfo is a category with every pattern it holds.
type CategoryInfo struct {
	Name     string
	Range    hcl.Range // the block's label line
	Patterns []DomainPattern
	Files    []string // list files, resolved
	// Dynamic: the category also takes names at run time (a feeds
	// attribute), so Patterns is only the part known from the config and
	// its files; a reviewer must not conclude what it does not contain.
	Dynamic bool
}

// RuleInfo is a rule's matchers and metadata as written.
type RuleInfo struct {
	Name        string
	Ruleset     string // policy or segment name
	RulesetKind string // "policy" or "segment"
	Range       hcl.Range
	Action      Action
	Monitor     bool

	// Matchers. A nil slice is an absent matcher (matches everything);
	// Has* tells an absent matcher from one written as an empty list.
	Domains       []DomainPattern // inline domains
	Categories    []NameRef
	CIDRs         []netip.Prefix
	Ports         []uint16
	HasDomains    bool // domains = [...] written (possibly empty)
	HasCategories bool
	HasCIDRs      bool
	HasPorts      bool
	Attr          map[string]hcl.Range // range of each attribute written (action, domains, expires, ...)

	Owner, Ticket, ExpiresText string
	Expires                    time.Time // zero: never

	// Other lists attributes this description does not model (matchers
	// added later, such as users or groups). They can only narrow what the
	// rule matches, so a reviewer must not count on the rule matching
	// everything its modelled matchers allow.
	Other []string
}

// PolicyInfo is a policy and its rules in order.
type PolicyInfo struct {
	Name  string
	Range hcl.Range
	Rules []*RuleInfo
}

// SourceRef is one source prefix of a segment.
type SourceRef struct {
	Prefix netip.Prefix
	Range  hcl.Range
}

// SegmentInfo is a segment: its own rules, then its policies.
type SegmentInfo struct {
	Name     string
	Range    hcl.Range
	Default  Action
	Sources  []SourceRef
	Rules    []*RuleInfo // own rules, in order
	Policies []NameRef
}

// Category returns the category named name, or nil.
func (inv *Inventory) Category(name string) *CategoryInfo {
	for _, c := range inv.Categories {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Policy returns the policy named name, or nil.
func (inv *Inventory) Policy(name string) *PolicyInfo {
	for _, p := range inv.Policies {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Order returns a segment's rules in evaluation order: its own rules, then
// each policy's rules in the listed order (as Decide evaluates them).
func (inv *Inventory) Order(s *SegmentInfo) []*RuleInfo {
	out := append([]*RuleInfo(nil), s.Rules...)
	for _, ref := range s.Policies {
		if p := inv.Policy(ref.Name); p != nil {
			out = append(out, p.Rules...)
		}
	}
	return out
}

// Inspect loads p like Load and, when it is valid, describes it. Any error
// diagnostic means no Inventory; warnings are returned as Load returns them.
func Inspect(p string, opt Options) (*Inventory, hcl.Diagnostics) {
	cfg, diags := Load(p, opt)
	if diags.HasErrors() {
		return nil, diags
	}
	l := &loader{fsys: opt.FS, now: opt.Now, parser: hclparse.NewParser()}
	names, err := l.hclFiles(p)
	if err != nil { // changed under us since Load: report like Load would
		_, d := Load(p, opt)
		return nil, d
	}
	var files []*hcl.File
	for _, name := range names {
		src, err := l.readFile(name)
		if err != nil {
			return nil, hcl.Diagnostics{errorAt(&hcl.Range{Filename: name}, "Cannot read configuration file", "%v.", err)}
		}
		f, fd := l.parser.ParseHCL(src, name)
		if fd.HasErrors() {
			return nil, fd
		}
		files = append(files, f)
	}
	var root rawRoot
	if d := gohcl.DecodeBody(hcl.MergeFiles(files), nil, &root); d.HasErrors() {
		return nil, d
	}
	inv := &Inventory{Config: cfg, HCLFiles: names}
	for _, rc := range root.Categories {
		ci := &CategoryInfo{Name: rc.Name, Range: rc.DefRange}
		ci.Dynamic = attrRange(rc.Body, "feeds", hcl.Range{}).Filename != ""
		for i, d := range rc.Domains {
			if pt, err := parsePattern(d); err == nil {
				ci.Patterns = append(ci.Patterns, domainPattern(pt, *elemRange(rc.Body, "domains", i, rc.DefRange)))
			}
		}
		base := l.dir(rc.DefRange.Filename)
		for _, f := range rc.Files {
			full := l.join(base, f)
			ci.Files = append(ci.Files, full)
			data, err := l.readFile(full)
			if err != nil {
				continue
			}
			ci.Patterns = append(ci.Patterns, listPatterns(full, string(data))...)
		}
		inv.Categories = append(inv.Categories, ci)
	}
	for _, rp := range root.Policies {
		pi := &PolicyInfo{Name: rp.Name, Range: rp.DefRange}
		for _, rr := range rp.Rules {
			pi.Rules = append(pi.Rules, ruleInfo(rr, rp.Name, "policy"))
		}
		inv.Policies = append(inv.Policies, pi)
	}
	for _, rs := range root.Segments {
		si := &SegmentInfo{Name: rs.Name, Range: rs.DefRange}
		si.Default, _ = parseAction(rs.Default)
		for i, s := range rs.Sources {
			if pf, err := parsePrefix(s); err == nil {
				si.Sources = append(si.Sources, SourceRef{Prefix: pf, Range: *elemRange(rs.Body, "sources", i, rs.DefRange)})
			}
		}
		for _, rr := range rs.Rules {
			si.Rules = append(si.Rules, ruleInfo(rr, rs.Name, "segment"))
		}
		for i, pn := range rs.Policies {
			si.Policies = append(si.Policies, NameRef{Name: pn, Range: *elemRange(rs.Body, "policies", i, rs.DefRange)})
		}
		inv.Segments = append(inv.Segments, si)
	}
	return inv, diags
}

func domainPattern(p pattern, r hcl.Range) DomainPattern {
	return DomainPattern{Base: p.base, Exact: p.kinds&kindExact != 0, Sub: p.kinds&kindSub != 0, Range: r}
}

// listPatterns re-reads a list file that Load accepted, one pattern per name
// with the position of its line.
func listPatterns(filename, data string) []DomainPattern {
	var out []DomainPattern
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		pats, _ := parseList(filename, line, nil)
		for _, p := range pats {
			out = append(out, domainPattern(p, hcl.Range{Filename: filename,
				Start: hcl.Pos{Line: lineNo, Column: 1}, End: hcl.Pos{Line: lineNo, Column: 1 + len(line)}}))
		}
	}
	return out
}

// modelled are the rule attributes RuleInfo describes, matchers or not.
var modelled = map[string]bool{"action": true, "monitor": true, "description": true, "domains": true,
	"categories": true, "cidrs": true, "ports": true, "owner": true, "ticket": true, "expires": true}

func ruleInfo(rr *rawRule, ruleset, kind string) *RuleInfo {
	ri := &RuleInfo{Name: rr.Name, Ruleset: ruleset, RulesetKind: kind, Range: rr.DefRange,
		Attr: map[string]hcl.Range{}}
	ri.Action, _ = parseAction(rr.Action)
	if rr.Monitor != nil {
		ri.Monitor = *rr.Monitor
	}
	for _, name := range []string{"action", "monitor", "domains", "categories", "cidrs", "ports", "owner", "ticket", "expires"} {
		if r := attrRange(rr.Body, name, hcl.Range{}); r.Filename != "" {
			ri.Attr[name] = *r
		}
	}
	if b, ok := rr.Body.(*hclsyntax.Body); ok {
		for name := range b.Attributes {
			if !modelled[name] {
				ri.Other = append(ri.Other, name)
			}
		}
		sort.Strings(ri.Other)
	}
	_, ri.HasDomains = ri.Attr["domains"]
	_, ri.HasCategories = ri.Attr["categories"]
	_, ri.HasCIDRs = ri.Attr["cidrs"]
	_, ri.HasPorts = ri.Attr["ports"]
	for i, d := range rr.Domains {
		if pt, err := parsePattern(d); err == nil {
			ri.Domains = append(ri.Domains, domainPattern(pt, *elemRange(rr.Body, "domains", i, rr.DefRange)))
		}
	}
	for i, c := range rr.Categories {
		ri.Categories = append(ri.Categories, NameRef{Name: c, Range: *elemRange(rr.Body, "categories", i, rr.DefRange)})
	}
	for _, s := range rr.CIDRs {
		if pf, err := parsePrefix(s); err == nil {
			ri.CIDRs = append(ri.CIDRs, pf)
		}
	}
	for _, p := range rr.Ports {
		ri.Ports = append(ri.Ports, uint16(p))
	}
	if rr.Owner != nil {
		ri.Owner = *rr.Owner
	}
	if rr.Ticket != nil {
		ri.Ticket = *rr.Ticket
	}
	if rr.Expires != nil {
		ri.ExpiresText = *rr.Expires
		t, err := time.Parse("2006-01-02", ri.ExpiresText)
		if err != nil {
			t, _ = time.Parse(time.RFC3339, ri.ExpiresText)
		}
		ri.Expires = t.UTC()
	}
	return ri
}
