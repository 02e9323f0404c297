package discover

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

// TestPlantedNamesRankFirst is issue 18's test: in a generated stream where
// two planted names follow TikTok hits among popular and random noise, both
// rank first and every noise name ranks below them; names that a list
// already holds and IP literals are never candidates.
func TestPlantedNamesRankFirst(t *testing.T) {
	cfg := loadTestConfig(t)
	events := generate(smallSpec)
	rep, err := Run(cfg, inputs(encode(events, 2, 7)), Options{Category: "tiktok"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep.WriteText(&buf, 10)
	t.Logf("%d events\n%s", len(events), buf.String())
	if len(rep.Candidates) < 2 {
		t.Fatalf("%d candidates", len(rep.Candidates))
	}
	top := []string{rep.Candidates[0].Name, rep.Candidates[1].Name}
	slices.Sort(top)
	want := slices.Clone(planted)
	slices.Sort(want)
	if !slices.Equal(top, want) {
		t.Fatalf("top two = %v, want the planted %v", top, want)
	}
	third := 0.0
	if len(rep.Candidates) > 2 {
		third = rep.Candidates[2].Score
	}
	if rep.Candidates[1].Score < 3*third {
		t.Errorf("planted names are not clearly ahead: second %.1f, third %.1f", rep.Candidates[1].Score, third)
	}
	for _, c := range rep.Candidates {
		if strings.Contains(c.Name, "tiktok") || strings.Contains(c.Name, "byteoversea") || strings.Contains(c.Name, "known") || c.Name == "203.0.113.7" {
			t.Errorf("listed name or IP literal %q is a candidate", c.Name)
		}
		if slices.Contains(popular, c.Name) && c.Score > rep.Candidates[1].Score/10 {
			t.Errorf("popular %q scores %.1f, too close to the planted names", c.Name, c.Score)
		}
	}
	if rep.HitSources < 100 || rep.Sessions < rep.HitSources || rep.Listed == 0 {
		t.Errorf("hit sources %d, sessions %d, listed %d", rep.HitSources, rep.Sessions, rep.Listed)
	}
}

// TestMergeOrder: the report does not depend on how the events are split
// into files.
func TestMergeOrder(t *testing.T) {
	cfg := loadTestConfig(t)
	events := generate(smallSpec)
	var reps []*Report
	for _, files := range []int{1, 4} {
		rep, err := Run(cfg, inputs(encode(events, files, uint64(files))), Options{Category: "tiktok"})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	for _, r := range reps[1:] {
		if len(r.Candidates) < 2 || r.Candidates[0].Name != reps[0].Candidates[0].Name || r.Candidates[1].Name != reps[0].Candidates[1].Name {
			t.Errorf("top two differ by file split")
		}
	}
}

// countingFile counts the inputs open at once.
type countingFile struct {
	io.Reader
	open *atomic.Int32
}

func (f countingFile) Close() error { f.open.Add(-1); return nil }

// TestRotatedFilesOpenLazily: rotated files (one after another in time) are
// opened when the merge reaches them, not all at once, and give the same
// ranking as one file.
func TestRotatedFilesOpenLazily(t *testing.T) {
	cfg := loadTestConfig(t)
	events := generate(smallSpec)
	enc, _ := audit.NewEncoder("ecs", "test")
	const parts = 6
	files := make([][]byte, parts)
	for i, g := range events {
		p := i * parts / len(events)
		files[p] = append(enc.Encode(files[p], g.ev), '\n')
	}
	var open, most atomic.Int32
	var in []Input
	for i, f := range files {
		in = append(in, Input{Name: fmt.Sprintf("events.jsonl.%d", i), Open: func() (io.ReadCloser, error) {
			n := open.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			return countingFile{Reader: bytes.NewReader(f), open: &open}, nil
		}})
	}
	slices.Reverse(in) // the order of the arguments does not matter
	rep, err := Run(cfg, in, Options{Category: "tiktok"})
	if err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m > 2 || open.Load() != 0 {
		t.Errorf("%d inputs open at once, %d left open", m, open.Load())
	}
	if rep.Events != len(events) || len(rep.Candidates) < 2 || !slices.Contains(planted, rep.Candidates[0].Name) || !slices.Contains(planted, rep.Candidates[1].Name) {
		t.Errorf("events %d of %d, candidates %+v", rep.Events, len(events), rep.Candidates[:min(2, len(rep.Candidates))])
	}
	_, err = Run(cfg, []Input{{Name: "gone", Open: func() (io.ReadCloser, error) { return nil, os.ErrNotExist }}}, Options{Category: "tiktok"})
	if !errors.Is(err, ErrRead) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open error: %v", err)
	}
}

func ev(src string, at time.Duration, name string) *audit.Event {
	return &audit.Event{Time: time.Unix(1e9, 0).Add(at), Listener: audit.ListenerProxy, SourceIP: src,
		DestDomain: name, SNI: name, DestPort: 443, Action: audit.ActionAllow, Reason: "default"}
}

// TestWindow pins the co-occurrence semantics: within Window after a hit,
// never before it; a late hit (written after what followed it) still
// counts; a session is counted once per source.
func TestWindow(t *testing.T) {
	cfg := loadTestConfig(t)
	a, err := New(cfg, Options{Category: "tiktok", Window: 10 * time.Second, MinSources: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := time.Second
	for _, e := range []*audit.Event{
		ev("10.0.0.1", 0, "before.example"),
		ev("10.0.0.1", 1*s, "www.tiktok.com"),
		ev("10.0.0.1", 2*s, "after.example"),
		ev("10.0.0.1", 5*s, "after.example"),
		ev("10.0.0.1", 12*s, "late-write.example"),  // 11 s after the hit: outside
		ev("10.0.0.1", 100*s, "late-write.example"), // written before its hit
		ev("10.0.0.1", 95*s, "v1.tiktokcdn.com"),    // a late hit: new session
		ev("10.0.0.2", 2*s, "after.example"),        // other source, no hit
		ev("10.0.0.2", 1000*s, "noise.example"),
	} {
		a.Add(e)
	}
	rep := a.Report()
	got := map[string]Candidate{}
	for _, c := range rep.Candidates {
		got[c.Name] = c
	}
	if _, ok := got["before.example"]; ok {
		t.Error("a name contacted before the hit is a candidate")
	}
	if c := got["after.example"]; c.Cooccurrences != 2 || c.Sources != 1 || c.Sessions != 1 || c.Consistency != 0.5 {
		t.Errorf("after.example = %+v", c)
	}
	if c := got["late-write.example"]; c.Cooccurrences != 1 {
		t.Errorf("late-write.example = %+v", c)
	}
	if rep.Sessions != 2 || rep.HitSources != 1 || rep.Hits != 2 {
		t.Errorf("sessions %d, hit sources %d, hits %d", rep.Sessions, rep.HitSources, rep.Hits)
	}
}

// TestBoundedTables: with small caps the tables stay bounded, pruning is
// reported, and the planted names still rank first.
func TestBoundedTables(t *testing.T) {
	cfg := loadTestConfig(t)
	a, err := New(cfg, Options{Category: "tiktok", MaxNames: 64, MaxPairs: 4096, MaxSources: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range generate(smallSpec) {
		a.Add(g.ev)
		if len(a.stats) > 64 || len(a.pairs) > 4096 {
			t.Fatalf("tables grew to %d names, %d pairs", len(a.stats), len(a.pairs))
		}
	}
	rep := a.Report()
	if rep.Pruned == 0 {
		t.Error("nothing pruned")
	}
	if len(rep.Candidates) < 2 || !slices.Contains(planted, rep.Candidates[0].Name) || !slices.Contains(planted, rep.Candidates[1].Name) {
		t.Errorf("candidates after pruning: %+v", rep.Candidates[:min(3, len(rep.Candidates))])
	}
	b, _ := New(cfg, Options{Category: "tiktok", MaxSources: 10})
	for _, g := range generate(smallSpec) {
		b.Add(g.ev)
	}
	if len(b.src) != 10 || b.Report().SourcesOverCap == 0 {
		t.Errorf("sources %d over cap %d", len(b.src), b.Report().SourcesOverCap)
	}
}

func TestInputs(t *testing.T) {
	cfg := loadTestConfig(t)
	if _, err := Run(cfg, nil, Options{Category: "nope"}); !errors.Is(err, ErrUnknownCategory) {
		t.Errorf("unknown category: %v", err)
	}
	files := encode(generate(smallSpec), 1, 1)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(files[0])
	zw.Close()
	junk := "not json\n\n" + strings.Repeat("x", MaxLine+10) + "\n{\"@timestamp\":\"x\"}\n"
	rep, err := Run(cfg, []Input{{Name: "a.gz", R: &z}, {Name: "junk", R: strings.NewReader(junk)}}, Options{Category: "tiktok"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Malformed != 3 || rep.Lines != rep.Events+3 || len(rep.Candidates) < 2 {
		t.Errorf("malformed %d lines %d events %d candidates %d", rep.Malformed, rep.Lines, rep.Events, len(rep.Candidates))
	}
	_, err = Run(cfg, []Input{{Name: "bad.gz", R: strings.NewReader("\x1f\x8bnot gzip")}}, Options{Category: "tiktok"})
	if !errors.Is(err, ErrRead) {
		t.Errorf("bad gzip: %v", err)
	}
}

// FuzzRun: arbitrary input never panics and every line is accounted for.
func FuzzRun(f *testing.F) {
	cfg := loadTestConfig(f)
	files := encode(generate(genSpec{Seed: 1, Sources: 3, Duration: 10 * time.Minute, Popular: time.Minute, Random: 2, Users: 1, Sessions: 2}), 1, 1)
	f.Add(files[0])
	f.Add([]byte("{}\n\n{\"@timestamp\":\"2026-01-01T00:00:00Z\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Run(cfg, []Input{{Name: "f", R: bytes.NewReader(data)}}, Options{Category: "tiktok", MinSources: 1})
		if err != nil && !errors.Is(err, ErrRead) {
			t.Fatal(err)
		}
		if rep.Lines != rep.Events+rep.Malformed {
			t.Fatalf("lines %d != events %d + malformed %d", rep.Lines, rep.Events, rep.Malformed)
		}
	})
}

// TestMeasure1M measures `discover` over about a million generated events
// read from files (time, peak heap, heap retained by the tables):
//
//	EGRESS_DISCOVER_MEASURE=1 go test ./internal/discover -run TestMeasure1M -v
func TestMeasure1M(t *testing.T) {
	if os.Getenv("EGRESS_DISCOVER_MEASURE") == "" {
		t.Skip("set EGRESS_DISCOVER_MEASURE=1")
	}
	cfg := loadTestConfig(t)
	spec := genSpec{Seed: 1, Sources: 2000, Duration: 5 * time.Hour, Popular: 4 * time.Minute, Random: 150, Users: 0.5, Sessions: 6}
	dir := t.TempDir()
	var paths []string
	size := 0
	for i, f := range encode(generate(spec), 4, 1) {
		p := filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", i))
		if err := os.WriteFile(p, f, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		size += len(f)
	}
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() { // sample the heap while Run works
		var m runtime.MemStats
		var hi uint64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- hi
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				hi = max(hi, m.HeapInuse)
			}
		}
	}()
	var in []Input
	for _, p := range paths {
		in = append(in, Input{Name: p, Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	start := time.Now()
	a, _ := New(cfg, Options{Category: "tiktok"})
	rep, err := a.run(in)
	elapsed := time.Since(start)
	close(stop)
	hi := <-peak
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(a)
	t.Logf("%d events (%d MiB in %d files), %d sources, %d candidate names tracked, %d pairs; top: %s, %s",
		rep.Events, size>>20, len(paths), len(a.src), len(a.stats), len(a.pairs), rep.Candidates[0].Name, rep.Candidates[1].Name)
	t.Logf("time %v (%.0f events/s); heap in use: %d MiB before, peak %d MiB, retained by the analyzer after GC %d MiB",
		elapsed.Round(time.Millisecond), float64(rep.Events)/elapsed.Seconds(), before.HeapInuse>>20, hi>>20, (after.HeapInuse-min(after.HeapInuse, before.HeapInuse))>>20)
}
