// Package lint owns the static review of a policy (egress lint): findings a
// reviewer of a policy change needs, each with a check id, a severity, a
// message and the file:line:col it is about, and the waivers that silence a
// finding on purpose.
//
// It reads the configuration only through rules.Inspect (a read-only
// description with source positions) and never decides traffic. Every check
// is conservative: a finding that claims a rule can never match is reported
// only when that is certain under the matcher's semantics (sets.go).
package lint

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
	"github.com/hashicorp/hcl/v2"
)

// Check ids: the names used in output, in JSON and in waivers.
const (
	CheckShadowed          = "shadowed"           // an earlier rule matches a superset and decides
	CheckUnreachable       = "unreachable"        // a rule whose matchers can never all hold
	CheckEmptyMatcher      = "empty-matcher"      // domains = [] etc.: an empty list is no matcher and matches everything
	CheckExceptionWider    = "exception-wider"    // an allow exception wider than the bans it excepts
	CheckExceptionMetadata = "exception-metadata" // an allow exception without owner, ticket or expires
	CheckAllowDenyOverlap  = "allow-deny-overlap" // a name in an allow and a deny category of one segment
	CheckUnusedCategory    = "unused-category"
	CheckUnusedPolicy      = "unused-policy"
	CheckExpired           = "expired"
	CheckExpiresSoon       = "expires-soon"
	CheckSegmentOverlap    = "segment-overlap" // sources overlap without one segment containing the other
	CheckWaiver            = "waiver"          // a waiver that is malformed or waives nothing
)

// Checks lists every check id, for waiver validation and the docs.
var Checks = []string{CheckShadowed, CheckUnreachable, CheckEmptyMatcher, CheckExceptionWider,
	CheckExceptionMetadata, CheckAllowDenyOverlap, CheckUnusedCategory, CheckUnusedPolicy,
	CheckExpired, CheckExpiresSoon, CheckSegmentOverlap, CheckWaiver}

// Severity: error for what is certainly wrong (a rule that never applies), warning
// for what a reviewer must look at. Both make egress lint exit 1.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one result.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Waived   bool     `json:"waived,omitempty"`
	Reason   string   `json:"waiver_reason,omitempty"`
	rng      hcl.Range
}

// Pos is file:line:col.
func (f Finding) Pos() string { return fmt.Sprintf("%s:%d:%d", f.File, f.Line, f.Column) }

func (f Finding) String() string {
	s := fmt.Sprintf("%s: %s: [%s] %s", f.Pos(), f.Severity, f.Check, f.Message)
	if f.Waived {
		s += " (waived: " + f.Reason + ")"
	}
	return s
}

// Options tune Run.
type Options struct {
	Now func() time.Time // clock for expiry checks; nil means time.Now
}

// ExpirySoon is how far ahead an expiring rule is reported (as validate warns).
const ExpirySoon = rules.ExpiryWarning

// Run lints a loaded inventory. Findings are sorted by position; waived ones
// are included with Waived set.
func Run(inv *rules.Inventory, opt Options) []Finding {
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	l := &linter{inv: inv, now: now().UTC(), models: map[*rules.RuleInfo]*model{}, cats: map[string]*domSet{}}
	for _, c := range inv.Categories {
		l.cats[c.Name] = newDomSet("category "+c.Name, c.Patterns, c.Dynamic)
	}
	l.rules(func(r *rules.RuleInfo) { l.models[r] = l.model(r) })

	l.checkRuleShapes()
	l.checkShadowed()
	l.checkExceptions()
	l.checkAllowDenyOverlap()
	l.checkUnused()
	l.checkExpiry()
	l.checkSegments()
	out := applyWaivers(inv.HCLFiles, l.out)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Check < b.Check
	})
	return out
}

// Count returns the findings that are not waived.
func Count(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if !f.Waived {
			n++
		}
	}
	return n
}

type linter struct {
	inv    *rules.Inventory
	now    time.Time
	models map[*rules.RuleInfo]*model
	cats   map[string]*domSet
	out    []Finding
}

func (l *linter) add(check string, sev Severity, r hcl.Range, format string, args ...any) {
	l.out = append(l.out, Finding{Check: check, Severity: sev, Message: fmt.Sprintf(format, args...),
		File: r.Filename, Line: r.Start.Line, Column: r.Start.Column, rng: r})
}

