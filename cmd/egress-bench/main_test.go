package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"one sample", ms(7), 50, 7 * time.Millisecond},
		{"one sample max", ms(7), 100, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p90 of 1..100", ms(hundred...), 90, 90 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"max of 1..100", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four is the last", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"tiny p is the first", ms(1, 2, 3), 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := percentile(tt.samples, tt.p)
			if err != nil || got != tt.want {
				t.Fatalf("percentile(%v) = %v, %v; want %v", tt.p, got, err, tt.want)
			}
		})
	}
	if _, err := percentile(nil, 50); !errors.Is(err, errNoSamples) {
		t.Errorf("empty: %v", err)
	}
	for _, p := range []float64{0, -1, 101} {
		if _, err := percentile(ms(1), p); err == nil {
			t.Errorf("p=%v accepted", p)
		}
	}
}

func TestSummarizeSorts(t *testing.T) {
	s := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond}
	l := summarize(s)
	if l.P50 != 3 || l.Max != 5 || l.P99 != 5 {
		t.Fatalf("summary %+v", l)
	}
	if (summarize(nil) != latencies{}) {
		t.Fatal("empty summary not zero")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"direct needs no proxy", []string{"-mode", "direct"}, true},
		{"connect with loopback proxy", []string{"-mode", "connect", "-proxy", "127.0.0.1:3128"}, true},
		{"IPv6 loopback", []string{"-mode", "transparent", "-proxy", "[::1]:8443"}, true},
		{"throughput direct", []string{"-mode", "throughput", "-via", "direct", "-bytes", "1024"}, true},
		{"http direct needs no proxy", []string{"-mode", "http", "-via", "direct"}, true},
		{"http not transparent", []string{"-mode", "http", "-via", "transparent", "-proxy", "127.0.0.1:1"}, false},
		{"negative round", []string{"-mode", "direct", "-round", "-1"}, false},
		{"idle with pid", []string{"-mode", "idle", "-proxy", "127.0.0.1:1", "-pid", "1"}, true},
		{"idle unidentified", []string{"-mode", "idle", "-via", "unidentified", "-proxy", "127.0.0.1:1", "-pid", "1"}, true},
		{"unidentified is idle only", []string{"-mode", "throughput", "-via", "unidentified", "-proxy", "127.0.0.1:1"}, false},
		{"report skips run checks", []string{"-report", "x.jsonl", "-c", "0"}, true},
		{"unknown mode", []string{"-mode", "flood"}, false},
		{"unknown via", []string{"-mode", "throughput", "-via", "udp"}, false},
		{"connect needs proxy", []string{"-mode", "connect"}, false},
		{"proxy must be loopback", []string{"-mode", "connect", "-proxy", "10.0.0.1:3128"}, false},
		{"proxy is not a name", []string{"-mode", "connect", "-proxy", "localhost:3128"}, false},
		{"origin must be loopback", []string{"-mode", "direct", "-origin-tls", "0.0.0.0:443"}, false},
		{"zero concurrency", []string{"-mode", "direct", "-c", "0"}, false},
		{"too long", []string{"-mode", "direct", "-d", "11m"}, false},
		{"zero cap", []string{"-mode", "direct", "-n", "0"}, false},
		{"huge cap", []string{"-mode", "direct", "-n", "10000001"}, false},
		{"idle needs pid", []string{"-mode", "idle", "-proxy", "127.0.0.1:1"}, false},
		{"idle tunnel count", []string{"-mode", "idle", "-proxy", "127.0.0.1:1", "-pid", "1", "-tunnels", "0"}, false},
		{"throughput bytes", []string{"-mode", "throughput", "-via", "direct", "-bytes", "0"}, false},
		{"stray argument", []string{"-mode", "direct", "extra"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if (err == nil) != tt.ok {
				t.Fatalf("parseFlags(%q) error %v, want ok=%v", tt.args, err, tt.ok)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	status := "Name:\tegress\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	if kb, err := parseVmRSS(strings.NewReader(status)); err != nil || kb != 12345 {
		t.Fatalf("VmRSS = %d, %v", kb, err)
	}
	if _, err := parseVmRSS(strings.NewReader("Name:\tx\n")); !errors.Is(err, errNoVmRSS) {
		t.Fatalf("missing VmRSS: %v", err)
	}
	// A command name with spaces and ')' must not shift the fields.
	stat := "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 123 456 789"
	if ticks, err := parseCPUTicks(stat); err != nil || ticks != 325 {
		t.Fatalf("ticks = %d, %v", ticks, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseCPUTicks(bad); !errors.Is(err, errBadStat) {
			t.Errorf("parseCPUTicks(%q) = %v", bad, err)
		}
	}
}

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"direct","figure":"rate64","mode":"direct","ok":10,"rate_per_s":1000}`,
		`{"label":"direct","figure":"rate64","mode":"direct","ok":10,"rate_per_s":3000}`,
		`{"label":"direct","figure":"rate64","mode":"direct","ok":10,"rate_per_s":2000}`,
		`{"label":"egress","figure":"rate64","mode":"connect","ok":10,"rate_per_s":1500,"proxy_cpu_us_per_iter":300}`,
		`{"label":"egress","figure":"rate64","mode":"connect","ok":0,"errors":5,"first_error":"boom"}`,
		`{"label":"squid","figure":"rate64","mode":"connect","ok":10,"rate_per_s":1400,"proxy_cpu_us_per_iter":400}`,
		`not json: a human line`,
	}, "\n")
	results, err := readResults(strings.NewReader(in))
	if err != nil || len(results) != 6 {
		t.Fatalf("read %d, %v", len(results), err)
	}
	var b bytes.Buffer
	writeReport(results, &b)
	out := b.String()
	for _, want := range []string{
		"| figure | direct | egress | squid |\n",
		"| CONNECT new tunnels/s, c=64 (/s) | 2000 | 1500 (0.75×) | 1400 (0.70×) |",
		// No direct baseline: a peer's ratio is egress ÷ peer.
		"| proxy CPU per new CONNECT tunnel (µs; × = egress ÷ peer) | – | 300 | 400 (0.75×) |",
		"egress rate64: 5 errors (boom)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// compare-builds.sh: direct and two builds.
	builds, _ := readResults(strings.NewReader(strings.Join([]string{
		`{"label":"direct","figure":"rate64","mode":"direct","ok":10,"rate_per_s":2000}`,
		`{"label":"egress-old","figure":"rate64","mode":"connect","ok":10,"rate_per_s":1000}`,
		`{"label":"egress-new","figure":"rate64","mode":"connect","ok":10,"rate_per_s":1500}`,
	}, "\n")))
	b.Reset()
	writeReport(builds, &b)
	if want := "| CONNECT new tunnels/s, c=64 (/s) | 2000 | 1000 (0.50×) | 1500 (0.75×) |"; !strings.Contains(b.String(), want) {
		t.Errorf("builds report lacks %q:\n%s", want, b.String())
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3, 0}); m != 2.5 {
		t.Errorf("even median without zeros %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("empty median %v", m)
	}
}

// The targets table: verdicts from the medians, rounds counted one by one,
// the p99 target taken on egress's worse path against the best peer.
func TestReportTargets(t *testing.T) {
	var lines []string
	add := func(round int, label, figure, mode, extra string) {
		lines = append(lines, fmt.Sprintf(`{"label":%q,"figure":%q,"round":%d,"mode":%q,"ok":10%s}`, label, figure, round, mode, extra))
	}
	// Three rounds: egress CPU (transparent) 150, 170, 140 µs against
	// HAProxy's 160 in each: median 150 ≤ 160, met in rounds 1 and 3.
	for r, e := range []float64{150, 170, 140} {
		add(r+1, "egress", "trate64", "transparent", fmt.Sprintf(`,"rate_per_s":1000,"proxy_cpu_us_per_iter":%v`, e))
		add(r+1, "haproxy", "trate64", "transparent", `,"rate_per_s":1250,"proxy_cpu_us_per_iter":160`)
		add(r+1, "egress", "rate64", "connect", `,"rate_per_s":1500,"proxy_cpu_us_per_iter":200`)
		add(r+1, "squid", "rate64", "connect", `,"rate_per_s":1400,"proxy_cpu_us_per_iter":300`)
		add(r+1, "egress", "p99c8", "connect", `,"latency":{"p99_ms":9}`)
		add(r+1, "egress", "tp99c8", "transparent", `,"latency":{"p99_ms":11}`)
		add(r+1, "squid", "p99c8", "connect", `,"latency":{"p99_ms":12}`)
		add(r+1, "haproxy", "tp99c8", "transparent", `,"latency":{"p99_ms":10}`)
		add(r+1, "egress", "idle", "idle", `,"rss_per_tunnel_kb":4.5`)
		add(r+1, "direct", "tput", "throughput", fmt.Sprintf(`,"other_cpu_pct":%d`, 5*r))
	}
	results, err := readResults(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writeReport(results, &b)
	out := b.String()
	for _, want := range []string{
		"| proxy CPU per new tunnel, transparent ≤ HAProxy's | egress 150 µs | haproxy 160 µs | 0.94× | ≤ 1.00× | 2/3 (0.94, 1.06, 0.88) | MET |",
		// 200 / 300 = 0.67 ≤ 0.75.
		"| proxy CPU per new tunnel, CONNECT ≤ 0.75 × Squid's | egress 200 µs | squid 300 µs | 0.67× | ≤ 0.75× | 3/3 (0.67, 0.67, 0.67) | MET |",
		"| transparent new conns/s, c=64 ≥ HAProxy's | egress 1000 /s | haproxy 1250 /s | 0.80× | ≥ 1.00× | 0/3 (0.80, 0.80, 0.80) | MISSED |",
		// 1500 / 1400 = 1.07 < 1.1.
		"| CONNECT new tunnels/s, c=64 ≥ 1.1 × Squid's | egress 1500 /s | squid 1400 /s | 1.07× | ≥ 1.10× | 0/3 (1.07, 1.07, 1.07) | MISSED |",
		// Worse egress path 11 ms (transparent) against HAProxy's 10 ms.
		"| p99 new tunnel, c=8 ≤ the best peer's | egress 11.0 ms (CONNECT 9.00, transparent 11.0) | best peer: haproxy 10.0 ms | 1.10× | ≤ 1.00× | 0/3 (1.10, 1.10, 1.10) | MISSED |",
		"| RSS per idle TLS tunnel ≤ 5 KB | egress 4.50 KB | 5.00 KB (fixed) | 0.90× | ≤ 1.00× | 3/3 (0.90, 0.90, 0.90) | MET |",
		"| one tunnel, 1 GiB each way ≥ 0.90 × direct | egress – | direct – | – | ≥ 0.90× | – | NO DATA |",
		// Other work: 0, 5 and 10 % in the three rounds; none above 10 %.
		"during the 3 timed runs: median 5%, max 10%.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "runs above") {
		t.Errorf("no run was above 10%%:\n%s", out)
	}
}

// Noisy runs are named, worst first, at most maxNamed of them.
func TestReportNoise(t *testing.T) {
	var lines []string
	for i := 1; i <= 9; i++ {
		lines = append(lines, fmt.Sprintf(`{"label":"egress","figure":"rate64","round":%d,"mode":"connect","ok":1,"other_cpu_pct":%d}`, i, i*5))
	}
	results, err := readResults(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writeNoise(results, &b)
	want := "median 25%, max 45%.\n7 of 9 runs above 10%, not comparable with a quiet machine's (worst first): " +
		"egress rate64 round 9: 45%; egress rate64 round 8: 40%; egress rate64 round 7: 35%; egress rate64 round 6: 30%; " +
		"egress rate64 round 5: 25%; egress rate64 round 4: 20%; 1 more.\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("noise:\n%s\nwant suffix:\n%s", b.String(), want)
	}
}

func TestRatioText(t *testing.T) {
	for _, c := range []struct {
		ratio, bound float64
		want         string
	}{{1.098, 1.1, "1.098"}, {1.1, 1.1, "1.10"}, {0.94, 1, "0.94"}, {0.999, 1, "0.999"}} {
		if got := ratioText(c.ratio, c.bound); got != c.want {
			t.Errorf("ratioText(%v, %v) = %q, want %q", c.ratio, c.bound, got, c.want)
		}
	}
}
