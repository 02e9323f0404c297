package lint

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/egress-proxy/egress/internal/rules"
)

// checkRuleShapes: rules that can never match, and matchers written as an
// empty list (which the rule treats as absent: it matches everything).
func (l *linter) checkRuleShapes() {
	l.rules(func(r *rules.RuleInfo) {
		m := l.models[r]
		if m.never != "" {
			l.add(CheckUnreachable, Error, r.Range, "rule %q can never match: %s", r.Name, m.never)
		}
		for _, a := range []struct {
			name  string
			has   bool
			empty bool
		}{
			{"domains", r.HasDomains, len(r.Domains) == 0},
			{"categories", r.HasCategories, len(r.Categories) == 0},
			{"cidrs", r.HasCIDRs, len(r.CIDRs) == 0},
			{"ports", r.HasPorts, len(r.Ports) == 0},
		} {
			if a.has && a.empty {
				l.add(CheckEmptyMatcher, Error, r.Attr[a.name], "rule %q: %s = [] is not a matcher; an empty list is the same as leaving it out, so this does not narrow what the rule matches (remove it, or list values)", r.Name, a.name)
			}
		}
	})
}

// checkShadowed reports a rule that can never match because an earlier rule
// in the same evaluation order matches everything it matches and decides
// first. Within one ruleset (a policy, or a segment's own rules) that holds
// wherever the ruleset is used. A policy's rule covered by a rule of another
// ruleset is reported only when that holds in every segment using the policy
// (an exception shadowing a ban in one segment is what exceptions are for).
func (l *linter) checkShadowed() {
	reported := map[*rules.RuleInfo]bool{}
	sameSet := func(list []*rules.RuleInfo) {
		for j, rj := range list {
			by := l.coveredBy(list[:j], rj)
			if by == nil {
				continue
			}
			l.add(CheckShadowed, Error, rj.Range, "rule %q can never match: %s decides first (%s)",
				rj.Name, coverText(by), verdictAll(by, rj))
			reported[rj] = true
		}
	}
	for _, p := range l.inv.Policies {
		sameSet(p.Rules)
	}
	for _, s := range l.inv.Segments {
		sameSet(s.Rules)
	}
	// Across rulesets, per segment.
	type hit struct {
		seg string
		by  []*rules.RuleInfo
	}
	shadowedIn := map[*rules.RuleInfo][]hit{}
	usedIn := map[*rules.RuleInfo]int{}
	for _, s := range l.inv.Segments {
		order := l.inv.Order(s)
		for j, rj := range order {
			if rj.RulesetKind != "policy" {
				continue
			}
			usedIn[rj]++
			if reported[rj] {
				continue
			}
			if by := l.coveredBy(order[:j], rj); by != nil {
				shadowedIn[rj] = append(shadowedIn[rj], hit{s.Name, by})
			}
		}
	}
	l.rules(func(rj *rules.RuleInfo) {
		hs := shadowedIn[rj]
		if len(hs) == 0 || len(hs) != usedIn[rj] {
			return
		}
		var where []string
		for _, h := range hs {
			var refs []string
			for _, r := range h.by {
				refs = append(refs, ruleRef(r))
			}
			where = append(where, fmt.Sprintf("in segment %q by %s", h.seg, strings.Join(refs, " and ")))
		}
		l.add(CheckShadowed, Error, rj.Range, "rule %q can never match: in every segment that uses policy %q earlier rules match everything it matches and decide first (%s; %s)",
			rj.Name, rj.Ruleset, strings.Join(where, "; "), verdictAll(hs[0].by, rj))
	})
}

