// Package report owns `egress report`: an attestation of a configuration for
// auditors. Build turns a loaded rules.Config into a Report (what is denied in
// each segment, by which rule and list, every exception with its owner,
// ticket and expiry, the test block results); Events adds what recorded ECS
// events show (hits per rule and exception, unique sources, a daily series,
// what monitor rules would have blocked); WriteHTML, WriteJSON and
// WriteMarkdown render it.
//
// Events are streamed: nothing is kept per event, only counts per
// (rule, ruleset, action) key, per day and a bounded set of source addresses
// (see the limits in events.go), so memory does not grow with the number of
// events.
package report

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
)

// Report is an attestation of one configuration, optionally with events.
type Report struct {
	Generated     time.Time `json:"generated"`
	Config        string    `json:"config"`
	ConfigVersion string    `json:"config_version"`
	// Commit is `git rev-parse HEAD` in the config's folder ("" outside a
	// git tree); Dirty says whether a config file differs from it.
	Commit     string       `json:"commit,omitempty"`
	Dirty      bool         `json:"dirty,omitempty"`
	Categories []Category   `json:"categories"`
	Segments   []Segment    `json:"segments"`
	Exceptions []Exception  `json:"exceptions"`
	Tests      []TestResult `json:"tests"`
	TestsFail  int          `json:"tests_failed"`
	Events     *Events      `json:"events,omitempty"`
}

// Category is a named domain list.
type Category struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Entries     int      `json:"entries"`
	Sources     []string `json:"sources,omitempty"` // list files, feed URLs, "inline domains"
}

// Segment is one network segment and its rules in evaluation order.
type Segment struct {
	Name    string   `json:"name"`
	Default string   `json:"default"`
	Sources []string `json:"sources"`
	// RequireAuth: every client of the segment must identify itself (407).
	RequireAuth bool   `json:"require_auth,omitempty"`
	Rules       []Rule `json:"rules"`
}

