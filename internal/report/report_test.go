package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/rules"
)

// TestHCL is a small policy with every kind of row the report shows: a
// category from a list file and inline domains, deny rules shared by two
// segments, an exception with owner/ticket/expires, one without any expiry,
// a monitor rule, CIDR and port matchers, passing test blocks.
const TestHCL = `
category "social" {
  description = "social networks"
  domains     = ["tiktok.com"]
  files       = ["social.txt"]
}
category "ai" { domains = ["chat.example", "llm.example"] }

policy "baseline" {
  rule "ai-rollout" {
    action     = "deny"
    monitor    = true
    categories = ["ai"]
    owner      = "ssi@example.org"
  }
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
  rule "no-doh-ips" {
    action = "deny"
    cidrs  = ["203.0.113.53/32"]
    ports  = [443, 853]
  }
}

segment "ministry" {
  sources  = ["10.20.0.0/16"]
  default  = "allow"
  policies = ["baseline"]
}

segment "press" {
  sources = ["10.20.5.0/24"]
  default = "allow"
  rule "press-social" {
    action     = "allow"
    categories = ["social"]
    owner      = "press@example.org"
    ticket     = "SEC-7"
    expires    = "2027-01-31"
  }
  policies = ["baseline"]
}

test "ministry: tiktok denied" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-social"
}
test "press: tiktok allowed" {
  source = "10.20.5.9"
  host   = "www.tiktok.com"
  expect = "allow"
  rule   = "press-social"
}
`

// Now is the reports' clock: 2027-01-01 12:00 UTC, 29.5 days before the
// press exception expires.
var Now = time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)

// WriteConfig writes TestHCL (plus extra HCL) and its list into dir.
func WriteConfig(tb testing.TB, dir, extra string) string {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, "social.txt"), []byte("# list\nfacebook.com\ninstagram.com\nx.com\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(p, []byte(TestHCL+extra), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func mustLoad(tb testing.TB, p string) *rules.Config {
	tb.Helper()
	cfg, diags := rules.Load(p, rules.Options{Now: func() time.Time { return Now }})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	return cfg
}

func load(tb testing.TB, extra string) *rules.Config {
	tb.Helper()
	p := WriteConfig(tb, tb.TempDir(), extra)
	cfg, diags := rules.Load(p, rules.Options{Now: func() time.Time { return Now }})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	return cfg
}

func TestBuild(t *testing.T) {
	cfg := load(t, "")
	r := Build(cfg, Options{Now: Now, NoGit: true})
	if r.ConfigVersion != cfg.Version || r.ConfigVersion == "" || r.Commit != "" {
		t.Errorf("version %q commit %q", r.ConfigVersion, r.Commit)
	}
	if len(r.Segments) != 2 || r.Segments[0].Name != "ministry" || r.Segments[1].Name != "press" {
		t.Fatalf("segments %+v", r.Segments)
	}
	press := r.Segments[1]
	if press.Default != "allow" || strings.Join(press.Sources, ",") != "10.20.5.0/24" {
		t.Errorf("press %+v", press)
	}
	var got []string
	for _, ru := range press.Denied() {
		got = append(got, ru.Name+":"+ru.Matches())
	}
	if want := "no-social:categories social|no-doh-ips:networks 203.0.113.53/32; ports 443, 853"; strings.Join(got, "|") != want {
		t.Errorf("denied in press = %q, want %q (monitor rules are not denials)", strings.Join(got, "|"), want)
	}
	if c := r.Categories[0]; c.Name != "social" || c.Entries != 4 || len(c.Sources) != 2 || c.Sources[0] != "inline domains" || !strings.HasSuffix(c.Sources[1], "social.txt") {
		t.Errorf("category %+v", c)
	}
	if s := r.Describe(press.Rules[2]); s != "categories social (4)" {
		t.Errorf("describe %q", s)
	}
	if len(r.Exceptions) != 2 {
		t.Fatalf("exceptions %+v", r.Exceptions)
	}
	e := r.Exceptions[0] // soonest expiry first
	if e.Rule != "press-social" || e.Owner != "press@example.org" || e.Ticket != "SEC-7" || e.Expires != "2027-01-31" ||
		e.DaysLeft == nil || *e.DaysLeft != 29 || e.Expired || len(e.Missing) != 0 || strings.Join(e.Segments, ",") != "press" {
		t.Errorf("exception %+v", e)
	}
	m := r.Exceptions[1] // the monitor rule is shared by both segments, listed once
	if m.Rule != "ai-rollout" || m.DaysLeft != nil || strings.Join(m.Missing, ",") != "ticket,expires" || strings.Join(m.Segments, ",") != "ministry,press" {
		t.Errorf("monitor exception %+v", m)
	}
	if len(r.Tests) != 2 || r.TestsFail != 0 || !r.Tests[0].Pass || !strings.Contains(r.Tests[0].Decision, "deny (rule, rule no-social)") {
		t.Errorf("tests %+v", r.Tests)
	}
	// Expired a day later than its date (00:00 UTC that day).
	r2 := Build(cfg, Options{Now: time.Date(2027, 2, 1, 6, 0, 0, 0, time.UTC), NoGit: true})
	if e := r2.Exceptions[0]; !e.Expired || *e.DaysLeft != -2 { // 30 hours ago, rounded down
		t.Errorf("after expiry: %+v days %d", e, *e.DaysLeft)
	}
}

