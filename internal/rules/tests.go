package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Test is a compiled `test` block: a policy unit test run by `egress test`.
type Test struct {
	Name   string
	Source netip.Addr
	Host   string
	SNI    string
	HasSNI bool
	Port   uint16
	Expect Action
	Rule   string   // "" = any rule (or none)
	Reason Reason   // "" = any reason
	User   string   // the client's identity ("" = unidentified)
	Groups []string // its groups
	Pos    string
}

// TestResult is the outcome of one test.
type TestResult struct {
	Test     *Test
	Pass     bool
	Why      string // for failures
	Decision Decision
}

// DefaultTestPort is the destination port of a test without one.
const DefaultTestPort = 443

func (c *compiler) compileTests(raws []*rawTest) {
	seen := map[string]bool{}
	for _, rt := range raws {
		if seen[rt.Name] {
			c.errorf(&rt.DefRange, "Duplicate test", "A test named %q is already defined; test names must be unique.", rt.Name)
			continue
		}
		seen[rt.Name] = true
		t := &Test{Name: rt.Name, Host: rt.Host, Port: DefaultTestPort,
			Pos: fmt.Sprintf("%s:%d:%d", rt.DefRange.Filename, rt.DefRange.Start.Line, rt.DefRange.Start.Column)}
		src, err := netip.ParseAddr(rt.Source)
		if err != nil {
			c.errorf(attrRange(rt.Body, "source", rt.DefRange), "Invalid test source", "source = %q: write the client's IP address, e.g. \"10.20.5.7\".", rt.Source)
		}
		t.Source = src.Unmap()
		if rt.SNI != nil {
			t.SNI, t.HasSNI = *rt.SNI, true
		}
		if rt.Port != nil {
			if *rt.Port < 1 || *rt.Port > 65535 {
				c.errorf(attrRange(rt.Body, "port", rt.DefRange), "Invalid port", "port = %d: ports are 1 to 65535.", *rt.Port)
			} else {
				t.Port = uint16(*rt.Port)
			}
		}
		if a, ok := parseAction(rt.Expect); ok {
			t.Expect = a
		} else {
			c.errorf(attrRange(rt.Body, "expect", rt.DefRange), "Invalid expectation", "expect = %q: use \"allow\" or \"deny\".", rt.Expect)
		}
		if rt.Rule != nil {
			t.Rule = *rt.Rule
			if !c.ruleNames[t.Rule] {
				c.errorf(attrRange(rt.Body, "rule", rt.DefRange), "Unknown rule", "No rule named %q is defined%s.", t.Rule, suggest(t.Rule, keys(c.ruleNames)))
			}
		}
		if rt.Reason != nil {
			t.Reason = Reason(*rt.Reason)
			if !knownReasons[t.Reason] {
				c.errorf(attrRange(rt.Body, "reason", rt.DefRange), "Unknown reason", "reason = %q is not a decision reason; use one of %s.", *rt.Reason, strings.Join(reasonNames(), ", "))
			}
		}
		if rt.User != nil {
			t.User = *rt.User
		}
		if len(rt.Groups) > 0 {
			if t.User == "" {
				c.errorf(attrRange(rt.Body, "groups", rt.DefRange), "Groups without a user", "A test's groups belong to its user; add user = \"...\".")
			}
			t.Groups = append([]string(nil), rt.Groups...)
			sort.Strings(t.Groups)
		}
		c.cfg.Tests = append(c.cfg.Tests, t)
	}
}

var knownReasons = map[Reason]bool{
	ReasonRule: true, ReasonDefault: true, ReasonUnknownSource: true, ReasonInvalidHost: true,
	ReasonSNIMismatch: true, ReasonMissingSNI: true, ReasonECH: true,
	ReasonAuthRequired: true,
}

func reasonNames() []string {
	out := make([]string, 0, len(knownReasons))
	for r := range knownReasons {
		out = append(out, string(r))
	}
	sort.Strings(out)
	return out
}

// RunTests runs every test block against the compiled policy.
func (c *Config) RunTests() []TestResult {
	out := make([]TestResult, 0, len(c.Tests))
	for _, t := range c.Tests {
		out = append(out, c.RunTest(t))
	}
	return out
}

// RunTest decides one test's request the way the explicit proxy would (the
// host as CONNECT target, the sni if given as SNI) and compares.
func (c *Config) RunTest(t *Test) TestResult {
	// Like a client would: the SNI is the host unless the test says otherwise.
	sni, hasSNI := t.Host, true
	if t.HasSNI {
		sni = t.SNI
		hasSNI = t.SNI != ""
	}
	d := c.DecideAs(Names{Source: t.Source, Target: t.Host, Inner: sni, HasInner: hasSNI, TLS: true, Port: t.Port, User: t.User, Groups: t.Groups})
	res := TestResult{Test: t, Decision: d, Pass: true}
	var why []string
	if d.Action != t.Expect {
		why = append(why, fmt.Sprintf("expected %s, got %s", t.Expect, d.Action))
	}
	if t.Rule != "" && d.RuleName() != t.Rule {
		got := d.RuleName()
		if got == "" {
			got = "none (" + string(d.Reason) + ")"
		}
		why = append(why, fmt.Sprintf("expected rule %q, decided by %s", t.Rule, got))
	}
	if t.Reason != "" && d.Reason != t.Reason {
		why = append(why, fmt.Sprintf("expected reason %s, got %s", t.Reason, d.Reason))
	}
	if len(why) > 0 {
		res.Pass = false
		res.Why = strings.Join(why, "; ") + describe(d)
	}
	return res
}

func describe(d Decision) string {
	s := fmt.Sprintf(" (segment %q, reason %s", d.SegmentName(), d.Reason)
	if d.Rule != nil {
		s += fmt.Sprintf(", rule %q of %s %q", d.Rule.Name, d.Rule.RulesetKind, d.Rule.Ruleset)
	}
	return s + ")"
}
