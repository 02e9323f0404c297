package audittest

import (
	"strings"
	"testing"

	"github.com/egress-proxy/egress/internal/audit"
)

// The helpers agree with each other and with the field list: a full event
// sets every listed field, Field reads it back, Paths finds each listed path
// in its encoding, and Delete removes one.
func TestHelpers(t *testing.T) {
	e := FullEvent()
	for _, f := range audit.ECSFields {
		if f.Event == "" || f.Legacy {
			continue
		}
		if v := Field(e, f.Event); v == nil {
			t.Errorf("%s (%s) not set by FullEvent", f.Name, f.Event)
		}
	}
	if e.Action != audit.ActionAllow || !e.Time.Equal(Time) {
		t.Fatalf("action %q time %v", e.Action, e.Time)
	}
	enc, err := audit.NewEncoder("ecs", "test")
	if err != nil {
		t.Fatal(err)
	}
	line := enc.Encode(nil, e)
	paths, err := Paths(line)
	if err != nil {
		t.Fatal(err)
	}
	if !paths["source.ip"] || !paths["event.id"] {
		t.Fatalf("paths %v", paths)
	}
	cut, err := Delete(line, "source.ip")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := Paths(cut)
	if after["source.ip"] || !after["source.port"] {
		t.Fatalf("after Delete: %v", after)
	}
	if _, err := Paths([]byte("{not json")); err == nil {
		t.Fatal("Paths accepted a broken line")
	}
	lines := IntegerBoundLines()
	var ok, bad int
	for _, l := range lines {
		if !strings.HasPrefix(l.Line, "{") {
			t.Fatalf("bound line %q", l.Line)
		}
		if l.OK {
			ok++
		} else {
			bad++
		}
	}
	if ok == 0 || bad == 0 {
		t.Fatalf("bound lines: %d within, %d beyond the limits", ok, bad)
	}
}