// rules visits every rule once: each policy's, then each segment's own.
func (l *linter) rules(f func(*rules.RuleInfo)) {
	for _, p := range l.inv.Policies {
		for _, r := range p.Rules {
			f(r)
		}
	}
	for _, s := range l.inv.Segments {
		for _, r := range s.Rules {
			f(r)
		}
	}
}

// model is what a rule matches, in the terms of sets.go. A request has a
// name, or an IP literal, never both: a rule with a domain matcher and a
// cidrs matcher matches nothing.
type model struct {
	r       *rules.RuleInfo
	hasDom  bool
	dom     domains
	hasCIDR bool
	cidrs   []netip.Prefix
	ports   map[uint16]bool // nil: any port
	never   string          // why it can never match, or ""
}

func (l *linter) model(r *rules.RuleInfo) *model {
	m := &model{r: r, cidrs: r.CIDRs}
	if len(r.Domains) > 0 {
		m.dom = append(m.dom, newDomSet("inline domains", r.Domains, false))
	}
	for _, c := range r.Categories {
		if s := l.cats[c.Name]; s != nil {
			m.dom = append(m.dom, s)
		}
	}
	m.hasDom = len(r.Domains) > 0 || len(r.Categories) > 0
	m.hasCIDR = len(r.CIDRs) > 0
	if len(r.Ports) > 0 {
		m.ports = map[uint16]bool{}
		for _, p := range r.Ports {
			m.ports[p] = true
		}
	}
	switch {
	case m.hasDom && m.hasCIDR:
		m.never = "it has both a name matcher (domains/categories) and cidrs, but a destination is either a name or an IP literal, never both"
	case m.hasDom && m.dom.empty():
		m.never = "its domain matcher is empty: every category it names holds no domain"
	}
	return m
}

// catchAll: no matcher at all, the rule matches every request.
func (m *model) catchAll() bool {
	return !m.hasDom && !m.hasCIDR && m.ports == nil
}

func (m *model) expired(now time.Time) bool {
	return !m.r.Expires.IsZero() && !now.Before(m.r.Expires)
}

// decidesUntil: when this rule matches, it decides, for as long as other
// lives: not a monitor rule, and it does not expire before other does. A
// rule with matchers lint does not model (RuleInfo.Other) may match less
// than its modelled matchers say, so it is never counted on to cover.
func (m *model) decidesUntil(other *model, now time.Time) bool {
	if m.r.Monitor || m.never != "" || m.expired(now) || len(m.r.Other) > 0 {
		return false
	}
	if m.r.Expires.IsZero() {
		return true
	}
	return !other.r.Expires.IsZero() && !other.r.Expires.After(m.r.Expires)
}

// subsetOf: does o match every request m matches? Kind by kind: each of o's
// matchers must be implied by m's (sufficient, and exact for non-empty m).
func (m *model) subsetOf(o *model) bool {
	if o.hasDom && (!m.hasDom || m.hasCIDR || !m.dom.subsetOf(o.dom)) {
		return false
	}
	if o.hasCIDR && (!m.hasCIDR || m.hasDom || !prefixesCovered(m.cidrs, o.cidrs)) {
		return false
	}
	if o.ports != nil {
		if m.ports == nil {
			return false
		}
		for p := range m.ports {
			if !o.ports[p] {
				return false
			}
		}
	}
	return true
}

// mayOverlap: might one request match both? (true when unsure)
func (m *model) mayOverlap(o *model) bool {
	if m.never != "" || o.never != "" {
		return false
	}
	if (m.hasDom && o.hasCIDR) || (m.hasCIDR && o.hasDom) {
		return false
	}
	if m.hasDom && o.hasDom && !m.dom.overlapsSet(o.dom) {
		return false
	}
	if m.hasCIDR && o.hasCIDR {
		if _, _, ok := prefixesOverlap(m.cidrs, o.cidrs); !ok {
			return false
		}
	}
	if m.ports != nil && o.ports != nil {
		for p := range m.ports {
			if o.ports[p] {
				return true
			}
		}
		return false
	}
	return true
}

func ruleRef(r *rules.RuleInfo) string {
	return fmt.Sprintf("rule %q of %s %q (%s:%d)", r.Name, r.RulesetKind, r.Ruleset, r.Range.Filename, r.Range.Start.Line)
}
