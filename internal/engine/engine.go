// Package engine owns the state the listeners share and the steps common to
// every tunnel: the active configuration (published atomically, swapped on
// reload), the upstream dialer built from it, the SIEM event and metric of each
// decision, connection limits, the registry of open tunnels (closed when a
// reload denies them, or at shutdown), and ServeTLS — read the ClientHello,
// decide every name, dial the checked address, replay, tunnel.
//
// The listeners (internal/proxy, internal/transparent) parse their protocol
// and call in here; the decision itself is internal/rules, the bytes are
// parsed in internal/sni and copied in internal/tunnel.
package engine

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
	"github.com/prometheus/client_golang/prometheus"
)

// EventSink receives one event per decision. *audit.Logger satisfies it.
type EventSink interface {
	Log(e *audit.Event)
}

// State is one active configuration with what is built from it.
type State struct {
	Config *rules.Config
	Dialer *upstream.Dialer
}

// Engine is shared by every listener.
type Engine struct {
	state   atomic.Pointer[State]
	events  EventSink
	metrics *metrics.Metrics
	log     *slog.Logger
	limits  limiter

	up, down prometheus.Counter
	mu       sync.Mutex
	open     map[*Tunnel]struct{}
	draining atomic.Bool
}

// New builds an engine serving cfg.
func New(cfg *rules.Config, events EventSink, m *metrics.Metrics, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{events: events, metrics: m, log: log, open: map[*Tunnel]struct{}{}}
	e.up = m.Bytes.WithLabelValues(metrics.DirectionUpload)
	e.down = m.Bytes.WithLabelValues(metrics.DirectionDownload)
	e.limits.sources = map[netip.Addr]int{}
	e.publish(cfg)
	return e
}

// NewState builds the State of a config.
func NewState(cfg *rules.Config) *State {
	return &State{Config: cfg, Dialer: &upstream.Dialer{
		Hosts:        cfg.Upstream.Hosts,
		AllowPrivate: cfg.Upstream.AllowPrivate,
		Timeout:      cfg.Upstream.DialTimeout,
	}}
}

func (e *Engine) publish(cfg *rules.Config) {
	e.state.Store(NewState(cfg))
	var segs []string
	var rl []metrics.RuleLabel
	for _, s := range cfg.Policy.Segments() {
		segs = append(segs, s.Name)
		for _, r := range s.Rules() {
			if !r.Monitor {
				rl = append(rl, metrics.RuleLabel{Segment: s.Name, Rule: r.Name, Action: r.Action.String()})
			}
		}
	}
	e.metrics.InitDecisions(metrics.Listeners, segs, rl)
	e.metrics.SetConfigVersion(cfg.Version)
	e.metrics.SetLimits(cfg.Limits.MaxConnections, cfg.Limits.PerSource)
}

// State returns the active configuration. Each connection or request reads
// it once and keeps it for its own decisions.
func (e *Engine) State() *State { return e.state.Load() }

// Metrics returns the engine's metrics.
func (e *Engine) Metrics() *metrics.Metrics { return e.metrics }

// Log returns the process logger.
func (e *Engine) Log() *slog.Logger { return e.log }

// Swap makes cfg the active configuration. With limits.enforce_on_reload, open
// tunnels that cfg denies are closed; it returns how many.
func (e *Engine) Swap(cfg *rules.Config) int {
	e.publish(cfg)
	e.swapped()
	if !cfg.Limits.EnforceOnReload {
		return 0
	}
	return e.enforce(cfg)
}

// NewEvent starts the event of a decision with every field the decision
// and the client give.
func (e *Engine) NewEvent(st *State, listener string, src netip.AddrPort, d *rules.Decision, start time.Time) *audit.Event {
	ev := &audit.Event{
		ID:            audit.NewID(),
		Time:          start,
		Action:        d.Action.String(),
		Reason:        string(d.Reason),
		Rule:          d.RuleName(),
		Ruleset:       d.Ruleset(),
		Segment:       d.SegmentName(),
		Listener:      listener,
		ConfigVersion: st.Config.Version,
		SourceIP:      src.Addr().String(),
		SourcePort:    int(src.Port()),
	}
	if r := d.Rule; r != nil && r.HasException() {
		ev.Exception = &audit.Exception{Owner: r.Owner, Ticket: r.Ticket, Expires: r.ExpiresText}
	}
	for _, m := range d.Monitor {
		ev.Monitor = append(ev.Monitor, audit.MonitorHit{Rule: m.Name, Ruleset: m.Ruleset, Action: m.Action.String()})
	}
	return ev
}

// Count records a decision in egress_decisions_total. Call it once per
// decision, when it is made.
func (e *Engine) Count(listener string, d *rules.Decision) {
	e.metrics.Decision(listener, d.SegmentName(), d.Action.String(), string(d.Reason), d.RuleName())
}

// Emit writes an event to the SIEM.
func (e *Engine) Emit(ev *audit.Event) {
	if e.events != nil {
		e.events.Log(ev)
	}
}

// Add implements tunnel.Counter: egress_bytes_total.
func (e *Engine) Add(upload, download int64) {
	if upload > 0 {
		e.up.Add(float64(upload))
	}
	if download > 0 {
		e.down.Add(float64(download))
	}
}
