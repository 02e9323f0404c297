package discover

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// top returns the first n candidates (all when n is 0).
func (r *Report) top(n int) []Candidate {
	if n <= 0 || n >= len(r.Candidates) {
		return r.Candidates
	}
	return r.Candidates[:n]
}

// WriteText writes the summary and a table of the top candidates.
func (r *Report) WriteText(w io.Writer, top int) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "egress discover: category %q, window %s, config %s (version %s)\n", r.Category, r.Window, r.Config, r.ConfigVersion)
	fmt.Fprintf(bw, "inputs: %s\n", strings.Join(r.Inputs, ", "))
	if !r.First.IsZero() {
		fmt.Fprintf(bw, "events: %d from %s to %s\n", r.Events, r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(bw, "events: %d\n", r.Events)
	}
	fmt.Fprintf(bw, "category hits: %d from %d sources in %d sessions; unlisted events: %d (%d within a window after a hit); events of other listed names: %d\n",
		r.Hits, r.HitSources, r.Sessions, r.Unlisted, r.InSessions, r.Listed)
	for _, s := range r.Skipped {
		fmt.Fprintf(bw, "skipped: %d %s\n", s.Count, s.Name)
	}
	if r.Malformed > 0 {
		fmt.Fprintf(bw, "malformed lines: %d\n", r.Malformed)
		for _, m := range r.MalformedLines {
			fmt.Fprintf(bw, "  %s:%d: %s\n", m.Input, m.Line, m.Error)
		}
	}
	if r.SourcesOverCap > 0 {
		fmt.Fprintf(bw, "note: %d events of sources beyond the source cap opened no session\n", r.SourcesOverCap)
	}
	if r.Pruned > 0 {
		fmt.Fprintf(bw, "note: %d weakly supported names were pruned to bound memory; counts are lower bounds\n", r.Pruned)
	}
	fmt.Fprintln(bw)
	cands := r.top(top)
	if len(cands) == 0 {
		fmt.Fprintln(bw, "no candidates")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "candidates for review (%d of %d; never blocked automatically):\n", len(cands), len(r.Candidates))
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RANK\tNAME\tSCORE\tSOURCES\tCO-OCCURRENCES\tCONSISTENCY\tLIFT\t")
	for i, c := range cands {
		fmt.Fprintf(tw, "%d\t%s\t%.1f\t%d\t%d\t%.2f\t%.1f\t\n", i+1, c.Name, c.Score, c.Sources, c.Cooccurrences, c.Consistency, c.Lift)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteJSON writes the report as one JSON document, with the top candidates.
func (r *Report) WriteJSON(w io.Writer, top int) error {
	doc := struct {
		*Report
		Window     string      `json:"window"`
		Total      int         `json:"candidates_total"`
		Candidates []Candidate `json:"candidates"`
	}{Report: r, Window: r.Window.String(), Total: len(r.Candidates), Candidates: r.top(top)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