// Rule is one rule as a segment evaluates it.
type Rule struct {
	Name          string   `json:"name"`
	Ruleset       string   `json:"ruleset"`
	RulesetKind   string   `json:"ruleset_kind"`
	Action        string   `json:"action"`
	Monitor       bool     `json:"monitor,omitempty"`
	Description   string   `json:"description,omitempty"`
	Categories    []string `json:"categories,omitempty"`
	InlineDomains bool     `json:"inline_domains,omitempty"`
	CIDRs         []string `json:"cidrs,omitempty"`
	Ports         []int    `json:"ports,omitempty"`
	// Users and Groups: the rule matches only identified clients who are one
	// of Users or in one of Groups (docs/identity.md).
	Users     []string `json:"users,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	Exception bool     `json:"exception,omitempty"`
	Expired   bool     `json:"expired,omitempty"`
	// Since is when the rule's header line was last committed
	// (YYYY-MM-DD, git blame), "uncommitted", or "" outside a git tree.
	Since string `json:"since,omitempty"`
	Pos   string `json:"pos"`
}

// Matches is the rule's matchers in words ("categories social, video; port 443").
func (r Rule) Matches() string { return r.describe(func(n string) string { return n }) }

// describe is Matches with each category name rendered by cat.
func (r Rule) describe(cat func(string) string) string {
	var parts []string
	if len(r.Categories) > 0 {
		names := make([]string, len(r.Categories))
		for i, n := range r.Categories {
			names[i] = cat(n)
		}
		parts = append(parts, "categories "+strings.Join(names, ", "))
	}
	if r.InlineDomains {
		parts = append(parts, "own domain list")
	}
	if len(r.CIDRs) > 0 {
		parts = append(parts, "networks "+strings.Join(r.CIDRs, ", "))
	}
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(p)
		}
		parts = append(parts, "ports "+strings.Join(ps, ", "))
	}
	if len(r.Users) > 0 {
		parts = append(parts, "users "+strings.Join(r.Users, ", "))
	}
	if len(r.Groups) > 0 {
		parts = append(parts, "groups "+strings.Join(r.Groups, ", "))
	}
	if len(parts) == 0 {
		return "everything"
	}
	return strings.Join(parts, "; ")
}

// Exception is a rule that documents an exception (owner, ticket or expires).
type Exception struct {
	Rule        string   `json:"rule"`
	Ruleset     string   `json:"ruleset"`
	RulesetKind string   `json:"ruleset_kind"`
	Action      string   `json:"action"`
	Matches     string   `json:"matches"`
	Segments    []string `json:"segments"`
	Owner       string   `json:"owner"`
	Ticket      string   `json:"ticket"`
	Expires     string   `json:"expires"`
	// DaysLeft is whole days until the exception stops matching (negative:
	// expired that many days ago); nil without expires.
	DaysLeft *int     `json:"days_left,omitempty"`
	Expired  bool     `json:"expired"`
	Missing  []string `json:"missing,omitempty"` // owner, ticket, expires not given
	Since    string   `json:"since,omitempty"`   // as Rule.Since
	Pos      string   `json:"pos"`
}

// TestResult is one test block's outcome.
type TestResult struct {
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Why      string `json:"why,omitempty"`
	Decision string `json:"decision"`
	Pos      string `json:"pos"`
}

// Options tune Build.
type Options struct {
	// Now is the report's clock (days left, expiry); zero means time.Now.
	Now time.Time
	// NoGit skips the git lookup.
	NoGit bool
}

// Build describes cfg. The tests run on cfg's own clock (rules.Options.Now).
func Build(cfg *rules.Config, opt Options) *Report {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	r := &Report{Generated: now, Config: cfg.Source, ConfigVersion: cfg.Version,
		Categories: []Category{}, Segments: []Segment{}, Exceptions: []Exception{}, Tests: []TestResult{}}
	since := func(string) string { return "" }
	if !opt.NoGit {
		r.Commit, r.Dirty = gitCommit(cfg.Source, cfg.Files)
		if r.Commit != "" {
			b := newBlamer()
			defer b.cancel()
			since = b.since
		}
	}
	rel := relativizer(cfg.Source)
	srcs := cfg.AttestCategorySources()
	for name, list := range srcs {
		for i := range list {
			list[i] = rel(list[i])
		}
		srcs[name] = list
	}
	for _, c := range cfg.Categories {
		r.Categories = append(r.Categories, Category{Name: c.Name, Description: c.Description, Entries: c.Domains, Sources: srcs[c.Name]})
	}
	exc := map[*rules.Rule]int{} // rule -> index in r.Exceptions
	for _, s := range cfg.Policy.Segments() {
		seg := Segment{Name: s.Name, Default: s.Default.String(), RequireAuth: s.RequireAuth, Rules: []Rule{}}
		for _, p := range s.Sources {
			seg.Sources = append(seg.Sources, p.String())
		}
		for _, cr := range s.Rules() {
			rr := Rule{Name: cr.Name, Ruleset: cr.Ruleset, RulesetKind: cr.RulesetKind, Action: cr.Action.String(),
				Monitor: cr.Monitor, Description: cr.Description, Exception: cr.HasException(), Pos: rel(cr.Pos),
				Expired: !cr.Expires.IsZero() && !now.Before(cr.Expires)}
			rr.Since = since(cr.Pos)
			rr.Categories, rr.InlineDomains = cfg.AttestCategories(cr)
			for _, p := range cr.AttestCIDRs() {
				rr.CIDRs = append(rr.CIDRs, p.String())
			}
			for _, p := range cr.AttestPorts() {
				rr.Ports = append(rr.Ports, int(p))
			}
			rr.Users = slices.Clone(cr.Users())
			rr.Groups = slices.Clone(cr.Groups())
			seg.Rules = append(seg.Rules, rr)
			if !cr.HasException() {
				continue
			}
			if i, ok := exc[cr]; ok {
				r.Exceptions[i].Segments = append(r.Exceptions[i].Segments, s.Name)
				continue
			}
			e := Exception{Rule: cr.Name, Ruleset: cr.Ruleset, RulesetKind: cr.RulesetKind, Action: rr.Action,
				Matches: rr.Matches(), Segments: []string{s.Name}, Owner: cr.Owner, Ticket: cr.Ticket,
				Expires: cr.ExpiresText, Expired: rr.Expired, Since: rr.Since, Pos: rr.Pos}
			if !cr.Expires.IsZero() {
				d := daysUntil(now, cr.Expires)
				e.DaysLeft = &d
			}
			for _, m := range []struct{ name, v string }{{"owner", cr.Owner}, {"ticket", cr.Ticket}, {"expires", cr.ExpiresText}} {
				if m.v == "" {
					e.Missing = append(e.Missing, m.name)
				}
			}
			exc[cr] = len(r.Exceptions)
			r.Exceptions = append(r.Exceptions, e)
		}
		r.Segments = append(r.Segments, seg)
	}
	// Soonest expiry first; exceptions without expires last.
	slices.SortStableFunc(r.Exceptions, func(a, b Exception) int {
		switch {
		case a.DaysLeft == nil && b.DaysLeft == nil:
			return 0
		case a.DaysLeft == nil:
			return 1
		case b.DaysLeft == nil:
			return -1
		}
		return *a.DaysLeft - *b.DaysLeft
	})
	for _, t := range cfg.RunTests() {
		d := t.Decision
		dec := d.Action.String() + " (" + string(d.Reason)
		if d.Rule != nil {
			dec += ", rule " + d.Rule.Name
		}
		dec += ")"
		r.Tests = append(r.Tests, TestResult{Name: t.Test.Name, Pass: t.Pass, Why: t.Why, Decision: dec, Pos: rel(t.Test.Pos)})
		if !t.Pass {
			r.TestsFail++
		}
	}
	return r
}

// MaxBlames bounds the git blame calls of one report.
const MaxBlames = 2000

// blamer finds when a rule's header line was committed, one `git blame` per
// distinct file:line, within an overall deadline.
type blamer struct {
	ctx    context.Context
	cancel context.CancelFunc
	cache  map[string]string
}

func newBlamer() *blamer {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return &blamer{ctx: ctx, cancel: cancel, cache: map[string]string{}}
}

// since takes a "file:line:col" position.
func (b *blamer) since(pos string) string {
	if v, ok := b.cache[pos]; ok {
		return v
	}
	if len(b.cache) >= MaxBlames || b.ctx.Err() != nil {
		return ""
	}
	b.cache[pos] = ""
	i := strings.LastIndexByte(pos, ':')
	if i < 0 {
		return ""
	}
	j := strings.LastIndexByte(pos[:i], ':')
	if j < 0 {
		return ""
	}
	file, line := pos[:j], pos[j+1:i]
	if _, err := strconv.Atoi(line); err != nil {
		return ""
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return ""
	}
	out, err := git(b.ctx, filepath.Dir(abs), "blame", "--no-textconv", "--porcelain", "-L", line+","+line, "--", abs).Output()
	if err != nil {
		return ""
	}
	v := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "0000000000000000000000000000000000000000 ") {
			v = "uncommitted"
			break
		}
		if t, ok := strings.CutPrefix(l, "committer-time "); ok {
			if sec, err := strconv.ParseInt(t, 10, 64); err == nil {
				v = time.Unix(sec, 0).UTC().Format(time.DateOnly)
			}
			break
		}
	}
	b.cache[pos] = v
	return v
}

// relativizer returns a function that shortens paths under the config's
// folder to paths relative to it (positions and list files read better).
func relativizer(source string) func(string) string {
	dir := source
	if fi, err := os.Stat(source); err != nil || !fi.IsDir() {
		dir = filepath.Dir(source)
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	return func(p string) string {
		if prefix == "."+string(filepath.Separator) || strings.HasPrefix(source, "<") {
			return p
		}
		return strings.TrimPrefix(p, prefix)
	}
}

// daysUntil is the whole days from now until t, rounded down (toward the
// past): an exception expiring in 36 hours has 1 day left, one that expired
// 1 hour ago has -1.
func daysUntil(now, t time.Time) int {
	d := t.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// git runs git in dir without the repository configuration's hooks into
// other programs: the config folder may be an untrusted checkout, and its
// .git/config could name an fsmonitor or a textconv command that git would
// run. Terminal prompts are off; stderr is discarded.
func git(ctx context.Context, dir string, args ...string) *exec.Cmd {
	pre := []string{"-C", dir, "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false", "-c", "diff.external=", "--no-pager"}
	cmd := exec.CommandContext(ctx, "git", append(pre, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
	return cmd
}

// gitCommit returns HEAD of the git tree holding the config, and whether any
// of files differs from it. Not in a git tree, no git, or any error: "".
func gitCommit(source string, files []string) (string, bool) {
	if source == "" || strings.HasPrefix(source, "<") {
		return "", false
	}
	abs, err := filepath.Abs(source)
	if err != nil {
		return "", false
	}
	dir := abs
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		dir = filepath.Dir(abs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := git(ctx, dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	head := strings.TrimSpace(string(out))
	args := []string{"status", "--porcelain", "--"}
	for _, f := range files {
		if a, err := filepath.Abs(f); err == nil {
			args = append(args, a)
		}
	}
	st, err := git(ctx, dir, args...).Output()
	return head, err == nil && len(strings.TrimSpace(string(st))) > 0
}
