package httpproxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs connections' request loops on goroutines that outlive them,
// so that a new connection does not pay for growing a fresh goroutine's
// stack: net/http's request parser and the decision take the loop's stack
// to about 16 KiB, and a goroutine started per connection copied its stack
// three times on the way (runtime.newstack: 5 % of a CONNECT's CPU in the
// profile). A worker that has served a connection waits up to
// workerIdle for the next one and then ends; there is never a queue (a
// connection with no idle worker gets a new one at once), so a slow
// connection never delays another.
type workers struct {
	jobs  chan func()
	once  sync.Once
	idle  time.Duration // how long an idle worker waits; 0: workerIdle
	idleN atomic.Int32  // workers waiting now
}

// workerIdle is how long an idle worker waits for a connection, and
// maxIdleWorkers how many may wait: after a burst the rest end at once, so
// the stacks a burst grew are not kept (128 × ~16 KiB at most).
const (
	workerIdle     = 5 * time.Second
	maxIdleWorkers = 128
)

// run runs f on an idle worker, or on a new one.
func (w *workers) run(f func()) {
	w.once.Do(func() {
		w.jobs = make(chan func())
		if w.idle <= 0 {
			w.idle = workerIdle
		}
	})
	select {
	case w.jobs <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	f()
	var t *time.Timer
	for {
		if w.idleN.Add(1) > maxIdleWorkers {
			w.idleN.Add(-1)
			break
		}
		if t == nil {
			t = time.NewTimer(w.idle)
		} else {
			t.Reset(w.idle)
		}
		select {
		case f = <-w.jobs:
			w.idleN.Add(-1)
			f()
			continue
		case <-t.C:
			w.idleN.Add(-1)
		}
		break
	}
	if t != nil {
		t.Stop()
	}
}
