package rules

import (
	"fmt"
	"hash"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gaissmai/bart"
	"github.com/hashicorp/hcl/v2"
)

// compiler turns the raw model into a Policy, collecting every diagnostic.
type compiler struct {
	*loader
	cfg   *Config
	hash  hash.Hash
	diags hcl.Diagnostics

	index      *domainIndex
	nextSet    uint32
	categories map[string]uint32
	policies   map[string][]*Rule
	ruleNames  map[string]bool // every rule name, for test references
}

func (c *compiler) errorf(r *hcl.Range, summary, detail string, args ...any) {
	c.diags = append(c.diags, errorAt(r, summary, detail, args...))
}

func (c *compiler) newSet() uint32 {
	id := c.nextSet
	c.nextSet++
	return id
}

func (c *compiler) compile(root *rawRoot) hcl.Diagnostics {
	c.categories = map[string]uint32{}
	c.policies = map[string][]*Rule{}
	c.ruleNames = map[string]bool{}
	c.index = newDomainIndex(0)

	c.compileCategories(root.Categories)
	for _, p := range root.Policies {
		if _, dup := c.policies[p.Name]; dup {
			c.errorf(&p.DefRange, "Duplicate policy", "A policy named %q is already defined; policy names must be unique.", p.Name)
			continue
		}
		c.policies[p.Name] = c.compileRules(p.Rules, p.Name, "policy")
	}
	policy := &Policy{segments: &bart.Table[*Segment]{}, domains: c.index, now: c.now}
	owner := map[netip.Prefix]string{}
	names := map[string]bool{}
	for _, s := range root.Segments {
		if names[s.Name] {
			c.errorf(&s.DefRange, "Duplicate segment", "A segment named %q is already defined; segment names must be unique.", s.Name)
			continue
		}
		names[s.Name] = true
		seg := &Segment{Name: s.Name}
		if a, ok := parseAction(s.Default); ok {
			seg.Default = a
		} else {
			c.errorf(attrRange(s.Body, "default", s.DefRange), "Invalid default", "default = %q: use \"allow\" or \"deny\".", s.Default)
		}
		if len(s.Sources) == 0 {
			c.errorf(attrRange(s.Body, "sources", s.DefRange), "Segment without sources", "Segment %q has no sources; list the client networks it covers, e.g. [\"10.20.0.0/16\"].", s.Name)
		}
		for i, src := range s.Sources {
			p, err := parsePrefix(src)
			if err != nil {
				c.errorf(elemRange(s.Body, "sources", i, s.DefRange), "Invalid CIDR", "%q is not a network; write e.g. \"10.20.0.0/16\", \"fd00:20::/48\" or a single address.", src)
				continue
			}
			if other, dup := owner[p]; dup {
				if other == s.Name {
					c.errorf(elemRange(s.Body, "sources", i, s.DefRange), "Duplicate source", "%s is listed twice in segment %q.", p, s.Name)
				} else {
					c.errorf(elemRange(s.Body, "sources", i, s.DefRange), "Two segments with one prefix", "%s is already a source of segment %q; a client address must choose exactly one segment.", p, other)
				}
				continue
			}
			owner[p] = s.Name
			seg.Sources = append(seg.Sources, p)
			policy.segments.Insert(p, seg)
		}
		seg.rules = c.compileRules(s.Rules, s.Name, "segment")
		if s.RequireAuth != nil && *s.RequireAuth {
			seg.RequireAuth = true
			if !c.cfg.CanAuthenticate() {
				c.errorf(attrRange(s.Body, "require_auth", s.DefRange), "Segment cannot authenticate",
					"Segment %q requires an identity, but no client can give one: %s", s.Name, cannotAuthenticate)
			}
		}
		seen := map[string]bool{}
		for i, pn := range s.Policies {
			rules, ok := c.policies[pn]
			switch {
			case seen[pn]:
				c.errorf(elemRange(s.Body, "policies", i, s.DefRange), "Duplicate policy reference", "Policy %q is listed twice in segment %q.", pn, s.Name)
			case !ok:
				c.errorf(elemRange(s.Body, "policies", i, s.DefRange), "Unknown policy", "No policy named %q is defined%s.", pn, suggest(pn, keys(c.policies)))
			default:
				seg.rules = append(seg.rules, rules...)
			}
			seen[pn] = true
		}
		for _, r := range seg.rules {
			seg.IdentityRules = seg.IdentityRules || r.NeedsIdentity()
		}
		policy.list = append(policy.list, seg)
	}
	c.cfg.Policy = policy
	c.compileTests(root.Tests)
	return c.diags
}

