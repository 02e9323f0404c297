package main

import (
	"bytes"
	"strings"
	"testing"
)

const goBenchOut = `goos: linux
goarch: amd64
pkg: github.com/egress-proxy/egress/internal/rules
cpu: Intel(R) Xeon(R) Processor
BenchmarkDecide1M/hit-2         	10989849	       107.5 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecide1M/hit-deep-2    	 7744015	       173.8 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecide1M/miss-2        	13848768	        88.02 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecide1M/hit-2         	10989849	       120.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecide1M/hit-deep-2    	 7744015	       110.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecide1M/miss-2        	13848768	        90.00 ns/op	      16 B/op	       1 allocs/op
BenchmarkCompile1M-2            	       1	 728550938 ns/op	   1000102 domains	        84.91 heap-MB
BenchmarkCompile1M-2            	       1	3100000000 ns/op	   1000102 domains	        84.91 heap-MB
PASS
ok  	github.com/egress-proxy/egress/internal/rules	30.1s
`

// Two -count passes: per pass the slowest Decide case and the most
// allocations of any case, and the compile time; then the targets.
func TestConvertGoBench(t *testing.T) {
	var b bytes.Buffer
	if err := convertGoBench(strings.NewReader(goBenchOut), &b); err != nil {
		t.Fatal(err)
	}
	results, err := readResults(&b)
	if err != nil || len(results) != 4 {
		t.Fatalf("%d results, %v:\n%s", len(results), err, b.String())
	}
	d1, c1, d2, c2 := results[0], results[1], results[2], results[3]
	if d1.Figure != FigDecide1M || d1.Round != 1 || d1.NsPerOp != 173.8 || d1.Case != "hit-deep" || *d1.AllocsPerOp != 0 {
		t.Errorf("pass 1 decide %+v", d1)
	}
	if d2.Round != 2 || d2.NsPerOp != 120 || d2.Case != "hit" || *d2.AllocsPerOp != 1 {
		t.Errorf("pass 2 decide %+v", d2)
	}
	if c1.Figure != FigCompile1M || c1.Seconds < 0.728 || c1.Seconds > 0.729 || c1.HeapMB != 84.91 || c2.Round != 2 {
		t.Errorf("compile %+v %+v", c1, c2)
	}
	var out bytes.Buffer
	writeTargets(results, &out)
	for _, want := range []string{
		// Median of 173.8 and 120 is 146.9 ns; one pass allocated, so missed.
		"| `Decide` at 1M domains ≤ 1 µs, 0 allocs | egress 147 ns (slowest case), up to 1 allocs/op | 1000 ns (fixed) | 0.15× | ≤ 1.00× | 1/2 (0.17, 0.12) | MISSED |",
		// Median of 0.73 and 3.1 s is 1.91 s; the 3.1 s pass missed.
		"| compile 1M domains < 3 s | egress 1.91 s | 3.00 s (fixed) | 0.64× | ≤ 1.00× | 1/2 (0.24, 1.03) | MET |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("targets lack %q:\n%s", want, out.String())
		}
	}
	if err := convertGoBench(strings.NewReader("PASS\n"), &b); err == nil {
		t.Error("empty output accepted")
	}
}

func TestParseBenchLine(t *testing.T) {
	for _, bad := range []string{"", "PASS", "BenchmarkX-2 notanumber 1 ns/op", "BenchmarkX-2 5 x ns/op", "BenchmarkX-2 5 12 B/op"} {
		if _, ok := parseBenchLine(bad); ok {
			t.Errorf("parseBenchLine(%q) accepted", bad)
		}
	}
	b, ok := parseBenchLine("BenchmarkDecide1M/ipv6-miss-16  14292542  83.61 ns/op")
	if !ok || b.name != "Decide1M/ipv6-miss" || b.nsPerOp != 83.61 || b.hasMem {
		t.Errorf("%+v %v", b, ok)
	}
}
