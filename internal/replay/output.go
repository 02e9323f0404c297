package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Show selects what the text and JSON reports include.
type Show struct {
	// Top is the number of groups shown per section; 0 shows all.
	Top int
	// Rules adds the section of events whose action stays but whose rule
	// (or reason) changes.
	Rules bool
}

// Sections are the kinds of change shown.
func (s Show) Sections() []Change {
	if s.Rules {
		return Changes
	}
	return Changes[:2]
}

// Any reports whether the report holds a change that s shows: an action
// change, or with Rules a rule change. `-fail-on-change` uses it.
func (r *Report) Any(s Show) bool {
	return r.Changed() > 0 || s.Rules && r.RuleChanged > 0
}

func (r *Report) count(c Change) int {
	switch c {
	case AllowToDeny:
		return r.AllowToDeny
	case DenyToAllow:
		return r.DenyToAllow
	}
	return r.RuleChanged
}

// segmentLabel is the new segment, "old → new" when the source moved.
func segmentLabel(g Group) string {
	n := g.New.Segment
	if n == "" {
		n = "(none)"
	}
	if g.Old.Segment != "" && g.Old.Segment != g.New.Segment {
		return g.Old.Segment + " → " + n
	}
	return n
}

// WriteText writes the human-readable report.
func (r *Report) WriteText(w io.Writer, s Show) error {
	var b strings.Builder
	fmt.Fprintf(&b, "replayed %d events from %s under %s (config_version %s) in %s\n",
		r.Events, orDash(r.Input), r.Config, r.ConfigVersion, r.Elapsed.Round(time.Millisecond))
	if !r.First.IsZero() {
		fmt.Fprintf(&b, "  events from %s to %s", r.First.Format(time.RFC3339), r.Last.Format(time.RFC3339))
		if len(r.Recorded) > 0 {
			var vs []string
			for _, v := range r.Recorded {
				vs = append(vs, fmt.Sprintf("%s (%d)", orDash(v.Name), v.Count))
			}
			fmt.Fprintf(&b, ", recorded under config_version %s", strings.Join(vs, ", "))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  changed: %d (allow→deny %d, deny→allow %d); rule changed: %d; unchanged: %d; not re-decidable: %d; malformed lines: %d\n",
		r.Changed(), r.AllowToDeny, r.DenyToAllow, r.RuleChanged, r.Unchanged, r.NotRedecidable, r.Malformed)
	if len(r.Skipped) > 0 {
		var parts []string
		for _, c := range r.Skipped {
			parts = append(parts, fmt.Sprintf("%s %d", c.Name, c.Count))
		}
		fmt.Fprintf(&b, "  not re-decidable: %s\n", strings.Join(parts, ", "))
	}
	for _, c := range s.Sections() {
		b.WriteString(c.Title())
		b.WriteByte('\n')
		groups := r.Section(c)
		if len(groups) == 0 {
			b.WriteString("  none\n")
			continue
		}
		shown := groups
		if s.Top > 0 && len(shown) > s.Top {
			shown = shown[:s.Top]
		}
		width := max(len("COUNT"), len(fmt.Sprint(shown[0].Count)))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  %*s\tSEGMENT\tNOW (RULESET)\tWAS\tDESTINATION\n", width, "COUNT")
		for _, g := range shown {
			fmt.Fprintf(tw, "  %*d\t%s\t%s\t%s\t%s\n", width, g.Count, segmentLabel(g), g.New.Label(), g.Old.Label(), g.Destination)
		}
		tw.Flush()
		if more := len(groups) - len(shown); more > 0 {
			events := r.count(c)
			for _, g := range shown {
				events -= g.Count
			}
			fmt.Fprintf(&b, "  ... %d more rows (%d events); -top 0 shows all\n", more, events)
		}
	}
	if r.Malformed > 0 {
		var ls []string
		for _, m := range r.MalformedLines {
			ls = append(ls, fmt.Sprint(m.Line))
		}
		fmt.Fprintf(&b, "malformed lines: %s", strings.Join(ls, ", "))
		if r.Malformed > len(r.MalformedLines) {
			fmt.Fprintf(&b, " (first %d of %d shown)", len(r.MalformedLines), r.Malformed)
		}
		b.WriteByte('\n')
		for _, m := range r.MalformedLines {
			fmt.Fprintf(&b, "  line %d: %s\n", m.Line, m.Error)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Section of the JSON report.
type jsonSection struct {
	Change     Change  `json:"change"`
	Events     int     `json:"events"`
	Groups     []Group `json:"groups"`
	MoreGroups int     `json:"more_groups"`
}

// WriteJSON writes the report as one JSON document (with a final newline):
// the Report's fields, elapsed_seconds, changed, and the shown sections.
func (r *Report) WriteJSON(w io.Writer, s Show) error {
	doc := struct {
		*Report
		ElapsedSeconds float64       `json:"elapsed_seconds"`
		Changed        int           `json:"changed"`
		Sections       []jsonSection `json:"sections"`
	}{Report: r, ElapsedSeconds: r.Elapsed.Seconds(), Changed: r.Changed(), Sections: []jsonSection{}}
	for _, c := range s.Sections() {
		groups := r.Section(c)
		if groups == nil {
			groups = []Group{}
		}
		sec := jsonSection{Change: c, Events: r.count(c), Groups: groups}
		if s.Top > 0 && len(groups) > s.Top {
			sec.Groups, sec.MoreGroups = groups[:s.Top], len(groups)-s.Top
		}
		doc.Sections = append(doc.Sections, sec)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