// coveredBy returns earlier rules that together match every request rj
// matches and decide (for as long as rj lives), or nil. One rule that covers
// rj on its own is preferred. Otherwise a union is accepted only when it is
// certain: the rules taken together must each be implied by rj on every
// matcher kind but one (domains, or cidrs), and on that kind their union
// must cover rj's values. Any request rj matches then has its name (or
// address) in one of them, and that one matches it on the other kinds too.
func (l *linter) coveredBy(earlier []*rules.RuleInfo, rj *rules.RuleInfo) []*rules.RuleInfo {
	mj := l.models[rj]
	if mj.never != "" || mj.expired(l.now) {
		return nil
	}
	var live []*model
	for _, ri := range earlier {
		if mi := l.models[ri]; mi.decidesUntil(mj, l.now) {
			if mj.subsetOf(mi) {
				return []*rules.RuleInfo{ri}
			}
			live = append(live, mi)
		}
	}
	if !mj.hasDom && !mj.hasCIDR {
		return nil
	}
	var by []*rules.RuleInfo
	var dom domains
	var cidrs []netip.Prefix
	for _, mi := range live {
		// mi must be implied by mj on ports, and constrain the host only
		// on the kind mj uses.
		if mi.ports != nil && !portsWithin(mj.ports, mi.ports) {
			continue
		}
		switch {
		case mj.hasDom && mi.hasDom && !mi.hasCIDR:
			dom = append(dom, mi.dom...)
		case mj.hasCIDR && mi.hasCIDR && !mi.hasDom:
			cidrs = append(cidrs, mi.cidrs...)
		default:
			continue
		}
		by = append(by, mi.r)
	}
	if len(by) < 2 {
		return nil
	}
	if mj.hasDom && !mj.dom.subsetOf(dom) || mj.hasCIDR && !prefixesCovered(mj.cidrs, cidrs) {
		return nil
	}
	// Keep only the rules that contribute, for the message.
	var used []*rules.RuleInfo
	for _, ri := range by {
		mi := l.models[ri]
		if mj.hasDom && mj.dom.overlapsSet(mi.dom) || mj.hasCIDR && anyOverlap(mj.cidrs, mi.cidrs) {
			used = append(used, ri)
		}
	}
	return used
}

func portsWithin(ps, of map[uint16]bool) bool {
	if ps == nil {
		return false
	}
	for p := range ps {
		if !of[p] {
			return false
		}
	}
	return true
}

func anyOverlap(a, b []netip.Prefix) bool {
	_, _, ok := prefixesOverlap(a, b)
	return ok
}

func coverText(by []*rules.RuleInfo) string {
	if len(by) == 1 {
		return ruleRef(by[0]) + " matches everything it matches and"
	}
	var refs []string
	for _, r := range by {
		refs = append(refs, ruleRef(r))
	}
	return "together, " + strings.Join(refs, ", ") + " match everything it matches and each"
}

func verdictAll(by []*rules.RuleInfo, r *rules.RuleInfo) string {
	if len(by) == 1 {
		return verdict(by[0], r)
	}
	if r.Monitor {
		return "a monitor rule that is never reached records nothing"
	}
	for _, b := range by {
		if b.Action != r.Action {
			return "they decide before it; not all of them " + r.Action.String()
		}
	}
	return "all " + r.Action.String() + ": the later rule is redundant"
}

func verdict(by, r *rules.RuleInfo) string {
	if r.Monitor {
		return "a monitor rule that is never reached records nothing"
	}
	if by.Action == r.Action {
		return "both " + r.Action.String() + ": the later rule is redundant"
	}
	verb := map[rules.Action]string{rules.Allow: "allows", rules.Deny: "denies"}
	return fmt.Sprintf("it %s where this rule would %s", verb[by.Action], r.Action)
}

// checkExceptions: an allow rule followed, in a segment's order, by a deny
// rule that may match the same request is an exception to that ban. A deny
// without any matcher is not a ban but the segment's real default (a final
// "deny everything else"): the allow rules before it are an allow-list. It must
// document itself (owner, ticket, expires) and be no wider than the bans it
// excepts: some request it allows must be denied by one of them, or the
// exception allows more than was asked for.
func (l *linter) checkExceptions() {
	done := map[*rules.RuleInfo]bool{}
	var wider []func()
	meta := map[*rules.RuleInfo][]*model{}
	var metaOrder []*rules.RuleInfo
	for _, s := range l.inv.Segments {
		order := l.inv.Order(s)
		for i, re := range order {
			me := l.models[re]
			if re.Action != rules.Allow || re.Monitor || me.never != "" || me.expired(l.now) {
				continue
			}
			var bans []*model
			for _, rd := range order[i+1:] {
				md := l.models[rd]
				if rd.Action == rules.Deny && !rd.Monitor && !md.expired(l.now) && !md.catchAll() && me.mayOverlap(md) {
					bans = append(bans, md)
				}
			}
			if len(bans) == 0 {
				continue
			}
			if meta[re] == nil {
				metaOrder = append(metaOrder, re)
			}
			meta[re] = append(meta[re], bans...)
			if done[re] || len(re.Other) > 0 { // matchers lint does not model may make it narrower
				continue
			}
			if w := widerWitness(me, bans); w != "" {
				done[re] = true
				seg, re, bans := s, re, bans
				wider = append(wider, func() {
					l.add(CheckExceptionWider, Warning, re.Range, "allow rule %q is wider than the bans it excepts in segment %q (%s): it also allows %s, which none of them denies%s",
						re.Name, seg.Name, banList(bans), w, defaultNote(seg))
				})
			}
		}
	}
	for _, re := range metaOrder {
		var missing []string
		if re.Owner == "" {
			missing = append(missing, "owner")
		}
		if re.Ticket == "" {
			missing = append(missing, "ticket")
		}
		if re.ExpiresText == "" {
			missing = append(missing, "expires")
		}
		if len(missing) > 0 {
			l.add(CheckExceptionMetadata, Warning, re.Range, "allow rule %q is an exception to %s but has no %s",
				re.Name, banList(meta[re]), strings.Join(missing, ", "))
		}
	}
	for _, f := range wider {
		f()
	}
}

