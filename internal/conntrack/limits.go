package conntrack

import (
	"net/netip"
	"sync"

	"github.com/egress-proxy/egress/internal/metrics"
)

// limiter counts client connections across every listener (max_connections)
// and per effective client address (per_source).
type limiter struct {
	mu      sync.Mutex
	total   int
	sources map[netip.Addr]int
}

// Admit reserves a connection slot for a client, or says which limit refused
// it. The caller must call release once when the connection ends.
func (tr *Tracker) Admit(listener string, src netip.Addr) (release func(), reason string) {
	lim := tr.config().Limits
	l := &tr.limits
	src = src.Unmap()
	l.mu.Lock()
	switch {
	case l.total >= lim.MaxConnections:
		l.mu.Unlock()
		tr.metrics.ConnectionsRejected.WithLabelValues(listener, metrics.RejectMaxConnections).Inc()
		return nil, metrics.RejectMaxConnections
	case l.sources[src] >= lim.PerSource:
		l.mu.Unlock()
		tr.metrics.ConnectionsRejected.WithLabelValues(listener, metrics.RejectPerSource).Inc()
		return nil, metrics.RejectPerSource
	}
	l.total++
	l.sources[src]++
	l.mu.Unlock()
	gauge := tr.metrics.ActiveConnections.WithLabelValues(listener)
	gauge.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			gauge.Dec()
			l.mu.Lock()
			l.total--
			if n := l.sources[src]; n <= 1 {
				delete(l.sources, src)
			} else {
				l.sources[src] = n - 1
			}
			l.mu.Unlock()
		})
	}, ""
}

// Connections is the number of admitted client connections.
func (tr *Tracker) Connections() int {
	tr.limits.mu.Lock()
	defer tr.limits.mu.Unlock()
	return tr.limits.total
}
