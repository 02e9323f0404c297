package rules

import (
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// Read-only accessors for `egress report` (internal/report): what a compiled
// rule matches, and where each category's list comes from. Nothing here is
// on the data path.

// AttestCategories returns the names of the categories rule r matches, in
// configuration order, and whether it also has its own domains list.
// Categories take the first domain-set ids, in the order of c.Categories
// (compileCategories runs before any rule is compiled).
func (c *Config) AttestCategories(r *Rule) (names []string, inline bool) {
	for _, id := range r.domainSets {
		if int(id) < len(c.Categories) {
			names = append(names, c.Categories[id].Name)
		} else {
			inline = true
		}
	}
	return names, inline
}

// AttestCIDRs returns the destination networks rule r matches (nil: any).
func (r *Rule) AttestCIDRs() []netip.Prefix { return slices.Clone(r.cidrs) }

// AttestPorts returns the destination ports rule r matches (nil: any).
func (r *Rule) AttestPorts() []uint16 { return slices.Clone(r.ports) }

// AttestCategorySources returns, per category name, where its list comes
// from: the list files (resolved like the loader does) and feed URLs. It
// re-reads the HCL files of c.Files from the OS file system; a file that
// cannot be read or parsed is skipped (the config loaded, so this only
// happens for an embedded config or a file changed since).
func (c *Config) AttestCategorySources() map[string][]string {
	out := map[string][]string{}
	p := hclparse.NewParser()
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "category", LabelNames: []string{"name"}}}}
	for _, f := range c.Files {
		if filepath.Ext(f) != ".hcl" {
			continue
		}
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() || file == nil {
			continue
		}
		content, _, _ := file.Body.PartialContent(schema)
		if content == nil {
			continue
		}
		for _, b := range content.Blocks {
			attrs, _ := b.Body.JustAttributes()
			var srcs []string
			if a, ok := attrs["files"]; ok {
				if v, d := a.Expr.Value(nil); !d.HasErrors() && v.CanIterateElements() {
					for it := v.ElementIterator(); it.Next(); {
						_, e := it.Element()
						if e.Type() == cty.String && e.IsKnown() && !e.IsNull() {
							name := e.AsString()
							if !filepath.IsAbs(name) {
								name = filepath.Join(filepath.Dir(f), name)
							}
							srcs = append(srcs, name)
						}
					}
				}
			}
			if a, ok := attrs["feeds"]; ok {
				if v, d := a.Expr.Value(nil); !d.HasErrors() && v.CanIterateElements() {
					for it := v.ElementIterator(); it.Next(); {
						_, e := it.Element()
						if e.Type().IsObjectType() && e.Type().HasAttribute("url") {
							u := e.GetAttr("url")
							if u.Type() == cty.String && u.IsKnown() && !u.IsNull() {
								srcs = append(srcs, u.AsString())
							}
						}
					}
				}
			}
			if _, ok := attrs["domains"]; ok {
				srcs = append([]string{"inline domains"}, srcs...)
			}
			out[b.Labels[0]] = srcs
		}
	}
	return out
}