func defaultNote(s *rules.SegmentInfo) string {
	if s.Default == rules.Deny {
		return " (and the segment default denies it)"
	}
	return " (a ban added later on those names would be excepted too)"
}

func banList(bans []*model) string {
	seen := map[*rules.RuleInfo]bool{}
	var out []string
	for _, b := range bans {
		if seen[b.r] {
			continue
		}
		seen[b.r] = true
		out = append(out, fmt.Sprintf("%q", b.r.Name))
	}
	if len(out) > 4 {
		out = append(out[:4], fmt.Sprintf("and %d more", len(out)-4))
	}
	return "ban " + strings.Join(out, ", ")
}

// widerWitness describes requests e matches that no ban matches, or "" when
// none is certain. It looks for one kind (the destination, or the port) on
// which every ban fails for some value e accepts: any request of e with that
// value is then allowed by e and matched by no ban.
func widerWitness(e *model, bans []*model) string {
	if w := hostWitness(e, bans); w != "" {
		return w
	}
	// Ports: a port e accepts that no ban names.
	for _, b := range bans {
		if b.ports == nil {
			return ""
		}
	}
	if e.ports == nil {
		return "every port other than " + portList(bans)
	}
	var ps []int
	for p := range e.ports {
		in := false
		for _, b := range bans {
			in = in || b.ports[p]
		}
		if !in {
			ps = append(ps, int(p))
		}
	}
	if len(ps) == 0 {
		return ""
	}
	sort.Ints(ps)
	return fmt.Sprintf("port %v", ps)
}

