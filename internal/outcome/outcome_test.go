package outcome

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type sink struct{ evs []*audit.Event }

func (s *sink) Log(e *audit.Event) { s.evs = append(s.evs, e) }

func newRecorder() (*Recorder, *sink, *metrics.Metrics) {
	m := metrics.New(metrics.NewRegistry())
	s := &sink{}
	return NewRecorder(s, m), s, m
}

func decisions(m *metrics.Metrics, action, reason string) float64 {
	return testutil.ToFloat64(m.Decisions.WithLabelValues(audit.ListenerProxy, "", action, reason, ""))
}

var src = netip.MustParseAddrPort("127.0.0.1:4000")

// A path that decides or finishes twice still counts and writes once.
func TestOnceByConstruction(t *testing.T) {
	r, s, m := newRecorder()
	o := r.Begin(audit.ListenerProxy, "v1", src, time.Now())
	o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
	o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
	o.Finish()
	o.Finish()
	if len(s.evs) != 1 || decisions(m, "allow", "default") != 1 {
		t.Fatalf("%d events, %v decisions", len(s.evs), decisions(m, "allow", "default"))
	}
	if !o.Finished() || s.evs[0].ConfigVersion != "v1" || s.evs[0].SourcePort != 4000 {
		t.Fatalf("event %+v", s.evs[0])
	}
}

// A transport failure is recorded next to the decision: the event names it,
// the decision (and its metric) stay as made.
func TestFailKeepsTheDecision(t *testing.T) {
	r, s, m := newRecorder()
	o := r.Begin(audit.ListenerProxy, "v1", src, time.Now())
	o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
	o.Fail(rules.ReasonDNSError, errors.New("no such host"))
	o.Finish()
	ev := s.evs[0]
	if ev.Action != "allow" || ev.Reason != "dns_error" || ev.Error != "no such host" {
		t.Fatalf("event %s %s %q", ev.Action, ev.Reason, ev.Error)
	}
	if o.Decision().Reason != rules.ReasonDefault || decisions(m, "allow", "default") != 1 || o.Failure().Reason != rules.ReasonDNSError {
		t.Fatal("the failure changed the decision")
	}
}

// A reload cut turns the event into a deny; a shutdown cut says so.
func TestCut(t *testing.T) {
	r, s, _ := newRecorder()
	for _, why := range []string{string(rules.ReasonReload), "shutdown"} {
		o := r.Begin(audit.ListenerProxy, "v1", src, time.Now())
		o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
		o.Cut(why)
		o.Finish()
	}
	if ev := s.evs[0]; ev.Action != "deny" || ev.Reason != "config_reload" || ev.Error != "closed: config_reload" {
		t.Fatalf("reload cut: %s %s %q", ev.Action, ev.Reason, ev.Error)
	}
	if ev := s.evs[1]; ev.Action != "allow" || ev.Error != "closed: shutdown" {
		t.Fatalf("shutdown cut: %s %q", ev.Action, ev.Error)
	}
}

// An outcome finished without a decision is a bug, written as a deny so
// that it is seen.
func TestUndecided(t *testing.T) {
	r, s, m := newRecorder()
	r.Begin(audit.ListenerProxy, "v1", src, time.Now()).Finish()
	if len(s.evs) != 1 || s.evs[0].Action != "deny" || s.evs[0].Reason != "undecided" || decisions(m, "deny", "undecided") != 1 {
		t.Fatalf("%+v", s.evs)
	}
}

// Deny keeps an earlier decision's monitor hits; Add counts bytes.
func TestDenyAndBytes(t *testing.T) {
	r, s, m := newRecorder()
	mon := &rules.Rule{Name: "watch", Ruleset: "seg", Action: rules.Deny, Monitor: true}
	o := r.Begin(audit.ListenerProxy, "v1", src, time.Now())
	o.Deny(rules.ReasonPrivateDestination, nil, []*rules.Rule{mon})
	o.Finish()
	if ev := s.evs[0]; ev.Reason != "private_destination" || len(ev.Monitor) != 1 || ev.Monitor[0].Rule != "watch" {
		t.Fatalf("%+v", ev)
	}
	r.Add(10, 20)
	if up := testutil.ToFloat64(m.Bytes.WithLabelValues(metrics.DirectionUpload)); up != 10 {
		t.Fatalf("upload %v", up)
	}
}
