package memtrim

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

const mib = 1 << 20

// steps feeds (seconds, allocs MiB, releasable MiB) samples and returns at
// which of them Step said to trim.
func steps(t *Trimmer, in [][3]float64) []int {
	t0 := time.Unix(1000, 0)
	var got []int
	for i, s := range in {
		if t.Step(Sample{At: t0.Add(time.Duration(s[0] * float64(time.Second))), Allocs: uint64(s[1] * mib), Releasable: uint64(s[2] * mib)}) {
			got = append(got, i)
		}
	}
	return got
}

// TestStepCost: a trim that took long spaces the next one out.
func TestStepCost(t *testing.T) {
	tr := &Trimmer{took: 100 * time.Millisecond} // next trim at least 5 s after the last
	in := [][3]float64{
		{0, 0, 0}, {0.5, 50, 20}, {1, 50, 20}, // trims (first)
		{1.5, 100, 20}, {2, 100, 20}, {4, 100, 20}, {5.5, 100, 20}, {6, 100, 20}, // 5 s after 1.0
	}
	got := steps(tr, in)
	if len(got) != 2 || got[0] != 2 || got[1] != 7 {
		t.Fatalf("trims at %v, want [2 7]", got)
	}
}

func TestStep(t *testing.T) {
	cases := []struct {
		name string
		in   [][3]float64
		want []int
	}{
		{"burst then quiet trims once", [][3]float64{
			{0, 0, 0}, {0.5, 50, 20}, {1, 100, 40}, {1.5, 100.1, 40}, {2, 100.2, 40}, {2.5, 100.2, 40},
		}, []int{3}},
		{"steady load never trims", [][3]float64{
			{0, 0, 0}, {0.5, 10, 20}, {1, 20, 20}, {1.5, 30, 20}, {2, 40, 20}, {2.5, 50, 20}, {3, 60, 20},
		}, nil},
		{"little to give back", [][3]float64{
			{0, 0, 0}, {0.5, 50, 1}, {1, 50, 1}, {1.5, 50, 1},
		}, nil},
		{"a quiet process does nothing", [][3]float64{
			{0, 0, 0}, {0.5, 0, 0}, {1, 0, 0}, {1.5, 0, 0},
		}, nil},
		{"at most once per interval", [][3]float64{
			{0, 0, 0}, {0.5, 50, 20}, {1, 50, 20}, // trim at 2
			{1.5, 100, 20}, {2, 100, 20}, // burst, quiet again: too soon after the last
			{2.5, 100, 20}, {3, 100, 20}, // 2 s after the first: trims
			{3.5, 100, 20}, {6, 100, 20}, // no burst since: nothing more
		}, []int{2, 6}},
		{"quiet with memory to give but no burst", [][3]float64{
			{0, 0, 0}, {0.5, 0.1, 20}, {3, 0.2, 20}, {6, 0.3, 20},
		}, nil},
		{"counter going backwards is no burst", [][3]float64{
			{0, 100, 0}, {0.5, 10, 20}, {1, 10, 20},
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := steps(&Trimmer{}, c.in)
			if len(got) != len(c.want) {
				t.Fatalf("trims at %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("trims at %v, want %v", got, c.want)
				}
			}
		})
	}
}

var sink [][]byte

// TestRunReturnsMemory: a real burst of garbage, then quiet: Run trims
// within a bounded time and the runtime's released memory grows.
func TestRunReturnsMemory(t *testing.T) {
	released := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var trims atomic.Int32
	tr := &Trimmer{Tick: 20 * time.Millisecond, MinInterval: 20 * time.Millisecond, Trimmed: func(time.Duration) { trims.Add(1) }}
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()

	time.Sleep(50 * time.Millisecond) // a first sample before the burst
	before := released()
	// The burst: 64 MiB kept, then dropped (garbage), over about 100 ms.
	for i := 0; i < 64; i++ {
		sink = append(sink, make([]byte, mib))
		if i%8 == 7 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	sink = nil
	deadline := time.Now().Add(10 * time.Second)
	for trims.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no trim within 10 s of the burst")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after := released(); after < before+16*mib {
		t.Errorf("released %d MiB -> %d MiB after the trim, want at least 16 MiB more", before/mib, after/mib)
	}
	cancel()
	<-done
}
