package main

import (
	"bufio"
	"cmp"
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
	FigP99     = "p99c8"   // latency of a new CONNECT tunnel (direct: of a new connection) at c=8
	FigTP99    = "tp99c8"  // latency of a new transparent connection at c=8
	FigHTTP    = "http8"   // absolute-URI GETs at c=8 (direct: origin-form GETs to the origin)
)

// The labels compare.sh uses.
const (
	LabelDirect      = "direct"
	LabelEgress      = "egress"
	LabelSquid       = "squid"
	LabelHAProxy     = "haproxy"
	LabelSmokescreen = "smokescreen"
)

// reportColumns are the labels compare.sh uses, in table order.
var reportColumns = []string{LabelDirect, LabelEgress, LabelSquid, LabelHAProxy, LabelSmokescreen}

// peers are the proxies egress is compared with, and the figure each one's
// new-tunnel latency is recorded under (HAProxy has no CONNECT).
var peers = []struct{ label, p99 string }{
	{LabelSquid, FigP99},
	{LabelHAProxy, FigTP99},
	{LabelSmokescreen, FigP99},
}

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

func rate(r *result) float64   { return r.Rate }
func cpu(r *result) float64    { return r.CPUPerIterUS }
func mbps(r *result) float64   { return r.MBps }
func cpuMB(r *result) float64  { return r.CPUPerMBUS }
func idleKB(r *result) float64 { return r.RSSPerTunnelKB }
func p99(r *result) float64 {
	if r.Latency == nil {
		return 0
	}
	return r.Latency.P99
}

var reportRows = []reportRow{
	{"CONNECT new tunnels/s, c=64", FigRate64, rate, FigRate64, "/s"},
	{"transparent new conns/s, c=64", FigTRate64, rate, FigRate64, "/s"},
	{"proxy CPU per new CONNECT tunnel", FigRate64, cpu, "", "µs"},
	{"proxy CPU per new transparent conn", FigTRate64, cpu, "", "µs"},
	{"p99 new CONNECT tunnel, c=8", FigP99, p99, FigP99, "ms"},
	{"p99 new transparent conn, c=8", FigTP99, p99, FigP99, "ms"},
	{"one tunnel, 1 GiB each way, both ways", FigTput, mbps, FigTput, "MB/s"},
	{"proxy CPU per MB carried (1 GiB tunnel)", FigTput, cpuMB, "", "µs"},
	{"RSS per idle TLS tunnel, 2,000 held", FigIdle, idleKB, "", "KB"},
	{"plain-HTTP GETs/s, c=8 keep-alive", FigHTTP, rate, FigHTTP, "/s"},
}

