// Package memtrim owns when egress hands free heap memory back to the
// operating system: after a burst of work, once the process has gone quiet.
//
// Go's runtime keeps the memory a burst used (the garbage of thousands of
// handshakes, the stacks of their goroutines) and returns it to the kernel
// only slowly, sized for a heap that may grow again at once. A proxy that
// opened thousands of tunnels which then sit idle would keep that memory for
// minutes: after a burst of 2,000 tunnels it held about 2.5 times the memory
// the tunnels themselves need. The trimmer samples the runtime (runtime/metrics)
// every Tick; when at least MinReleasable bytes were allocated since the
// last trim, the allocation rate has fallen to a sixteenth of the
// busiest tick since the last trim and at least MinReleasable bytes could be
// returned, it runs one collection and returns the free memory
// (runtime/debug.FreeOSMemory), at most once per MinInterval and at most 2 %
// of the time (a trim of a 400 MB heap takes ~150 ms). Under steady
// load the rate never falls that far, so it never runs there: it costs a
// collection after a burst, not one per tick.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults of a Trimmer's settings.
const (
	DefaultTick          = 500 * time.Millisecond
	DefaultMinInterval   = 2 * time.Second
	DefaultMinReleasable = 4 << 20
	quietFactor          = 16 // quiet: the rate is at most peak / quietFactor
)

// Sample is what the trimmer reads from the runtime at each tick.
type Sample struct {
	At time.Time
	// Allocs is the cumulative count of bytes allocated on the heap
	// (/gc/heap/allocs:bytes).
	Allocs uint64
	// Releasable estimates what a collection and a scavenge would give
	// back: free heap memory not yet returned (/memory/classes/heap/free)
	// plus objects allocated since the last collection's live heap
	// (/memory/classes/heap/objects minus /gc/heap/live).
	Releasable uint64
}

// Trimmer decides from successive samples when to trim. Its zero value uses
// the defaults; it is used by one goroutine (Run).
type Trimmer struct {
	Tick          time.Duration
	MinInterval   time.Duration
	MinReleasable uint64
	// Trim returns free memory to the OS; nil: debug.FreeOSMemory.
	Trim func()
	// Trimmed, if set, is called after each trim with how long it took (a
	// metric, a log line).
	Trimmed func(took time.Duration)

	last     Sample
	have     bool
	base     uint64  // Allocs at the last trim (or the first sample)
	peak     float64 // bytes/s: the busiest tick since the last trim
	lastTrim time.Time
	took     time.Duration // the last trim's duration (Run)
}

// costFactor: the interval between trims is at least this many times the
// last trim's duration, so that trimming takes at most 2 % of the time
// whatever the heap's size (a collection of a 400 MB heap takes ~150 ms).
const costFactor = 50

// Step takes the next sample and reports whether to trim now.
func (t *Trimmer) Step(s Sample) bool {
	if !t.have {
		t.last, t.have, t.base = s, true, s.Allocs
		return false
	}
	dt := s.At.Sub(t.last.At).Seconds()
	var rate float64
	if dt > 0 && s.Allocs >= t.last.Allocs {
		rate = float64(s.Allocs-t.last.Allocs) / dt
	}
	t.last = s
	t.peak = max(t.peak, rate)
	minInterval := t.MinInterval
	if minInterval <= 0 {
		minInterval = DefaultMinInterval
	}
	minInterval = max(minInterval, costFactor*t.took)
	minRel := t.MinReleasable
	if minRel == 0 {
		minRel = DefaultMinReleasable
	}
	// A burst since the last trim: at least minRel allocated (so that a
	// trim that could not give back what Releasable promised is not
	// repeated on a quiet process).
	burst := s.Allocs >= t.base+minRel
	if !burst || rate*quietFactor > t.peak || s.Releasable < minRel || s.At.Sub(t.lastTrim) < minInterval {
		if s.Allocs < t.base {
			t.base = s.Allocs
		}
		return false
	}
	t.lastTrim, t.base = s.At, s.Allocs
	t.peak = rate
	return true
}

// Run samples the runtime every Tick until ctx ends, trimming when Step says
// so.
func (t *Trimmer) Run(ctx context.Context) {
	tick := t.Tick
	if tick <= 0 {
		tick = DefaultTick
	}
	trim := t.Trim
	if trim == nil {
		trim = debug.FreeOSMemory
	}
	r := newReader()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			if t.Step(r.read(now)) {
				start := time.Now()
				trim()
				t.took = time.Since(start)
				if t.Trimmed != nil {
					t.Trimmed(t.took)
				}
			}
		}
	}
}

// reader reads a Sample from runtime/metrics; its slice is reused.
type reader struct{ s []metrics.Sample }

func newReader() *reader {
	return &reader{s: []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}}
}

func (r *reader) read(now time.Time) Sample {
	metrics.Read(r.s)
	v := func(i int) uint64 {
		if r.s[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not supported by this runtime
		}
		return r.s[i].Value.Uint64()
	}
	rel := v(1)
	if obj, live := v(2), v(3); obj > live {
		rel += obj - live
	}
	return Sample{At: now, Allocs: v(0), Releasable: rel}
}
