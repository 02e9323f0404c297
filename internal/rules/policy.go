package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/gaissmai/bart"
)

// Policy is the compiled decision engine: segments by longest prefix, each
// with its rules in evaluation order, over one domain index. It never changes
// after compilation and is safe for concurrent use.
type Policy struct {
	segments *bart.Table[*Segment]
	list     []*Segment
	domains  *domainIndex
	now      func() time.Time
}

// Segments returns the segments in config order.
func (p *Policy) Segments() []*Segment { return p.list }

// DomainCount is the number of distinct domain patterns compiled.
func (p *Policy) DomainCount() int { return p.domains.size() }

// SegmentFor returns the segment of a client address: the longest prefix over
// every segment's sources.
func (p *Policy) SegmentFor(src netip.Addr) (*Segment, bool) {
	return p.segments.Lookup(src.Unmap())
}

// Decide evaluates one destination for one client: the segment's own rules in
// order, then each of its policies' rules, then the segment default. The first
// matching rule that is not a monitor rule decides; a monitor rule that matches
// is recorded in Decision.Monitor and evaluation goes on. An expired rule never
// matches. Decide does not allocate unless a monitor rule matches.
func (p *Policy) Decide(req Request) Decision {
	return p.evaluate(req, nil)
}

// DecideName normalises a raw name (a CONNECT host, Host header or SNI; an IP
// literal is accepted) and decides it. A name that is not a hostname is denied
// with ReasonInvalidHost, after the segment check.
func (p *Policy) DecideName(src netip.Addr, raw string, port uint16) Decision {
	name, ip, err := hostname.Normalize(raw)
	if err != nil {
		seg, ok := p.SegmentFor(src)
		if !ok {
			return Decision{Action: Deny, Reason: ReasonUnknownSource}
		}
		return Decision{Action: Deny, Reason: ReasonInvalidHost, Segment: seg}
	}
	return p.Decide(Request{Source: src, Host: name, IP: ip, Port: port})
}

// Step is one line of an evaluation trace (egress check).
type Step struct {
	Ruleset string // "segment X" or "policy Y"
	Rule    string
	Pos     string // file:line:col
	Outcome string // "no match", "expired", "monitor: would deny", "match: deny", ...
}

// Explain is Decide with the evaluation trace, for egress check and tests.
func (p *Policy) Explain(req Request) (Decision, []Step) {
	var trace []Step
	d := p.evaluate(req, &trace)
	return d, trace
}

func (p *Policy) evaluate(req Request, trace *[]Step) Decision {
	seg, ok := p.SegmentFor(req.Source)
	if !ok {
		if trace != nil {
			*trace = append(*trace, Step{Outcome: fmt.Sprintf("source %v is in no segment: deny", req.Source)})
		}
		return Decision{Action: Deny, Reason: ReasonUnknownSource}
	}
	var buf [16]uint32
	hits := p.domains.match(req.Host, buf[:0])
	var now time.Time
	var monitor []*Rule
	wanted := false // an allow rule matched all but the identity of an unidentified client
	for _, r := range seg.rules {
		if ok, identityOnly := r.matches(&req, hits); !ok {
			if identityOnly && r.Action == Allow && !r.Monitor && (r.Expires.IsZero() || p.now().Before(r.Expires)) {
				wanted = true
				if trace != nil {
					*trace = append(*trace, r.step("no match: needs an identified user (users/groups)"))
				}
				continue
			}
			if trace != nil {
				*trace = append(*trace, r.step("no match"))
			}
			continue
		}
		if !r.Expires.IsZero() {
			if now.IsZero() {
				now = p.now()
			}
			if !now.Before(r.Expires) {
				if trace != nil {
					*trace = append(*trace, r.step("expired on "+r.ExpiresText+": skipped"))
				}
				continue
			}
		}
		if r.Monitor {
			monitor = append(monitor, r)
			if trace != nil {
				*trace = append(*trace, r.step("match, monitor only: would "+r.Action.String()))
			}
			continue
		}
		if trace != nil {
			*trace = append(*trace, r.step("match: "+r.Action.String()))
		}
		return Decision{Action: r.Action, Reason: ReasonRule, Segment: seg, Rule: r, Monitor: monitor, IdentityWanted: wanted}
	}
	if trace != nil {
		*trace = append(*trace, Step{Ruleset: "segment " + seg.Name, Outcome: "no rule matched: default " + seg.Default.String()})
	}
	return Decision{Action: seg.Default, Reason: ReasonDefault, Segment: seg, Monitor: monitor, IdentityWanted: wanted}
}

func (r *Rule) step(outcome string) Step {
	return Step{Ruleset: r.RulesetKind + " " + r.Ruleset, Rule: r.Name, Pos: r.Pos, Outcome: outcome}
}

// matches applies the rule's matchers: kinds combine with AND, the values of
// one matcher with OR; a rule with no matcher matches everything. The
// identity is checked last: identityOnly reports a rule that matched
// everything but the identity of an unidentified request.
func (r *Rule) matches(req *Request, hits []uint32) (ok, identityOnly bool) {
	if !r.matchesRequest(req, hits) {
		return false, false
	}
	if len(r.users) > 0 || len(r.groups) > 0 {
		if req.User == "" {
			return false, true
		}
		return r.matchesIdentity(req.User, req.Groups), false
	}
	return true, false
}

// matchesRequest applies the matchers other than users and groups.
func (r *Rule) matchesRequest(req *Request, hits []uint32) bool {
	if r.hasDomains {
		if req.Host == "" || !intersects(r.domainSets, hits) {
			return false
		}
	}
	if len(r.cidrs) > 0 {
		if !req.IP.IsValid() {
			return false
		}
		ip := req.IP.Unmap()
		found := false
		for _, c := range r.cidrs {
			if c.Contains(ip) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(r.ports) > 0 {
		found := false
		for _, p := range r.ports {
			if p == req.Port {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func intersects(sets, hits []uint32) bool {
	for _, h := range hits {
		for _, s := range sets {
			if s == h {
				return true
			}
		}
	}
	return false
}

// matchesIdentity: the user is one of users, or one of groups is one of the
// user's (OR within the matchers, AND with the rule's other kinds: when both
// users and groups are set, either suffices). Names compare without regard
// to case, as directories (LDAP, Active Directory, Kerberos principals as
// egress reports them) compare them: "Alice" in a rule is the directory's
// "alice", and a client cannot slip past a rule by a spelling.
func (r *Rule) matchesIdentity(user string, groups []string) bool {
	for _, u := range r.users {
		if strings.EqualFold(u, user) {
			return true
		}
	}
	for _, g := range groups {
		for _, rg := range r.groups {
			if strings.EqualFold(g, rg) {
				return true
			}
		}
	}
	return false
}
