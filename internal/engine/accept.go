package engine

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Accept accepts connections from ln until it is closed, and runs serve on
// each in a goroutine counted in wg (serve must call wg.Done). Errors such as
// running out of file descriptors back off (5 ms doubling to 1 s) instead of
// spinning. It returns nil once ln is closed.
func (e *Engine) Accept(ln net.Listener, listener string, wg *sync.WaitGroup, serve func(c net.Conn, accepted time.Time)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			e.log.Warn("accept failed", "listener", listener, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		wg.Add(1)
		go serve(c, time.Now())
	}
}