func portList(bans []*model) string {
	set := map[int]bool{}
	for _, b := range bans {
		for p := range b.ports {
			set[int(p)] = true
		}
	}
	var ps []int
	for p := range set {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	return fmt.Sprint(ps)
}

func hostWitness(e *model, bans []*model) string {
	var names domains
	var ips []netip.Prefix
	for _, b := range bans {
		switch {
		case b.hasDom && b.dom.dynamic():
			return "" // the ban's names are not all known
		case b.hasDom:
			names = append(names, b.dom...)
		case b.hasCIDR:
			ips = append(ips, b.cidrs...)
		default:
			return "" // this ban matches every destination
		}
	}
	switch {
	case e.hasDom:
		var first string
		n, total := 0, 0
		e.dom.each(func(s *domSet, p rules.DomainPattern) bool {
			total++
			w := ""
			switch {
			case p.Exact && !names.matchesName(p.Base):
				w = p.Base
			case p.Sub && !names.subAbove(p.Base, true):
				w = "*." + p.Base
			}
			if w != "" {
				n++
				if first == "" {
					first = fmt.Sprintf("%s (%s, %s:%d)", w, s.name, p.Range.Filename, p.Range.Start.Line)
				}
			}
			return true
		})
		if n == 0 {
			return ""
		}
		if total == 1 {
			return first
		}
		return fmt.Sprintf("%d of its %d domain patterns, e.g. %s", n, total, first)
	case e.hasCIDR:
		for _, p := range e.cidrs {
			if !prefixCovered(p, ips) {
				return "addresses in " + p.String()
			}
		}
		return ""
	default:
		return "every destination outside the bans (it has no domain or cidrs matcher)"
	}
}

// checkAllowDenyOverlap: in one segment, a category used to allow and
// another used to deny share names, and neither list contains the other
// (allowing a sub-list of a banned list is the usual exception, and a list
// that contains the other is reported by the exception checks).
func (l *linter) checkAllowDenyOverlap() {
	type pair struct{ allow, deny string }
	seen := map[pair]bool{}
	for _, s := range l.inv.Segments {
		type use struct {
			r   *rules.RuleInfo
			ref rules.NameRef
		}
		var allows, denies []use
		for _, r := range l.inv.Order(s) {
			if r.Monitor || l.models[r].expired(l.now) {
				continue
			}
			for _, c := range r.Categories {
				if r.Action == rules.Allow {
					allows = append(allows, use{r, c})
				} else {
					denies = append(denies, use{r, c})
				}
			}
		}
		for _, a := range allows {
			for _, d := range denies {
				k := pair{a.ref.Name, d.ref.Name}
				if a.ref.Name == d.ref.Name || seen[k] {
					continue
				}
				as, ds := domains{l.cats[a.ref.Name]}, domains{l.cats[d.ref.Name]}
				if as[0] == nil || ds[0] == nil || as.dynamic() || ds.dynamic() || !as.overlapsSet(ds) || as.subsetOf(ds) || ds.subsetOf(as) {
					continue
				}
				seen[k] = true
				var ex []string
				n := 0
				as.each(func(_ *domSet, p rules.DomainPattern) bool {
					if ds.overlaps(p) {
						n++
						if len(ex) < 3 {
							ex = append(ex, fmt.Sprintf("%s (%s:%d)", p, p.Range.Filename, p.Range.Start.Line))
						}
					}
					return true
				})
				l.add(CheckAllowDenyOverlap, Warning, a.ref.Range, "category %q is allowed by rule %q and category %q denied by rule %q in segment %q, and %d of its patterns are in both, e.g. %s; which wins depends on rule order",
					a.ref.Name, a.r.Name, d.ref.Name, d.r.Name, s.Name, n, strings.Join(ex, ", "))
			}
		}
	}
}

// checkUnused: categories no rule names, policies no segment lists.
func (l *linter) checkUnused() {
	usedCat := map[string]bool{}
	l.rules(func(r *rules.RuleInfo) {
		for _, c := range r.Categories {
			usedCat[c.Name] = true
		}
	})
	for _, c := range l.inv.Categories {
		if !usedCat[c.Name] {
			l.add(CheckUnusedCategory, Warning, c.Range, "category %q is defined but no rule uses it", c.Name)
		}
	}
	usedPol := map[string]bool{}
	for _, s := range l.inv.Segments {
		for _, p := range s.Policies {
			usedPol[p.Name] = true
		}
	}
	for _, p := range l.inv.Policies {
		if !usedPol[p.Name] {
			l.add(CheckUnusedPolicy, Warning, p.Range, "policy %q is defined but no segment lists it in policies", p.Name)
		}
	}
}

// checkExpiry: expired rules (they no longer match) and rules that expire
// within ExpirySoon.
func (l *linter) checkExpiry() {
	l.rules(func(r *rules.RuleInfo) {
		if r.Expires.IsZero() {
			return
		}
		at := r.Attr["expires"]
		switch left := r.Expires.Sub(l.now); {
		case left <= 0:
			l.add(CheckExpired, Error, at, "rule %q expired on %s and no longer matches (owner %q, ticket %q); renew or remove it", r.Name, r.ExpiresText, r.Owner, r.Ticket)
		case left <= ExpirySoon:
			l.add(CheckExpiresSoon, Warning, at, "rule %q expires on %s, in %d days (owner %q, ticket %q)", r.Name, r.ExpiresText, int(left.Hours()/24)+1, r.Owner, r.Ticket)
		}
	})
}

// checkSegments: two segments whose sources overlap, where neither's
// sources contain the other's (within one address family). Nesting (a team inside a department) is what
// longest-prefix match is for; a partial overlap splits addresses between
// them in a way nobody wrote down.
func (l *linter) checkSegments() {
	segs := l.inv.Segments
	prefixes := func(s *rules.SegmentInfo, v4 bool) []netip.Prefix {
		var out []netip.Prefix
		for _, src := range s.Sources {
			if src.Prefix.Addr().Is4() == v4 {
				out = append(out, src.Prefix)
			}
		}
		return out
	}
	// Per address family: IPv4 and IPv6 never overlap, and a team nested in
	// a department's IPv4 range with an IPv6 range of its own is nested.
	partial := func(a, b *rules.SegmentInfo) (netip.Prefix, bool) {
		for _, v4 := range []bool{true, false} {
			pa, pb := prefixes(a, v4), prefixes(b, v4)
			if _, q, ok := prefixesOverlap(pa, pb); ok && !prefixesCovered(pa, pb) && !prefixesCovered(pb, pa) {
				return q, true
			}
		}
		return netip.Prefix{}, false
	}
	for j := range segs {
		for i := range segs[:j] {
			q, ok := partial(segs[i], segs[j])
			if !ok {
				continue
			}
			at := segs[j].Range
			for _, src := range segs[j].Sources {
				if src.Prefix == q {
					at = src.Range
				}
			}
			l.add(CheckSegmentOverlap, Warning, at, "the sources of segment %q overlap those of segment %q (%s) but neither segment contains the other; nest one inside the other or split the ranges",
				segs[j].Name, segs[i].Name, q)
		}
	}
}
