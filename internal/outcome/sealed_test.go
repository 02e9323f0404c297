package outcome

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/rules"
)

// fill gives o's event every field a tunnel's event can carry.
func fill(o *Outcome, long string) {
	ev := o.Event
	ech := true
	ev.DestDomain, ev.DestIP, ev.DestPort, ev.SNI, ev.JA4, ev.ECH = "example.com", "127.0.0.9", 443, "example.com", "t13d1516h2_8daaf6152771_02713d6af862", &ech
	ev.Method, ev.Status, ev.URLDomain, ev.URLPath = "CONNECT", 200, "", long
	ev.User, ev.UserDomain, ev.UserGroups, ev.AuthMethod = "alice", "EXAMPLE.ORG", []string{"dev", "ops"}, "basic"
	ev.Exception = &audit.Exception{Owner: "o", Ticket: "T-1", Expires: "2027-01-01"}
	ev.Monitor = []audit.MonitorHit{{Rule: "m", Ruleset: "rs", Action: "deny"}}
}

// A sealed outcome writes exactly the event the outcome itself would have
// written, for every way a tunnel ends, and only once.
func TestSealedWritesTheSameEvent(t *testing.T) {
	start := time.Now()
	for _, tc := range []struct {
		name      string
		long      string
		ech       bool // leave ECH nil
		fail, cut string
		end       End
	}{
		{name: "clean", end: End{SourceBytes: 517, DestBytes: 4096, Duration: time.Second}},
		{name: "error", end: End{SourceBytes: 1, DestBytes: 2, Duration: 3, Err: "tunnel idle"}},
		{name: "reload", end: End{SourceBytes: 1, Cut: string(rules.ReasonReload)}},
		{name: "shutdown", end: End{Cut: "shutdown"}},
		{name: "cut before", cut: "shutdown", end: End{Err: "x"}},
		{name: "failed", fail: "dial refused", end: End{Err: "x"}},
		{name: "no tls", ech: true, end: End{SourceBytes: 9}},
		{name: "long field", long: "/" + strings.Repeat("a", 70000), end: End{SourceBytes: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evs [2]*audit.Event
			for i := range evs {
				r, s, _ := newRecorder()
				o := r.Begin(audit.ListenerProxy, "v7", src, start)
				o.Event.ID = "01a22ebf-f1ec-7ae6-af49-637140c1784c"
				fill(o, tc.long)
				if tc.ech {
					o.Event.ECH = nil
				}
				o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
				if tc.fail != "" {
					o.Fail(rules.ReasonUpstreamError, errors.New(tc.fail))
				}
				if tc.cut != "" {
					o.Cut(tc.cut)
				}
				if i == 0 { // the outcome as it was
					o.Event.SourceBytes, o.Event.DestBytes, o.Event.Duration = tc.end.SourceBytes, tc.end.DestBytes, tc.end.Duration
					if tc.end.Cut != "" {
						o.Cut(tc.end.Cut)
					} else if tc.end.Err != "" {
						o.Event.Error = tc.end.Err
					}
					o.Finish()
				} else {
					sl := o.Seal()
					sl.Finish(tc.end)
					sl.Finish(End{SourceBytes: 1})
				}
				if len(s.evs) != 1 {
					t.Fatalf("%d events", len(s.evs))
				}
				evs[i] = s.evs[0]
			}
			if !reflect.DeepEqual(evs[0], evs[1]) {
				t.Fatalf("sealed event differs:\n%.2000v\n%.2000v", fmt.Sprintf("%+v", *evs[0]), fmt.Sprintf("%+v", *evs[1]))
			}
		})
	}
}

// A sealed outcome that was never decided is written as a deny, as Finish
// writes it; one finished before it was sealed is not written again.
func TestSealedUndecidedAndFinished(t *testing.T) {
	r, s, m := newRecorder()
	r.Begin(audit.ListenerProxy, "v1", src, time.Now()).Seal().Finish(End{})
	if len(s.evs) != 1 || s.evs[0].Reason != string(rules.ReasonUndecided) || decisions(m, "deny", string(rules.ReasonUndecided)) != 1 {
		t.Fatalf("%d events %+v", len(s.evs), s.evs)
	}
	o := r.Begin(audit.ListenerProxy, "v1", src, time.Now())
	o.Decide(rules.Decision{Action: rules.Allow, Reason: rules.ReasonDefault})
	o.Finish()
	o.Seal().Finish(End{})
	if len(s.evs) != 2 {
		t.Fatalf("%d events", len(s.evs))
	}
}