func (c *compiler) compileCategories(cats []*rawCategory) {
	for _, cat := range cats {
		if _, dup := c.categories[cat.Name]; dup {
			c.errorf(&cat.DefRange, "Duplicate category", "A category named %q is already defined; category names must be unique.", cat.Name)
			continue
		}
		id := c.newSet()
		c.categories[cat.Name] = id
		var pats []pattern
		for i, d := range cat.Domains {
			p, err := parsePattern(d)
			if err != nil {
				c.errorf(elemRange(cat.Body, "domains", i, cat.DefRange), "Invalid domain pattern", "%q: %v.", d, err)
				continue
			}
			pats = append(pats, p)
		}
		base := c.dir(cat.DefRange.Filename)
		for i, f := range cat.Files {
			full := c.join(base, f)
			data, err := c.readFile(full)
			if err != nil {
				c.errorf(elemRange(cat.Body, "files", i, cat.DefRange), "Cannot read list file", "%s (resolved to %s): %v. Paths are relative to the folder of the file that names them.", f, full, unwrapPathError(err))
				continue
			}
			fmt.Fprintf(c.hash, "list\x00%s\x00%d\x00", filepath.Base(full), len(data))
			c.hash.Write(data)
			c.files = append(c.files, full)
			var ld hcl.Diagnostics
			pats, ld = parseList(full, string(data), pats)
			c.diags = append(c.diags, ld...)
		}
		pats = c.compileFeeds(cat, pats)
		for _, p := range pats {
			c.index.add(p.base, id, p.kinds)
		}
		desc := ""
		if cat.Description != nil {
			desc = *cat.Description
		}
		c.cfg.Categories = append(c.cfg.Categories, &Category{Name: cat.Name, Description: desc, Domains: len(pats)})
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(interface{ Unwrap() error }); ok && pe.Unwrap() != nil {
		return pe.Unwrap()
	}
	return err
}

func (c *compiler) compileRules(raws []*rawRule, ruleset, kind string) []*Rule {
	var out []*Rule
	seen := map[string]bool{}
	for _, rr := range raws {
		if seen[rr.Name] {
			c.errorf(&rr.DefRange, "Duplicate rule", "A rule named %q is already defined in %s %q; rule names must be unique within their %s.", rr.Name, kind, ruleset, kind)
			continue
		}
		seen[rr.Name] = true
		c.ruleNames[rr.Name] = true
		r := &Rule{Name: rr.Name, Ruleset: ruleset, RulesetKind: kind,
			Pos: fmt.Sprintf("%s:%d:%d", rr.DefRange.Filename, rr.DefRange.Start.Line, rr.DefRange.Start.Column)}
		if a, ok := parseAction(rr.Action); ok {
			r.Action = a
		} else {
			c.errorf(attrRange(rr.Body, "action", rr.DefRange), "Invalid action", "action = %q: use \"allow\" or \"deny\".", rr.Action)
		}
		if rr.Monitor != nil {
			r.Monitor = *rr.Monitor
		}
		if rr.Description != nil {
			r.Description = *rr.Description
		}
		if rr.Owner != nil {
			r.Owner = *rr.Owner
		}
		if rr.Ticket != nil {
			r.Ticket = *rr.Ticket
		}
		if len(rr.Domains) > 0 {
			id := c.newSet()
			for i, d := range rr.Domains {
				p, err := parsePattern(d)
				if err != nil {
					c.errorf(elemRange(rr.Body, "domains", i, rr.DefRange), "Invalid domain pattern", "%q: %v.", d, err)
					continue
				}
				c.index.add(p.base, id, p.kinds)
			}
			r.domainSets = append(r.domainSets, id)
			r.hasDomains = true
		}
		for i, cn := range rr.Categories {
			id, ok := c.categories[cn]
			if !ok {
				c.errorf(elemRange(rr.Body, "categories", i, rr.DefRange), "Unknown category", "No category named %q is defined%s.", cn, suggest(cn, keys(c.categories)))
				continue
			}
			r.domainSets = append(r.domainSets, id)
			if r.Action == Allow {
				c.warnUnsignedFeed(rr, i, cn)
			}
		}
		if len(rr.Categories) > 0 {
			r.hasDomains = true
		}
		sort.Slice(r.domainSets, func(i, j int) bool { return r.domainSets[i] < r.domainSets[j] })
		for i, s := range rr.CIDRs {
			p, err := parsePrefix(s)
			if err != nil {
				c.errorf(elemRange(rr.Body, "cidrs", i, rr.DefRange), "Invalid CIDR", "%q is not an address range; write e.g. \"203.0.113.0/24\" or \"2001:db8::/32\".", s)
				continue
			}
			r.cidrs = append(r.cidrs, p)
		}
		r.users = c.identityNames(rr, "users", rr.Users)
		r.groups = c.identityNames(rr, "groups", rr.Groups)
		for i, p := range rr.Ports {
			if p < 1 || p > 65535 {
				c.errorf(elemRange(rr.Body, "ports", i, rr.DefRange), "Invalid port", "%d is not a port; ports are 1 to 65535.", p)
				continue
			}
			r.ports = append(r.ports, uint16(p))
		}
		if rr.Expires != nil {
			c.compileExpiry(r, rr)
		}
		out = append(out, r)
	}
	return out
}

// compileExpiry reads expires: a date (the rule stops matching at 00:00 UTC
// that day) or an RFC 3339 instant.
func (c *compiler) compileExpiry(r *Rule, rr *rawRule) {
	s := *rr.Expires
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		t, err = time.Parse(time.RFC3339, s)
	}
	rng := attrRange(rr.Body, "expires", rr.DefRange)
	if err != nil {
		c.errorf(rng, "Invalid expiry date", "expires = %q: write a date as YYYY-MM-DD (the rule stops matching at 00:00 UTC that day) or an RFC 3339 time.", s)
		return
	}
	r.Expires, r.ExpiresText = t.UTC(), s
	now := c.now()
	switch {
	case !now.Before(r.Expires):
		c.diags = append(c.diags, warningAt(rng, "Expired rule",
			"Rule %q in %s %q expired on %s and no longer matches (owner %q, ticket %q); renew or remove it.", r.Name, r.RulesetKind, r.Ruleset, s, r.Owner, r.Ticket))
	case r.Expires.Sub(now) <= ExpiryWarning:
		days := int(r.Expires.Sub(now).Hours()/24) + 1
		c.diags = append(c.diags, warningAt(rng, "Rule expires soon",
			"Rule %q in %s %q expires on %s (in %d days) and will then stop matching (owner %q, ticket %q).", r.Name, r.RulesetKind, r.Ruleset, s, days, r.Owner, r.Ticket))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns `; did you mean "x"?` for a close name, or "".
func suggest(name string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := levenshtein(strings.ToLower(name), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		if len(candidates) > 0 && len(candidates) <= 8 {
			return fmt.Sprintf(" (defined: %s)", strings.Join(candidates, ", "))
		}
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// cannotAuthenticate explains, in validate's errors, why identity matchers
// need an identity source.
const cannotAuthenticate = "configure an identity source: auth { htpasswd_file, ldap or kerberos } " +
	"(Basic is accepted on proxy.tls_listen only, unless auth.allow_basic_without_tls = true) " +
	"or client certificates (proxy.tls_listen with client_ca_file). Transparent listeners never identify anyone."

// identityNames checks a rule's users or groups list: names sorted, without
// duplicates, and a config that can identify clients at all.
func (c *compiler) identityNames(rr *rawRule, attr string, names []string) []string {
	if len(names) == 0 {
		if hasAttr(rr.Body, attr) {
			c.errorf(attrRange(rr.Body, attr, rr.DefRange), "Empty "+attr, "%s = [] would never match; list at least one name or remove the attribute.", attr)
		}
		return nil
	}
	out := make([]string, 0, len(names))
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" || strings.TrimSpace(n) != n {
			c.errorf(elemRange(rr.Body, attr, i, rr.DefRange), "Invalid name", "%q: a user or group name is not empty and has no surrounding spaces.", n)
			continue
		}
		if seen[strings.ToLower(n)] {
			c.errorf(elemRange(rr.Body, attr, i, rr.DefRange), "Duplicate name", "%q is listed twice in %s (names compare without regard to case).", n, attr)
			continue
		}
		seen[strings.ToLower(n)] = true
		out = append(out, n)
	}
	if !c.cfg.CanAuthenticate() {
		c.errorf(attrRange(rr.Body, attr, rr.DefRange), "Rule cannot match anyone",
			"Rule %q matches %s, but no client can be identified: %s", rr.Name, attr, cannotAuthenticate)
	}
	sort.Strings(out)
	return out
}
