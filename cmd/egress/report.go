package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/report"
	"github.com/egress-proxy/egress/internal/rules"
)

const reportUsage = "usage: egress report -config PATH [-events FILE]... [-since T] [-until T] [-format html|json|md] [-o FILE]"

// parseWhen reads -since/-until: RFC 3339 or a date (00:00 UTC).
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a date (2026-01-31) nor an RFC 3339 time", s)
}

// cmdReport: exit 0 when written, 1 when written and a test block fails,
// 2 on a config error, a usage error or an unreadable event file.
func cmdReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", stderr)
	cfgPath := fs.String("config", "", "config file or directory")
	var events []string
	fs.Func("events", "ECS events file (.jsonl or .jsonl.gz, - for stdin); repeatable", func(s string) error {
		events = append(events, s)
		return nil
	})
	format := fs.String("format", "html", "html, json or md")
	out := fs.String("o", "", "write to FILE instead of stdout")
	sinceS := fs.String("since", "", "count events from this time (RFC 3339 or date, inclusive)")
	untilS := fs.String("until", "", "count events before this time (RFC 3339 or date, exclusive)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, reportUsage)
		return 2
	}
	switch *format {
	case "html", "json", "md":
	default:
		fmt.Fprintf(stderr, "egress report: -format %q: use html, json or md\n%s\n", *format, reportUsage)
		return 2
	}
	since, err := parseWhen(*sinceS)
	if err == nil {
		var until time.Time
		if until, err = parseWhen(*untilS); err == nil && !since.IsZero() && !until.IsZero() && !since.Before(until) {
			err = fmt.Errorf("-since %s is not before -until %s", *sinceS, *untilS)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "egress report: %v\n", err)
		return 2
	}
	until, _ := parseWhen(*untilS)
	cfg, diags := loadConfig(*cfgPath)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return 2
	}
	rep := report.Build(cfg, report.Options{})
	if len(events) > 0 {
		agg := report.NewAggregator(since, until)
		for _, name := range events {
			if err := readEvents(agg, name); err != nil {
				fmt.Fprintf(stderr, "egress report: %v\n", err)
				return 2
			}
		}
		agg.Finish(rep)
		if rep.Events.Malformed > 0 {
			fmt.Fprintf(stderr, "egress report: %d of %d lines are not egress ECS events (counted, skipped)\n", rep.Events.Malformed, rep.Events.Lines)
		}
	}
	var w io.Writer = stdout
	var f *os.File
	if *out != "" && *out != "-" {
		if f, err = os.Create(*out); err != nil {
			fmt.Fprintf(stderr, "egress report: %v\n", err)
			return 2
		}
		w = f
	}
	bw := bufio.NewWriter(w)
	switch *format {
	case "json":
		err = rep.WriteJSON(bw)
	case "md":
		err = rep.WriteMarkdown(bw)
	default:
		err = rep.WriteHTML(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "egress report: %v\n", err)
		return 2
	}
	if rep.TestsFail > 0 {
		fmt.Fprintf(stderr, "egress report: %d test block(s) fail: %s\n", rep.TestsFail, strings.Join(failed(rep), ", "))
		return 1
	}
	return 0
}

func failed(rep *report.Report) []string {
	var out []string
	for _, t := range rep.Tests {
		if !t.Pass {
			out = append(out, t.Name)
		}
	}
	return out
}

func readEvents(agg *report.Aggregator, name string) error {
	if name == "-" {
		return agg.Read("-", os.Stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return agg.Read(name, f)
}