// labelsOf returns the columns of a report: those of compare.sh's labels
// that have results, in table order, then any other labels
// (compare-builds.sh: egress-old, egress-new) in the order they first
// appear.
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
// to direct where it means something, and the run's error counts; when
// egress was compared with its peers (compare.sh), the targets table.
func writeReport(results []result, w io.Writer) {
	columns := labelsOf(results)
	fmt.Fprintf(w, "| figure | %s |\n", strings.Join(columns, " | "))
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---|", len(columns)))
	for _, row := range reportRows {
		var cells []string
		base := 0.0
		if row.base != "" {
			base, _ = cell(results, LabelDirect, row.base, row.value)
		}
		// A figure with no direct baseline (CPU, memory) is compared with
		// egress's: a peer's cell carries egress ÷ that peer.
		mine := 0.0
		if row.base == "" {
			mine, _ = cell(results, LabelEgress, row.figure, row.value)
		}
		unit := row.unit
		if mine > 0 {
			unit += "; × = egress ÷ peer"
		}
		for _, col := range columns {
			v, n := cell(results, col, row.figure, row.value)
			switch {
			case n == 0 || v == 0:
				cells = append(cells, "–")
			case base > 0 && !(col == LabelDirect && row.figure == row.base):
				cells = append(cells, fmt.Sprintf("%s (%.2f×)", num(v), v/base))
			case mine > 0 && col != LabelEgress:
				cells = append(cells, fmt.Sprintf("%s (%.2f×)", num(v), mine/v))
			default:
				cells = append(cells, num(v))
			}
		}
		fmt.Fprintf(w, "| %s (%s) | %s |\n", row.title, unit, strings.Join(cells, " | "))
	}
	if slices.Contains(columns, LabelEgress) {
		fmt.Fprintln(w)
		writeTargets(results, w)
	}
	writeNoise(results, w)
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

// view is the results a verdict is taken from: all of them (the medians
// over the rounds) or one round's.
type view []result

// med is the median of one figure for one label (0: no figure).
func (v view) med(label, figure string, value func(*result) float64) float64 {
	m, _ := cell(v, label, figure, value)
	return m
}

// most is the largest value of one figure for one label (0: no figure).
func (v view) most(label, figure string, value func(*result) float64) float64 {
	m := 0.0
	for i := range v {
		if v[i].Label == label && v[i].Figure == figure && v[i].OK > 0 {
			m = max(m, value(&v[i]))
		}
	}
	return m
}

func roundView(results []result, round int) view {
	var in view
	for _, r := range results {
		if r.Round == round {
			in = append(in, r)
		}
	}
	return in
}

// operand is one side of a target: its value under a view (0 when there
// is no figure), and what it is, for the table.
type operand func(view) (float64, string)

// fig is a figure of one label.
func fig(label, figure string, value func(*result) float64, unit string) operand {
	return func(v view) (float64, string) {
		x := v.med(label, figure, value)
		if x == 0 {
			return 0, label + " –"
		}
		return x, label + " " + num(x) + " " + unit
	}
}

// constant is a fixed bound (the idle-memory target).
func constant(x float64, unit string) operand {
	return func(view) (float64, string) { return x, num(x) + " " + unit + " (fixed)" }
}

// worstEgressP99 is the higher of egress's two new-tunnel p99s (CONNECT and
// transparent): the target holds only if both paths meet it.
func worstEgressP99(v view) (float64, string) {
	c, t := v.med(LabelEgress, FigP99, p99), v.med(LabelEgress, FigTP99, p99)
	if c == 0 || t == 0 {
		return 0, "egress (CONNECT or transparent missing)"
	}
	return max(c, t), fmt.Sprintf("egress %s ms (CONNECT %s, transparent %s)", num(max(c, t)), num(c), num(t))
}

// bestPeerP99 is the lowest new-tunnel p99 among the peers that ran.
func bestPeerP99(v view) (float64, string) {
	best, who := 0.0, ""
	for _, p := range peers {
		if x := v.med(p.label, p.p99, p99); x > 0 && (best == 0 || x < best) {
			best, who = x, p.label
		}
	}
	if best == 0 {
		return 0, "best peer: –"
	}
	return best, fmt.Sprintf("best peer: %s %s ms", who, num(best))
}

// target is one row of issue 15's targets: egress ÷ reference, compared
// with bound (atMost: ratio ≤ bound, else ratio ≥ bound).
type target struct {
	title  string
	egress operand
	ref    operand
	atMost bool
	bound  float64
	also   func(view) bool // a further condition (0 allocations), or nil
}

var targets = []target{
	{"proxy CPU per new tunnel, transparent ≤ HAProxy's",
		fig(LabelEgress, FigTRate64, cpu, "µs"), fig(LabelHAProxy, FigTRate64, cpu, "µs"), true, 1, nil},
	{"proxy CPU per new tunnel, CONNECT ≤ 0.75 × Squid's",
		fig(LabelEgress, FigRate64, cpu, "µs"), fig(LabelSquid, FigRate64, cpu, "µs"), true, 0.75, nil},
	{"transparent new conns/s, c=64 ≥ HAProxy's",
		fig(LabelEgress, FigTRate64, rate, "/s"), fig(LabelHAProxy, FigTRate64, rate, "/s"), false, 1, nil},
	{"CONNECT new tunnels/s, c=64 ≥ 1.1 × Squid's",
		fig(LabelEgress, FigRate64, rate, "/s"), fig(LabelSquid, FigRate64, rate, "/s"), false, 1.1, nil},
	{"p99 new tunnel, c=8 ≤ the best peer's",
		worstEgressP99, bestPeerP99, true, 1, nil},
	{"one tunnel, 1 GiB each way ≥ 0.90 × direct",
		fig(LabelEgress, FigTput, mbps, "MB/s"), fig(LabelDirect, FigTput, mbps, "MB/s"), false, 0.9, nil},
	{"RSS per idle TLS tunnel ≤ 5 KB",
		fig(LabelEgress, FigIdle, idleKB, "KB"), constant(5, "KB"), true, 1, nil},
	{"`Decide` at 1M domains ≤ 1 µs, 0 allocs",
		decideWorst, constant(1000, "ns"), true, 1, decideNoAllocs},
	{"compile 1M domains < 3 s",
		fig(LabelEgress, FigCompile1M, secs, "s"), constant(3, "s"), true, 1, nil},
}

// judge returns egress ÷ reference and whether the target is met; ok is
// false when a figure is missing.
func (t *target) judge(v view) (ratio float64, met, ok bool) {
	e, _ := t.egress(v)
	r, _ := t.ref(v)
	if e == 0 || r == 0 {
		return 0, false, false
	}
	ratio = e / r
	if t.atMost {
		met = ratio <= t.bound
	} else {
		met = ratio >= t.bound
	}
	if t.also != nil {
		met = met && t.also(v)
	}
	return ratio, met, true
}

func nsPerOp(r *result) float64 { return r.NsPerOp }
func secs(r *result) float64    { return r.Seconds }

// allocsPlusOne is allocs/op + 1, so that 0 allocations is a value and not
// "no figure"; 0 when the run did not report allocations.
func allocsPlusOne(r *result) float64 {
	if r.AllocsPerOp == nil {
		return 0
	}
	return *r.AllocsPerOp + 1
}

// decideWorst is the median over passes of the slowest Decide case, and
// the most allocations any case made in any pass.
func decideWorst(v view) (float64, string) {
	ns := v.med(LabelEgress, FigDecide1M, nsPerOp)
	if ns == 0 {
		return 0, "egress –"
	}
	a := v.most(LabelEgress, FigDecide1M, allocsPlusOne)
	allocs := "allocations not reported"
	switch {
	case a == 1:
		allocs = "0 allocs/op in every case"
	case a > 1:
		allocs = fmt.Sprintf("up to %.0f allocs/op", a-1)
	}
	return ns, fmt.Sprintf("egress %s ns (slowest case), %s", num(ns), allocs)
}

// decideNoAllocs holds when every case of every pass reported 0
// allocations.
func decideNoAllocs(v view) bool {
	return v.most(LabelEgress, FigDecide1M, allocsPlusOne) == 1
}

// writeTargets prints issue 15's targets with the verdict from the medians
// of this run, and in how many rounds (each judged on its own figures, all
// taken minutes apart at most) the target was met.
func writeTargets(results []result, w io.Writer) {
	var rounds []int
	for _, r := range results {
		if r.Round > 0 && !slices.Contains(rounds, r.Round) {
			rounds = append(rounds, r.Round)
		}
	}
	slices.Sort(rounds)
	all := view(results)
	fmt.Fprintln(w, "| target (issue 15) | egress | against | ratio | needed | rounds met (each round's ratio) | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for i := range targets {
		t := &targets[i]
		_, eDesc := t.egress(all)
		_, rDesc := t.ref(all)
		need := fmt.Sprintf("≥ %.2f×", t.bound)
		if t.atMost {
			need = fmt.Sprintf("≤ %.2f×", t.bound)
		}
		ratio, met, ok := t.judge(all)
		if !ok {
			fmt.Fprintf(w, "| %s | %s | %s | – | %s | – | NO DATA |\n", t.title, eDesc, rDesc, need)
			continue
		}
		verdict := "MISSED"
		if met {
			verdict = "MET"
		}
		roundsMet := "–"
		if len(rounds) > 0 {
			n, judged := 0, 0
			var each []string
			for _, r := range rounds {
				if x, m, ok := t.judge(roundView(results, r)); ok {
					judged++
					if m {
						n++
					}
					each = append(each, fmt.Sprintf("%.2f", x))
				}
			}
			roundsMet = fmt.Sprintf("%d/%d (%s)", n, judged, strings.Join(each, ", "))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s× | %s | %s | %s |\n", t.title, eDesc, rDesc, ratioText(ratio, t.bound), need, roundsMet, verdict)
	}
}

// ratioText prints a ratio with two decimals, or three when two would
// print the bound itself (1.098 against 1.10 is a miss, not "1.10×").
func ratioText(ratio, bound float64) string {
	if t := fmt.Sprintf("%.2f", ratio); t != fmt.Sprintf("%.2f", bound) || ratio == bound {
		return t
	}
	return fmt.Sprintf("%.3f", ratio)
}

// noisyPct is the share of the CPUs other work may take during a run
// before the report names the run.
const noisyPct = 10

// writeNoise prints how much of the machine other work took during the
// runs: the median and the worst, and the runs above noisyPct.
func writeNoise(results []result, w io.Writer) {
	var measured []*result
	for i := range results {
		if results[i].OtherCPUPct != nil {
			measured = append(measured, &results[i])
		}
	}
	if len(measured) == 0 {
		return
	}
	// Worst first.
	slices.SortStableFunc(measured, func(a, b *result) int { return cmp.Compare(*b.OtherCPUPct, *a.OtherCPUPct) })
	fmt.Fprintf(w, "\nOther work on the machine (CPU time used by neither egress-bench nor the proxy measured, %% of all CPUs) during the %d timed runs: median %.0f%%, max %.0f%%.\n",
		len(measured), *measured[len(measured)/2].OtherCPUPct, *measured[0].OtherCPUPct)
	var noisy []string
	for _, r := range measured {
		if *r.OtherCPUPct <= noisyPct {
			break
		}
		noisy = append(noisy, fmt.Sprintf("%s %s round %d: %.0f%%", r.Label, r.Figure, r.Round, *r.OtherCPUPct))
	}
	if total := len(noisy); total > 0 {
		more := ""
		if total > maxNamed {
			more = fmt.Sprintf("; %d more", total-maxNamed)
			noisy = noisy[:maxNamed]
		}
		fmt.Fprintf(w, "%d of %d runs above %d%%, not comparable with a quiet machine's (worst first): %s%s.\n",
			total, len(measured), noisyPct, strings.Join(noisy, "; "), more)
	}
}

// maxNamed is how many noisy runs the report names.
const maxNamed = 6

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
