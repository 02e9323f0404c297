// Package outcome owns the record of a decision: for each client connection
// or request that reaches a decision, exactly one increment of
// egress_decisions_total (when the decision is made) and exactly one SIEM
// event (when the connection or request is over, with its byte counts and
// how it ended). Both are guarded here, so a path that ends in two places
// cannot count or emit twice.
//
// The decision (rules.Decision) is kept as it was made. What happens after it
// — a destination that does not resolve or cannot be reached (Fail), a
// tunnel closed by a reload or a shutdown (Cut) — is recorded next to it; the
// event carries both as SPEC §6 says (event.reason names the failure,
// error.message says what happened).
package outcome

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink receives the events. *audit.Logger satisfies it.
type Sink interface {
	Log(e *audit.Event)
}

var (
	_ Sink           = (*audit.Logger)(nil)
	_ tunnel.Counter = (*Recorder)(nil)
)

// Recorder is shared by every listener.
type Recorder struct {
	sink     Sink
	metrics  *metrics.Metrics
	up, down prometheus.Counter
}

// NewRecorder records into sink (nil: events are dropped, for tests) and m.
func NewRecorder(sink Sink, m *metrics.Metrics) *Recorder {
	return &Recorder{sink: sink, metrics: m,
		up:   m.Bytes.WithLabelValues(metrics.DirectionUpload),
		down: m.Bytes.WithLabelValues(metrics.DirectionDownload)}
}

// Add counts relayed bytes in egress_bytes_total (tunnel.Counter).
func (r *Recorder) Add(upload, download int64) {
	if upload > 0 {
		r.up.Add(float64(upload))
	}
	if download > 0 {
		r.down.Add(float64(download))
	}
}

// Failure is what went wrong after an allow: the destination did not resolve
// (dns_error), could not be reached (destination_unavailable).
type Failure struct {
	Reason rules.Reason
	Err    string
}

// Outcome is the record of one decision in the making. The path that owns
// the connection or request fills Event as it learns things (destination,
// SNI, status, bytes) and calls Decide once and Finish once.
type Outcome struct {
	r        *Recorder
	listener string
	// Event is the event being built; Finish writes it.
	Event    *audit.Event
	decision rules.Decision
	decided  atomic.Bool
	failure  *Failure
	cut      string
	done     atomic.Bool
}

// Begin starts the outcome of a connection or request from src on listener,
// under the config version in force, begun at start.
func (r *Recorder) Begin(listener, version string, src netip.AddrPort, start time.Time) *Outcome {
	b := &begun{
		o: Outcome{r: r, listener: listener},
		ev: audit.Event{
			ID:            audit.NewID(),
			Time:          start,
			Listener:      listener,
			ConfigVersion: version,
			SourceIP:      src.Addr().String(),
			SourcePort:    int(src.Port()),
		},
	}
	b.o.Event = &b.ev
	return &b.o
}

// begun is an Outcome and its event in one allocation (a tunnel keeps
// neither: it keeps the Sealed outcome).
type begun struct {
	o  Outcome
	ev audit.Event
}

// Decide records the decision: the event's decision fields, and the metric,
// counted the first time only.
func (o *Outcome) Decide(d rules.Decision) {
	o.decision = d
	ev := o.Event
	ev.Action, ev.Reason = d.Action.String(), string(d.Reason)
	ev.Rule, ev.Ruleset, ev.Segment = d.RuleName(), d.Ruleset(), d.SegmentName()
	ev.Exception, ev.Monitor = nil, nil
	if r := d.Rule; r != nil && r.HasException() {
		ev.Exception = &audit.Exception{Owner: r.Owner, Ticket: r.Ticket, Expires: r.ExpiresText}
	}
	for _, m := range d.Monitor {
		ev.Monitor = append(ev.Monitor, audit.MonitorHit{Rule: m.Name, Ruleset: m.Ruleset, Action: m.Action.String()})
	}
	if o.decided.CompareAndSwap(false, true) {
		o.r.metrics.Decision(o.listener, d.SegmentName(), d.Action.String(), string(d.Reason), d.RuleName())
	}
}

// Decision returns the decision as made.
func (o *Outcome) Decision() rules.Decision { return o.decision }

// Deny records a deny for reason in segment seg (protocol checks, limits),
// keeping the monitor hits of an earlier decision.
func (o *Outcome) Deny(reason rules.Reason, seg *rules.Segment, monitor []*rules.Rule) {
	o.Decide(rules.Decision{Action: rules.Deny, Reason: reason, Segment: seg, Monitor: monitor})
}

// Fail records a failure after an allow; the decision stays as it was.
func (o *Outcome) Fail(reason rules.Reason, err error) {
	o.failure = &Failure{Reason: reason}
	if err != nil {
		o.failure.Err = err.Error()
	}
}

// Failure returns the failure recorded by Fail, if any.
func (o *Outcome) Failure() *Failure { return o.failure }

// Cut records that the connection was closed by the proxy while it ran: by a
// reload that denies it (config_reload: the event becomes a deny), or by a
// shutdown.
func (o *Outcome) Cut(why string) { o.cut = why }

// Finish writes the event, once: later calls do nothing. An outcome finished
// without a decision is a bug in its path; it is written as a deny so that it
// is seen.
func (o *Outcome) Finish() {
	if !o.done.CompareAndSwap(false, true) {
		return
	}
	if !o.decided.Load() {
		o.Deny(rules.ReasonUndecided, nil, nil)
	}
	ev := o.Event
	if f := o.failure; f != nil {
		ev.Reason, ev.Error = string(f.Reason), f.Err
	}
	if o.cut != "" {
		ev.Error = "closed: " + o.cut
		if o.cut == string(rules.ReasonReload) {
			ev.Action, ev.Reason = audit.ActionDeny, o.cut
		}
	}
	if o.r.sink != nil {
		o.r.sink.Log(ev)
	}
}

// Finished reports whether Finish has run.
func (o *Outcome) Finished() bool { return o.done.Load() }
