package outcome

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/rules"
)

// Sealed is the compact record of an outcome whose event is complete but for
// how the connection ends: a tunnel that may stay open (parked) for hours
// keeps this instead of an Outcome and its audit.Event (a ~480-byte struct of
// mostly empty strings). Every string of the event lives in one string; the
// rest is kept as it was. Finish rebuilds the event, adds the end, and
// writes it, once.
type Sealed struct {
	r     *Recorder
	time  time.Time
	strs  string // every string field of the event, in sealedFields order
	lens  [nSealed]uint16
	extra *sealedExtra // nil when the event has none of them
	srcPort,
	destPort uint16
	status int32
	ech    int8 // -1: nil (not TLS), 0: false, 1: true
	done   atomic.Bool
}

// sealedExtra holds what few events carry.
type sealedExtra struct {
	exception *audit.Exception
	monitor   []audit.MonitorHit
	groups    []string
	failure   *Failure
	cut       string
	// big is the whole event when its strings do not fit the compact form
	// (a field longer than 64 KiB): kept as it is.
	big *audit.Event
}

// sealedFields lists the string fields of audit.Event a Sealed keeps.
var sealedFields = [...]func(e *audit.Event) *string{
	func(e *audit.Event) *string { return &e.ID },
	func(e *audit.Event) *string { return &e.Action },
	func(e *audit.Event) *string { return &e.Reason },
	func(e *audit.Event) *string { return &e.Rule },
	func(e *audit.Event) *string { return &e.Ruleset },
	func(e *audit.Event) *string { return &e.ConfigVersion },
	func(e *audit.Event) *string { return &e.Segment },
	func(e *audit.Event) *string { return &e.Listener },
	func(e *audit.Event) *string { return &e.SourceIP },
	func(e *audit.Event) *string { return &e.DestDomain },
	func(e *audit.Event) *string { return &e.DestIP },
	func(e *audit.Event) *string { return &e.SNI },
	func(e *audit.Event) *string { return &e.JA4 },
	func(e *audit.Event) *string { return &e.Method },
	func(e *audit.Event) *string { return &e.URLDomain },
	func(e *audit.Event) *string { return &e.URLPath },
	func(e *audit.Event) *string { return &e.User },
	func(e *audit.Event) *string { return &e.UserDomain },
	func(e *audit.Event) *string { return &e.AuthMethod },
	func(e *audit.Event) *string { return &e.Error },
}

const nSealed = len(sealedFields)

// Seal turns o into its compact record; o must not be used afterwards. An
// outcome sealed without a decision is a bug in its path: it is denied now
// (ReasonUndecided), as Finish would.
func (o *Outcome) Seal() *Sealed {
	if !o.decided.Load() {
		o.Deny(rules.ReasonUndecided, nil, nil)
	}
	ev := o.Event
	s := &Sealed{r: o.r}
	if o.failure != nil || o.cut != "" {
		s.extra = &sealedExtra{failure: o.failure, cut: o.cut}
	}
	if o.done.Load() {
		s.done.Store(true) // finished already: Finish does nothing
		return s
	}
	total := 0
	for _, f := range sealedFields {
		n := len(*f(ev))
		if n > 0xffff {
			total = -1
			break
		}
		total += n
	}
	if total < 0 {
		if s.extra == nil {
			s.extra = &sealedExtra{}
		}
		s.extra.big = ev
		return s
	}
	var b strings.Builder // one allocation: String does not copy
	b.Grow(total)
	for i, f := range sealedFields {
		v := *f(ev)
		s.lens[i] = uint16(len(v))
		b.WriteString(v)
	}
	s.strs = b.String()
	s.time = ev.Time
	s.srcPort, s.destPort, s.status = uint16(ev.SourcePort), uint16(ev.DestPort), int32(ev.Status)
	s.ech = -1
	if ev.ECH != nil {
		s.ech = 0
		if *ev.ECH {
			s.ech = 1
		}
	}
	if ev.Exception != nil || ev.Monitor != nil || ev.UserGroups != nil {
		if s.extra == nil {
			s.extra = &sealedExtra{}
		}
		s.extra.exception, s.extra.monitor, s.extra.groups = ev.Exception, ev.Monitor, ev.UserGroups
	}
	return s
}

// event rebuilds the event as it was sealed.
func (s *Sealed) event() *audit.Event {
	if s.extra != nil && s.extra.big != nil {
		return s.extra.big
	}
	ev := &audit.Event{Time: s.time, SourcePort: int(s.srcPort), DestPort: int(s.destPort), Status: int(s.status)}
	rest := s.strs
	for i, f := range sealedFields {
		n := int(s.lens[i])
		*f(ev) = rest[:n]
		rest = rest[n:]
	}
	if s.ech >= 0 {
		ech := s.ech == 1
		ev.ECH = &ech
	}
	if x := s.extra; x != nil {
		ev.Exception, ev.Monitor, ev.UserGroups = x.exception, x.monitor, x.groups
	}
	return ev
}

// End is how a sealed connection ended.
type End struct {
	SourceBytes, DestBytes int64
	Duration               time.Duration
	// Cut: closed by the proxy (Outcome.Cut); "" otherwise.
	Cut string
	// Err: what ended it otherwise ("" for a clean close).
	Err string
}

// Finish writes the event with its end, once: later calls do nothing. The
// event is what Outcome.Finish would have written.
func (s *Sealed) Finish(end End) {
	if !s.done.CompareAndSwap(false, true) {
		return
	}
	ev := s.event()
	ev.SourceBytes, ev.DestBytes, ev.Duration = end.SourceBytes, end.DestBytes, end.Duration
	cut := end.Cut
	if end.Err != "" {
		ev.Error = end.Err
	}
	if x := s.extra; x != nil {
		if f := x.failure; f != nil {
			ev.Reason, ev.Error = string(f.Reason), f.Err
		}
		if cut == "" {
			cut = x.cut
		}
	}
	if cut != "" {
		ev.Error = "closed: " + cut
		if cut == string(rules.ReasonReload) {
			ev.Action, ev.Reason = audit.ActionDeny, cut
		}
	}
	if s.r.sink != nil {
		s.r.sink.Log(ev)
	}
}
