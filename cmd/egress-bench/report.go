package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Figures that bench/compare.sh records (the -figure flag) and the report reads.
const (
	FigRate64  = "rate64"  // new tunnels/s at c=64 (connect, direct; CPU per tunnel with -pid)
	FigTRate64 = "trate64" // new transparent connections/s at c=64
	FigTput    = "tput"    // one tunnel, 1 GiB each way
	FigIdle    = "idle"    // RSS per idle TLS tunnel
	FigP99     = "p99c8"   // latency of a new tunnel at c=8
	FigHTTP    = "http8"   // absolute-URI GETs at c=8
)

// reportColumns are the labels compare.sh uses, in table order.
var reportColumns = []string{"direct", "egress", "squid", "haproxy"}

// reportRow is one line of the table: a figure, the value taken from each
// run, and the figure of the direct run the ratio is taken against ("" for
// no ratio).
type reportRow struct {
	title  string
	figure string
	value  func(*result) float64
	base   string
	unit   string
}

var reportRows = []reportRow{
	{"CONNECT new tunnels/s, c=64", FigRate64, func(r *result) float64 { return r.Rate }, FigRate64, "/s"},
	{"transparent new conns/s, c=64", FigTRate64, func(r *result) float64 { return r.Rate }, FigRate64, "/s"},
	{"proxy CPU per new CONNECT tunnel", FigRate64, func(r *result) float64 { return r.CPUPerIterUS }, "", "µs"},
	{"proxy CPU per new transparent conn", FigTRate64, func(r *result) float64 { return r.CPUPerIterUS }, "", "µs"},
	{"one tunnel, 1 GiB each way, both ways", FigTput, func(r *result) float64 { return r.MBps }, FigTput, "MB/s"},
	{"RSS per idle TLS tunnel", FigIdle, func(r *result) float64 { return r.RSSPerTunnelKB }, "", "KB"},
	{"p99 new tunnel, c=8", FigP99, func(r *result) float64 {
		if r.Latency == nil {
			return 0
		}
		return r.Latency.P99
	}, FigP99, "ms"},
	{"absolute-URI GETs/s, c=8 keep-alive", FigHTTP, func(r *result) float64 { return r.Rate }, "", "/s"},
}

// labelsOf returns the columns of a report: compare.sh's four labels; when
// other labels are present (compare-builds.sh: egress-old, egress-new), the
// four that have results, then the others in the order they first appear.
func labelsOf(results []result) []string {
	known := map[string]bool{}
	for _, c := range reportColumns {
		known[c] = true
	}
	seen := map[string]bool{}
	var extra []string
	for _, r := range results {
		if !known[r.Label] && !seen[r.Label] {
			extra = append(extra, r.Label)
		}
		seen[r.Label] = true
	}
	if len(extra) == 0 {
		return reportColumns
	}
	var cols []string
	for _, c := range reportColumns {
		if seen[c] {
			cols = append(cols, c)
		}
	}
	return append(cols, extra...)
}

// median of the non-zero values; 0 if none.
func median(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), func(x float64) bool { return x == 0 })
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// readResults reads JSON lines; lines that are not JSON objects are skipped.
func readResults(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// cell is the median of one figure for one label over all rounds, and the
// number of runs it was taken from.
func cell(results []result, label, figure string, value func(*result) float64) (float64, int) {
	var v []float64
	for i := range results {
		if results[i].Label == label && results[i].Figure == figure && results[i].OK > 0 {
			v = append(v, value(&results[i]))
		}
	}
	return median(v), len(v)
}

// writeReport prints a Markdown table: medians over rounds, with the ratio
// to direct where it means something, and the run's error counts.
func writeReport(results []result, w io.Writer) {
	columns := labelsOf(results)
	fmt.Fprintf(w, "| figure | %s |\n", strings.Join(columns, " | "))
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---|", len(columns)))
	for _, row := range reportRows {
		var cells []string
		base := 0.0
		if row.base != "" {
			base, _ = cell(results, "direct", row.base, row.value)
		}
		for _, col := range columns {
			v, n := cell(results, col, row.figure, row.value)
			switch {
			case n == 0 || v == 0:
				cells = append(cells, "–")
			case base > 0 && !(col == "direct" && row.figure == row.base):
				cells = append(cells, fmt.Sprintf("%s (%.2f×)", num(v), v/base))
			default:
				cells = append(cells, num(v))
			}
		}
		fmt.Fprintf(w, "| %s (%s) | %s |\n", row.title, row.unit, strings.Join(cells, " | "))
	}
	var errs []string
	for _, r := range results {
		if r.Errors > 0 {
			errs = append(errs, fmt.Sprintf("%s %s: %d errors (%s)", r.Label, r.Figure, r.Errors, r.FirstError))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nErrors during the runs:\n")
		for _, e := range errs {
			fmt.Fprintf(w, "- %s\n", e)
		}
	}
}

// num prints 3 significant-ish digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func printReport(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := readResults(f)
	if err != nil {
		return err
	}
	writeReport(results, w)
	return nil
}