func TestFailingTest(t *testing.T) {
	r := Build(load(t, `
test "wrong" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  expect = "allow"
}
`), Options{Now: Now, NoGit: true})
	if r.TestsFail != 1 || r.Tests[2].Pass || !strings.Contains(r.Tests[2].Why, "expected allow, got deny") {
		t.Errorf("tests %+v", r.Tests)
	}
}

func TestDaysUntil(t *testing.T) {
	h := time.Hour
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{36 * h, 1}, {24 * h, 1}, {h, 0}, {0, 0}, {-h, -1}, {-24 * h, -1}, {-25 * h, -2}} {
		if got := daysUntil(Now, Now.Add(c.d)); got != c.want {
			t.Errorf("daysUntil(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestGitCommit(t *testing.T) {
	dir := t.TempDir()
	p := WriteConfig(t, dir, "")
	if c, _ := gitCommit(p, []string{p}); c != "" {
		t.Fatalf("outside a git tree: commit %q", c)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := execGit(dir, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("git %v: %v %s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", ".")
	git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "policy")
	c, dirty := gitCommit(p, []string{p})
	if len(c) != 40 || dirty {
		t.Fatalf("commit %q dirty %v", c, dirty)
	}
	if c2, _ := gitCommit(dir, []string{p}); c2 != c {
		t.Errorf("from the directory: %q", c2)
	}
	r := Build(mustLoad(t, p), Options{Now: Now})
	today := time.Now().UTC().Format(time.DateOnly)
	if r.Commit != c || r.Segments[0].Rules[1].Since != today && r.Segments[0].Rules[1].Since != time.Now().UTC().Add(-time.Minute).Format(time.DateOnly) {
		t.Errorf("commit %q since %q", r.Commit, r.Segments[0].Rules[1].Since)
	}
	os.WriteFile(p, []byte("# new first line\n"+TestHCL), 0o600)
	if _, dirty := gitCommit(p, []string{p}); !dirty {
		t.Error("an edited config is not reported as modified")
	}
	r = Build(mustLoad(t, p), Options{Now: Now})
	if !r.Dirty || r.Segments[0].Rules[1].Since != today || r.Exceptions[0].Since != today {
		t.Errorf("after an edit above the rules: dirty %v since %q %q", r.Dirty, r.Segments[0].Rules[1].Since, r.Exceptions[0].Since)
	}
	os.WriteFile(p, []byte(strings.Replace(TestHCL, `rule "no-social" {`, `rule "no-social" { # edited`, 1)), 0o600)
	if r = Build(mustLoad(t, p), Options{Now: Now}); r.Segments[0].Rules[1].Since != "uncommitted" {
		t.Errorf("edited rule since %q", r.Segments[0].Rules[1].Since)
	}
}

// Day0 is the first day of the generated events.
var Day0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// GenEvents writes n ECS events from spread sources over 10 days, as egress writes them:
// per 10 events, 4 denied by no-social (from 40 of every 100 sources), 2 allowed by the
// press-social exception (10 sources), 1 allowed by the default with the
// ai-rollout monitor hit, 3 allowed by the default.
func GenEvents(tb testing.TB, w io.Writer, n, spread int) {
	tb.Helper()
	enc, err := audit.NewEncoder("ecs", "gen")
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	no := false
	var b []byte
	for i := range n {
		ev := &audit.Event{Time: Day0.Add(time.Duration(i%10) * 24 * time.Hour).Add(time.Duration(i) * time.Millisecond),
			ID: audit.NewID(), Listener: "proxy", SourceIP: fmt.Sprintf("10.%d.%d.%d", 20+i%spread>>16, i%spread>>8&255, i%spread&255), DestDomain: "www.example.com",
			DestPort: 443, SNI: "www.example.com", ECH: &no, Action: "allow", Reason: "default", Segment: "ministry",
			JA4: "t13d1516h2_8daaf6152771_e5627efa2ab1", SourceBytes: 1234, DestBytes: 56789, Duration: time.Second}
		switch i % 10 {
		case 0, 1, 2, 3:
			ev.Action, ev.Reason, ev.Rule, ev.Ruleset, ev.DestDomain = "deny", "rule", "no-social", "baseline", "www.tiktok.com"
		case 4, 5:
			ev.Reason, ev.Rule, ev.Ruleset, ev.Segment, ev.SourceIP = "rule", "press-social", "press", "press", fmt.Sprintf("10.20.5.%d", i%10)
			ev.Exception = &audit.Exception{Owner: "press@example.org", Ticket: "SEC-7", Expires: "2027-01-31"}
		case 6:
			ev.DestDomain = "chat.example"
			ev.Monitor = []audit.MonitorHit{{Rule: "ai-rollout", Ruleset: "baseline", Action: "deny"}}
		}
		b = enc.Encode(b[:0], ev)
		b = append(b, '\n')
		bw.Write(b)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func aggregate(t *testing.T, since, until time.Time, inputs ...[]byte) *Report {
	t.Helper()
	r := Build(load(t, ""), Options{Now: Now, NoGit: true})
	a := NewAggregator(since, until)
	for i, in := range inputs {
		if err := a.Read(fmt.Sprint("in", i), bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
	}
	a.Finish(r)
	return r
}

func find(rows []Hits, label, action string) Hits {
	for _, h := range rows {
		if h.Label() == label && h.Action == action {
			return h
		}
	}
	return Hits{}
}

func TestEvents(t *testing.T) {
	var plain bytes.Buffer
	GenEvents(t, &plain, 1000, 100)
	plain.WriteString("not json\n\n{\"a\":1}\n")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	GenEvents(t, zw, 1000, 100)
	zw.Close()
	r := aggregate(t, time.Time{}, time.Time{}, plain.Bytes(), z.Bytes())
	ev := r.Events
	if ev.Lines != 2002 || ev.Events != 2000 || ev.Malformed != 2 || ev.OutOfWindow != 0 {
		t.Fatalf("lines %d events %d malformed %d out %d", ev.Lines, ev.Events, ev.Malformed, ev.OutOfWindow)
	}
	if len(ev.Days) != 10 || ev.Days[0] != "2026-12-01" || ev.Days[9] != "2026-12-10" {
		t.Errorf("days %v", ev.Days)
	}
	deny := find(ev.Rules, "no-social (baseline)", "deny")
	if deny.Hits != 800 || deny.Sources != 40 || len(deny.Daily) != 10 || deny.Daily[0] != 200 || deny.Daily[4] != 0 {
		t.Errorf("no-social %+v", deny)
	}
	if ev.Rules[0].Hits != 800 || ev.Rules[2].Label() != "press-social (press)" {
		t.Errorf("rows not by hits: %v", ev.Rules[0])
	}
	if d := find(ev.Rules, "default", "allow"); d.Hits != 800 {
		t.Errorf("default %+v", d)
	}
	exc := ev.Exceptions
	if len(exc) != 2 || exc[0].Rule != "press-social" || exc[0].Hits != 400 || exc[0].Sources != 2 || exc[0].Daily[4] != 200 || exc[0].Daily[0] != 0 {
		t.Errorf("exceptions %+v", exc)
	}
	if exc[1].Rule != "ai-rollout" || exc[1].Hits != 0 {
		t.Errorf("a monitor rule decides nothing: %+v", exc[1])
	}
	mon := find(ev.Monitor, "ai-rollout (baseline)", "deny")
	if len(ev.Monitor) != 1 || mon.Hits != 200 || mon.WouldBlock != 200 || mon.Sources != 10 || mon.Daily[6] != 200 {
		t.Errorf("monitor %+v", ev.Monitor)
	}

	// A window: days 2 to 4.
	r = aggregate(t, Day0.Add(2*24*time.Hour), Day0.Add(5*24*time.Hour), plain.Bytes())
	ev = r.Events
	if ev.Events != 300 || ev.OutOfWindow != 700 || len(ev.Days) != 3 || ev.Days[0] != "2026-12-03" {
		t.Errorf("window: events %d out %d days %v", ev.Events, ev.OutOfWindow, ev.Days)
	}
	if d := find(ev.Rules, "no-social (baseline)", "deny"); d.Hits != 200 || strings.Trim(fmt.Sprint(d.Daily), "[]") != "100 100 0" {
		t.Errorf("window no-social %+v", d)
	}
}

// TestBounds feeds more distinct rules, sources and days than the limits:
// memory stays bounded and the report says so.
func TestBounds(t *testing.T) {
	a := NewAggregator(time.Time{}, time.Time{})
	for i := range MaxKeys + 10 {
		a.Add(&audit.Event{Action: "deny", Rule: fmt.Sprint("r", i), Ruleset: "x", SourceIP: "10.0.0.1",
			Time: Day0.Add(time.Duration(i) * 24 * time.Hour)})
	}
	if len(a.rows) != MaxKeys+1 || !a.ev.KeysCapped {
		t.Errorf("rows %d capped %v", len(a.rows), a.ev.KeysCapped)
	}
	// Thousands of days in one row: only the last MaxDays are kept.
	a = NewAggregator(time.Time{}, time.Time{})
	for i := range 5 * MaxDays {
		a.Add(&audit.Event{Action: "allow", Reason: "default", Time: Day0.Add(time.Duration(i) * 24 * time.Hour)})
	}
	g := a.rows[key{reason: "default", action: "allow"}]
	if len(g.days) > 2*MaxDays+1 {
		t.Errorf("%d days kept", len(g.days))
	}
	a.sources = MaxSources
	a.Add(&audit.Event{Action: "allow", Reason: "default", SourceIP: "192.0.2.1"})
	r := &Report{}
	a.Finish(r)
	if !r.Events.SourcesCapped || r.Events.KeysCapped || len(r.Events.Days) != MaxDays || r.Events.Days[MaxDays-1] != r.Events.Last.Format(time.DateOnly) {
		t.Errorf("capped %v days %d", r.Events.SourcesCapped, len(r.Events.Days))
	}
	if d := find(r.Events.Rules, "default", "allow"); d.Hits != 5*MaxDays+1 || d.Daily[MaxDays-1] != 1 {
		t.Errorf("default row %d hits", d.Hits)
	}
}

func TestRenderers(t *testing.T) {
	var in bytes.Buffer
	GenEvents(t, &in, 100, 100)
	r := aggregate(t, time.Time{}, time.Time{}, in.Bytes())
	r.Segments[0].Rules[1].Description = `<script>alert("x")</script>`

	var h bytes.Buffer
	if err := r.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	page := h.String()
	for _, want := range []string{"<svg class=\"chart\"", "press@example.org", "SEC-7", "29 days left", "no-social", "ai-rollout", r.ConfigVersion, "@media print", "&lt;script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("html has %q: not self-contained or not escaped", bad)
		}
	}
	if len(page) > 64<<10 {
		t.Errorf("html is %d bytes", len(page))
	}

	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.ConfigVersion != r.ConfigVersion || len(back.Exceptions) != 2 || back.Events == nil || back.Events.Events != 100 || *back.Exceptions[0].DaysLeft != 29 {
		t.Errorf("json round trip: %+v", back)
	}

	var m bytes.Buffer
	if err := r.WriteMarkdown(&m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| press-social (segment press) | allow |", "SEC-7", "29 days left", "## Monitor rules", "| ai-rollout (baseline) | deny | 10 | 10 |"} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, m.String())
		}
	}
}

func execGit(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
	return cmd
}

// TestLongNames: names from events are cut, so 4,096 rows of megabyte
// names cannot take gigabytes.
func TestLongNames(t *testing.T) {
	a := NewAggregator(time.Time{}, time.Time{})
	long := strings.Repeat("x", 1<<20)
	a.Add(&audit.Event{Action: "deny", Rule: long, Ruleset: long, SourceIP: "fe80::1%" + long})
	a.Add(&audit.Event{Action: "deny", Rule: long, Ruleset: long, SourceIP: "fe80::1%eth0"})
	r := &Report{}
	a.Finish(r)
	if len(r.Events.Rules) != 1 || len(r.Events.Rules[0].Rule) != MaxName || r.Events.Rules[0].Hits != 2 || r.Events.Rules[0].Sources != 1 {
		t.Errorf("rows %+v", r.Events.Rules)
	}
}

// FuzzAggregate: any input is read without a panic; every non-blank line is
// an event, malformed, and the counts add up.
func FuzzAggregate(f *testing.F) {
	var b bytes.Buffer
	GenEvents(f, &b, 20, 5)
	f.Add(b.Bytes())
	f.Add([]byte("not json\n\n{}\n"))
	f.Add([]byte(`{"@timestamp":"1969-12-31T23:59:59Z","event":{"module":"egress","action":"deny"},"source":{"ip":"::ffff:10.0.0.1"}}` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := NewAggregator(time.Time{}, time.Time{})
		if err := a.Read("fuzz", bytes.NewReader(in)); err != nil {
			return // a gzip header with a broken stream
		}
		r := &Report{}
		a.Finish(r)
		e := r.Events
		if e.Events+e.Malformed+e.OutOfWindow != e.Lines {
			t.Fatalf("lines %d != events %d + malformed %d + out %d", e.Lines, e.Events, e.Malformed, e.OutOfWindow)
		}
		total := 0
		for _, h := range e.Rules {
			total += h.Hits
			if len(h.Daily) != len(e.Days) || h.Sources > h.Hits {
				t.Fatalf("row %+v with %d days", h, len(e.Days))
			}
		}
		if total != e.Events {
			t.Fatalf("rows count %d of %d events", total, e.Events)
		}
		var out bytes.Buffer
		if err := (&Report{Events: e}).WriteHTML(&out); err != nil {
			t.Fatal(err)
		}
	})
}

type failAfter struct {
	r io.Reader
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, fmt.Errorf("disk on fire")
	}
	return n, err
}

// TestReadError: a stream that fails keeps what was read before, and says so;
// no goroutine is left behind (the race detector and -count catch misuse).
func TestReadError(t *testing.T) {
	var b bytes.Buffer
	GenEvents(t, &b, 2000, 10)
	b.WriteString(strings.Repeat("y", MaxLine+10) + "\n") // one over-long line
	a := NewAggregator(time.Time{}, time.Time{})
	err := a.Read("x", &failAfter{r: &b})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err %v", err)
	}
	if a.ev.Lines != 2001 || a.ev.Events != 2000 || a.ev.Malformed != 1 {
		t.Errorf("lines %d events %d malformed %d", a.ev.Lines, a.ev.Events, a.ev.Malformed)
	}
}

// TestGitUntrustedConfig: a config folder whose .git/config names an
// fsmonitor command (run by a plain `git status`) or a textconv driver does
// not make the report run it.
func TestGitUntrustedConfig(t *testing.T) {
	dir := t.TempDir()
	p := WriteConfig(t, dir, "")
	marker := filepath.Join(t.TempDir(), "ran")
	hook := filepath.Join(t.TempDir(), "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+marker+"\ncat >/dev/null\nexit 0\n"), 0o700)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."},
		{"-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "policy"},
		{"config", "core.fsmonitor", hook}, {"config", "diff.evil.textconv", hook}} {
		if out, err := execGit(dir, args...).CombinedOutput(); err != nil {
			t.Skipf("git %v: %v %s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte("*.hcl diff=evil\n"), 0o600)
	r := Build(mustLoad(t, p), Options{Now: Now})
	if r.Commit == "" || r.Segments[0].Rules[0].Since == "" {
		t.Fatalf("no commit or since: %q %q", r.Commit, r.Segments[0].Rules[0].Since)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the repository's fsmonitor or textconv command ran")
	}
	// The check is real: a plain `git status` in that folder runs it.
	execGit(dir, "status", "--porcelain").Run()
	if _, err := os.Stat(marker); err != nil {
		t.Skip("this git does not run core.fsmonitor commands; the check above proved nothing")
	}
}

// An attestation says for whom an identity rule holds: its users and groups
// are part of what it matches, and a segment that requires identity says so.
func TestBuildIdentity(t *testing.T) {
	cfg := mustLoad(t, filepath.Join("..", "..", "config", "examples", "government.hcl"))
	r := Build(cfg, Options{Now: Now, NoGit: true})
	var found bool
	for _, s := range r.Segments {
		for _, ru := range s.Rules {
			if ru.Name == "institutional-tiktok-by-identity" {
				found = true
				if strings.Join(ru.Groups, ",") != "communication" || !strings.Contains(ru.Matches(), "groups communication") {
					t.Errorf("rule %+v: matches %q", ru, ru.Matches())
				}
			}
		}
	}
	if !found {
		t.Fatal("government.hcl has no rule institutional-tiktok-by-identity")
	}
	var md strings.Builder
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "groups communication") {
		t.Errorf("markdown report does not name the group of the identity exception")
	}
}
