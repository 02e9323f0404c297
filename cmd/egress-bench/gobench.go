package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Figures converted from `go test -bench 'Decide1M|Compile1M'` output.
const (
	FigDecide1M  = "decide1m"  // the slowest Decide sub-benchmark of one -count pass
	FigCompile1M = "compile1m" // loading and compiling the 1M-domain config
)

// benchLine is one parsed line of `go test -bench` output.
type benchLine struct {
	name    string // without "Benchmark" and the -GOMAXPROCS suffix
	nsPerOp float64
	allocs  float64
	hasMem  bool
	heapMB  float64
}

// parseBenchLine parses "BenchmarkX/case-2  N  12.5 ns/op  0 B/op  0 allocs/op ...".
func parseBenchLine(line string) (benchLine, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return benchLine{}, false
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return benchLine{}, false
	}
	b := benchLine{name: strings.TrimPrefix(f[0], "Benchmark")}
	if i := strings.LastIndexByte(b.name, '-'); i > 0 {
		if _, err := strconv.Atoi(b.name[i+1:]); err == nil {
			b.name = b.name[:i]
		}
	}
	seenNs := false
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return benchLine{}, false
		}
		switch f[i+1] {
		case "ns/op":
			b.nsPerOp, seenNs = v, true
		case "allocs/op":
			b.allocs, b.hasMem = v, true
		case "heap-MB":
			b.heapMB = v
		}
	}
	return b, seenNs
}

// convertGoBench turns `go test -bench 'Decide1M|Compile1M' -benchmem
// -count N` output into result lines: per -count pass (a round), the
// slowest Decide1M case (with the most allocations of any case) and the
// Compile1M time.
func convertGoBench(r io.Reader, w io.Writer) error {
	type pass struct {
		decide  *result
		compile *result
	}
	var passes []*pass
	decideSeen := map[string]int{} // case → passes it appeared in
	compileSeen := 0
	at := func(i int) *pass {
		for len(passes) <= i {
			passes = append(passes, &pass{})
		}
		return passes[i]
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		b, ok := parseBenchLine(sc.Text())
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(b.name, "Decide1M/"):
			c := strings.TrimPrefix(b.name, "Decide1M/")
			p := at(decideSeen[c])
			decideSeen[c]++
			if p.decide == nil {
				p.decide = &result{Label: LabelEgress, Figure: FigDecide1M, Mode: "gobench", OK: 1}
			}
			d := p.decide
			if b.nsPerOp > d.NsPerOp {
				d.NsPerOp, d.Case = b.nsPerOp, c
			}
			if b.hasMem && (d.AllocsPerOp == nil || b.allocs > *d.AllocsPerOp) {
				a := b.allocs
				d.AllocsPerOp = &a
			}
		case b.name == "Compile1M":
			p := at(compileSeen)
			compileSeen++
			p.compile = &result{Label: LabelEgress, Figure: FigCompile1M, Mode: "gobench", OK: 1,
				NsPerOp: b.nsPerOp, Seconds: b.nsPerOp / 1e9, HeapMB: b.heapMB}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	n := 0
	for i, p := range passes {
		for _, res := range []*result{p.decide, p.compile} {
			if res == nil {
				continue
			}
			res.Round = i + 1
			line, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(line))
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no Decide1M or Compile1M results in the go test output")
	}
	return nil
}

func convertGoBenchFile(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return convertGoBench(f, w)
}
