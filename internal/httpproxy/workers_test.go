package httpproxy

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkers: every job runs; a job that blocks never delays another (no
// queue: a busy pool starts a worker); idle workers are reused, then end
// after their idle time.
func TestWorkers(t *testing.T) {
	g0 := runtime.NumGoroutine()
	w := &workers{idle: 200 * time.Millisecond}
	block := make(chan struct{})
	var blocked sync.WaitGroup
	for i := 0; i < 20; i++ {
		blocked.Add(1)
		w.run(func() { blocked.Done(); <-block })
	}
	blocked.Wait() // 20 jobs running at once: none waited for another
	var ran atomic.Int32
	done := make(chan struct{})
	w.run(func() { ran.Add(1); close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a job waited behind blocked ones")
	}
	close(block)
	// Sequential jobs reuse the idle workers: no new goroutine each.
	time.Sleep(20 * time.Millisecond)
	peak := runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		d := make(chan struct{})
		w.run(func() { ran.Add(1); close(d) })
		<-d
	}
	if g := runtime.NumGoroutine(); g > peak+2 {
		t.Fatalf("%d goroutines after 200 sequential jobs, %d before: workers not reused", g, peak)
	}
	if ran.Load() != 201 {
		t.Fatalf("%d jobs ran, want 201", ran.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %v after the last job, %d before: idle workers did not end", runtime.NumGoroutine(), 5*time.Second, g0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkersIdleBound: after a burst, at most maxIdleWorkers wait.
func TestWorkersIdleBound(t *testing.T) {
	g0 := runtime.NumGoroutine()
	w := &workers{idle: 10 * time.Second}
	block := make(chan struct{})
	var started sync.WaitGroup
	n := maxIdleWorkers + 100
	for i := 0; i < n; i++ {
		started.Add(1)
		w.run(func() { started.Done(); <-block })
	}
	started.Wait()
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0+maxIdleWorkers {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after a burst of %d, %d before: more than %d idle workers kept", runtime.NumGoroutine(), n, g0, maxIdleWorkers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if k := w.idleN.Load(); k != maxIdleWorkers {
		t.Fatalf("%d idle workers, want %d", k, maxIdleWorkers)
	}
}
