// Package conntrack owns the client connections of every listener from their
// accept to their close: the accept loop (backoff on errors such as running
// out of file descriptors, a panic in one connection ending that connection
// only), the PROXY protocol header and its trusted peers, the connection
// limits (max_connections, per_source) and the registry of open connections
// — each tracked exactly once — that a reload enforces its bans on and a
// shutdown drains.
//
// What a connection carries (HTTP requests, a CONNECT tunnel, a transparent
// flow) is the business of internal/httpproxy and internal/tlsproxy; they
// tell the registry which names a connection carries now (Conn.Decided).
package conntrack

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
)

// Tracker is shared by every listener of the process.
type Tracker struct {
	config  func() *rules.Config // the active configuration
	metrics *metrics.Metrics
	log     *slog.Logger
	limits  limiter

	mu       sync.Mutex
	open     map[*Conn]struct{}
	draining atomic.Bool
}

// New builds a tracker; config returns the configuration in force (limits,
// trusted PROXY peers, bans to enforce).
func New(config func() *rules.Config, m *metrics.Metrics, log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &Tracker{config: config, metrics: m, log: log, open: map[*Conn]struct{}{}}
	tr.limits.sources = map[netip.Addr]int{}
	return tr
}

// Log returns the process logger.
func (tr *Tracker) Log() *slog.Logger { return tr.log }

// Metrics returns the process metrics.
func (tr *Tracker) Metrics() *metrics.Metrics { return tr.metrics }
