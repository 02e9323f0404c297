package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// md escapes table-breaking characters of a cell.
func md(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "<", "&lt;")
	return s
}

// sparkline draws a daily series with block characters (the Markdown chart).
func sparkline(daily []int) string {
	const bars = "▁▂▃▄▅▆▇█"
	peak := 0
	for _, n := range daily {
		peak = max(peak, n)
	}
	var b strings.Builder
	for _, n := range daily {
		switch {
		case n == 0:
			b.WriteRune(' ')
		default:
			b.WriteRune([]rune(bars)[min(7, (n*8-1)/peak)])
		}
	}
	return "`" + b.String() + "`"
}

// WriteMarkdown writes the report as GitHub-flavoured Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("# egress policy attestation\n\n")
	p("- Configuration: `%s`\n- config_version: `%s`\n", r.Config, r.ConfigVersion)
	switch {
	case r.Commit == "":
		p("- Commit: not in a git tree\n")
	case r.Dirty:
		p("- Commit: `%s` (config files modified since)\n", r.Commit)
	default:
		p("- Commit: `%s`\n", r.Commit)
	}
	p("- Generated: %s\n- Tests: %d passed, %d failed\n", stamp(r.Generated), r.Passed(), r.TestsFail)
	if e := r.Events; e != nil {
		p("- Events: %d from %s to %s (%s); %d malformed lines, %d outside the window\n",
			e.Events, stamp(e.First), stamp(e.Last), strings.Join(e.Inputs, ", "), e.Malformed, e.OutOfWindow)
	}
	p("\n## What is denied, per segment\n")
	for _, s := range r.Segments {
		auth := ""
		if s.RequireAuth {
			auth = " Clients must identify themselves (`require_auth`)."
		}
		p("\n### Segment %q\n\nSources %s. Default: **%s**.%s\n\n", s.Name, strings.Join(s.Sources, ", "), s.Default, auth)
		p("| # | Rule | Action | Matches (list entries) | Since | Where |\n| ---: | --- | --- | --- | --- | --- |\n")
		for i, ru := range s.Rules {
			act := ru.Action
			if ru.Monitor {
				act += " (monitor only)"
			}
			if ru.Exception {
				act += " exception"
			}
			if ru.Expired {
				act += " **expired**"
			}
			p("| %d | %s (%s %s) | %s | %s | %s | `%s` |\n", i+1, md(ru.Name), ru.RulesetKind, md(ru.Ruleset), act, md(r.Describe(ru)), orDash(ru.Since), md(ru.Pos))
		}
	}
	p("\n## Lists\n\n| Category | Entries | Sources |\n| --- | ---: | --- |\n")
	for _, c := range r.Categories {
		p("| %s | %d | %s |\n", md(c.Name), c.Entries, md(strings.Join(c.Sources, ", ")))
	}
	p("\n## Exceptions\n\n| Rule | Action | Matches | Segments | Owner | Ticket | Since | Expires | Days left |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, e := range r.Exceptions {
		p("| %s (%s %s) | %s | %s | %s | %s | %s | %s | %s | %s |\n", md(e.Rule), e.RulesetKind, md(e.Ruleset), e.Action, md(e.Matches),
			md(strings.Join(e.Segments, ", ")), md(orDash(e.Owner)), md(orDash(e.Ticket)), orDash(e.Since), md(orDash(e.Expires)), days(e.DaysLeft))
	}
	p("\n## Test blocks\n\n| Test | Result | Decision | Where |\n| --- | --- | --- | --- |\n")
	for _, t := range r.Tests {
		res := "PASS"
		if !t.Pass {
			res = "**FAIL** " + t.Why
		}
		p("| %s | %s | %s | `%s` |\n", md(t.Name), md(res), md(t.Decision), md(t.Pos))
	}
	if e := r.Events; e != nil {
		if len(e.Days) > 0 {
			p("\nDaily series from %s to %s, one character a day, each scaled to its own peak.\n", e.Days[0], e.Days[len(e.Days)-1])
		}
		table := func(title string, rows []Hits, monitor bool) {
			p("\n## %s\n\n", title)
			if monitor {
				p("| Monitor rule | Would | Matched | Would have blocked | Unique sources | Daily |\n| --- | --- | ---: | ---: | ---: | --- |\n")
			} else {
				p("| Rule / reason | Action | Hits | Unique sources | Daily |\n| --- | --- | ---: | ---: | --- |\n")
			}
			for _, h := range rows {
				if monitor {
					p("| %s | %s | %d | %d | %d | %s |\n", md(h.Label()), h.Action, h.Hits, h.WouldBlock, h.Sources, sparkline(h.Daily))
				} else {
					p("| %s | %s | %d | %d | %s |\n", md(h.Label()), h.Action, h.Hits, h.Sources, sparkline(h.Daily))
				}
			}
		}
		table("Hits per rule", e.Rules, false)
		table("Hits per exception", e.Exceptions, false)
		table("Monitor rules", e.Monitor, true)
	}
	return b.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
