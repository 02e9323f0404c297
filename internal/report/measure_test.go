package report

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMeasure1M (EGRESS_REPORT_MEASURE=1) runs the real `egress report` (and,
// for reference, `egress replay`) over 1,000,000 generated ECS events from
// 100,000 sources and prints wall time and peak RSS of each process.
//
//	EGRESS_REPORT_MEASURE=1 go test ./internal/report -run TestMeasure1M -v -count=1
func TestMeasure1M(t *testing.T) {
	if os.Getenv("EGRESS_REPORT_MEASURE") == "" {
		t.Skip("set EGRESS_REPORT_MEASURE=1 to measure report over 1M events")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "egress")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/egress-proxy/egress/cmd/egress").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := WriteConfig(t, dir, "")
	events := filepath.Join(dir, "events.jsonl")
	f, err := os.Create(events)
	if err != nil {
		t.Fatal(err)
	}
	GenEvents(t, f, 1_000_000, 100_000)
	f.Close()
	fi, _ := os.Stat(events)
	t.Logf("events file: %d bytes", fi.Size())
	runs := [][]string{
		{"report", "-config", cfg, "-events", events, "-o", filepath.Join(dir, "r.html")},
		{"report", "-config", cfg, "-events", events, "-format", "json", "-o", filepath.Join(dir, "r.json")},
		{"replay", "-config", cfg, events},
	}
	// EGRESS_REPORT_BEFORE=/path/to/older/egress adds its report run, for
	// before/after figures in the same run.
	if old := os.Getenv("EGRESS_REPORT_BEFORE"); old != "" {
		runs = append(runs, append([]string{old}, runs[0]...))
	}
	for _, args := range runs {
		exe := bin
		if filepath.IsAbs(args[0]) {
			exe, args = args[0], args[1:]
		}
		cmd := exec.Command(exe, args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("%s %s %s: wall %v, user %v, sys %v, peak RSS %.1f MiB (loadavg %s)", filepath.Base(exe), args[0], args[len(args)-1], el.Round(time.Millisecond),
			time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond),
			float64(ru.Maxrss)/1024, strings.Fields(string(load))[0])
	}
	html, _ := os.Stat(filepath.Join(dir, "r.html"))
	t.Logf("report.html: %d bytes", html.Size())
}

// BenchmarkRead: events per second through Aggregator.Read (parse and count).
func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	GenEvents(b, &buf, 100_000, 10_000)
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		a := NewAggregator(time.Time{}, time.Time{})
		if err := a.Read("bench", bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*100_000/b.Elapsed().Seconds(), "events/s")
}
