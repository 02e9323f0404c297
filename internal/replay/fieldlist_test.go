package replay

import (
	"reflect"
	"testing"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/audit/audittest"
)

// schemaLeaves flattens the fast path's schema to "name → field", names as
// audit.ECSFields writes them.
func schemaLeaves(f *field, prefix string, out map[string]*field) {
	for k, c := range f.kids {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch c.kind {
		case kObject, kException:
			schemaLeaves(c, name, out)
		case kMonitor:
			schemaLeaves(c, name+"[]", out)
		default:
			out[name] = c
		}
	}
}

// TestFastParseFieldList: the fast path's schema is the part of
// audit.ECSFields that ParseECS reads (every field carried into the Event,
// and event.module/observer.product, the "is it egress" check), with the
// listed JSON types and integer bounds; it reads every listed field back,
// each from its own path, as ParseECS does.
func TestFastParseFieldList(t *testing.T) {
	leaves := map[string]*field{}
	schemaLeaves(ecsSchema, "", leaves)
	kinds := map[string]kind{audit.JSONString: kString, audit.JSONInteger: kInt, audit.JSONBoolean: kBool}
	for _, f := range audit.ECSFields {
		read := f.Event != "" || f.Name == "event.module" || f.Name == "observer.product"
		l, ok := leaves[f.Name]
		switch {
		case !read && ok:
			t.Errorf("%s: in the fast schema, but ParseECS does not read it", f.Name)
		case !read:
		case !ok:
			t.Errorf("%s: listed and read by ParseECS, not in the fast schema", f.Name)
		case l.kind != kinds[f.JSON] && !(f.Array && l.kind == kGroups) || l.max != f.Max || l.legacy != f.Legacy:
			t.Errorf("%s: fast schema kind %d max %d legacy %v; listed %s max %d legacy %v", f.Name, l.kind, l.max, l.legacy, f.JSON, f.Max, f.Legacy)
		}
		delete(leaves, f.Name)
	}
	for name := range leaves {
		t.Errorf("%s: in the fast schema, not in audit.ECSFields", name)
	}

	full := audittest.FullEvent()
	for _, legacy := range []bool{false, true} {
		enc, _ := audit.NewEncoderWith(audit.EncoderOptions{Format: "ecs", Version: "1.2.3", Hostname: "h", LegacyFields: legacy})
		line := enc.Encode(nil, full)
		ev := &audit.Event{}
		if p := (fastParser{s: line}); !p.document(ev) || !reflect.DeepEqual(ev, full) {
			t.Fatalf("legacy=%v: the fast path does not read back the event\n%s\n got  %+v\n want %+v", legacy, line, ev, full)
		}
		checkAgrees(t, line)
	}
	for _, f := range audit.ECSFields {
		if f.Event == "" {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			enc, _ := audit.NewEncoderWith(audit.EncoderOptions{Format: "ecs", Version: "1.2.3", LegacyFields: f.Legacy})
			line := enc.Encode(nil, full)
			var err error
			for _, o := range audit.ECSFields {
				if o.Event == f.Event && o.Name != f.Name {
					if line, err = audittest.Delete(line, o.Name); err != nil {
						t.Fatal(err)
					}
				}
			}
			ev := &audit.Event{}
			if p := (fastParser{s: line}); !p.document(ev) || !reflect.DeepEqual(audittest.Field(ev, f.Event), audittest.Field(full, f.Event)) {
				t.Fatalf("fast path on %s: %s = %v, want %v", line, f.Event, audittest.Field(ev, f.Event), audittest.Field(full, f.Event))
			}
			checkAgrees(t, line)
			if line, err = audittest.Delete(line, f.Name); err != nil {
				t.Fatal(err)
			}
			checkAgrees(t, line)
		})
	}
	for _, b := range audittest.IntegerBoundLines() {
		if fast := checkAgrees(t, []byte(b.Line)); fast && !b.OK {
			t.Errorf("fast path accepts %s", b.Line)
		}
	}
}
