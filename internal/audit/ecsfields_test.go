package audit_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/audit/audittest"
)

// eventSelectors lists every leaf of Event as a Go selector (into Exception
// and MonitorHit; Time is one leaf).
func eventSelectors(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + f.Name
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			out = append(out, eventSelectors(ft, name+".")...)
			continue
		}
		out = append(out, name)
	}
	return out
}

func encodeFull(t *testing.T, legacy bool) []byte {
	t.Helper()
	enc, err := audit.NewEncoderWith(audit.EncoderOptions{Format: "ecs", Version: "1.2.3", Hostname: "h", LegacyFields: legacy})
	if err != nil {
		t.Fatal(err)
	}
	return enc.Encode(nil, audittest.FullEvent())
}

// jsonTypeOf is the ECSField.JSON type of a decoded value (UseNumber).
func jsonTypeOf(v any) string {
	switch x := v.(type) {
	case string:
		return audit.JSONString
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return audit.JSONInteger
		}
	case bool:
		return audit.JSONBoolean
	}
	return "?"
}

func isZero(v any) bool { return v == nil || reflect.ValueOf(v).IsZero() }

// TestECSFieldList: audit.ECSFields is the ECS schema: the list is
// well-formed and names every field of Event; an event with every field set
// encodes to exactly the listed paths with the listed JSON types (legacy
// names only with log.legacy_fields); ParseECS reads every listed field back
// from its own path, and enforces each integer's Max.
func TestECSFieldList(t *testing.T) {
	names := map[string]audit.ECSField{}
	carried := map[string]bool{}
	for _, f := range audit.ECSFields {
		if _, dup := names[f.Name]; dup {
			t.Errorf("%s listed twice", f.Name)
		}
		names[f.Name] = f
		if (f.JSON == audit.JSONInteger) != (f.Max > 0) || !slices.Contains([]string{audit.JSONString, audit.JSONInteger, audit.JSONBoolean}, f.JSON) {
			t.Errorf("%s: JSON %q Max %d", f.Name, f.JSON, f.Max)
		}
		if f.Event != "" && !f.Legacy {
			carried[f.Event] = true
		}
	}
	for _, sel := range eventSelectors(reflect.TypeOf(audit.Event{}), "") {
		if !carried[sel] {
			t.Errorf("Event.%s is not in audit.ECSFields", sel)
		}
		delete(carried, sel)
	}
	for sel := range carried {
		t.Errorf("audit.ECSFields names Event.%s, which does not exist", sel)
	}

	full := audittest.FullEvent()
	for _, legacy := range []bool{false, true} {
		line := encodeFull(t, legacy)
		paths, err := audittest.Paths(line)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		d := json.NewDecoder(strings.NewReader(string(line)))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		for _, f := range audit.ECSFields {
			if f.Legacy && !legacy {
				if paths[f.Name] {
					t.Errorf("legacy field %s written without log.legacy_fields", f.Name)
				}
				continue
			}
			if !paths[f.Name] {
				t.Errorf("legacy=%v: %s listed but not written", legacy, f.Name)
				continue
			}
			delete(paths, f.Name)
			for _, v := range values(doc, f.Name) {
				arr, isArr := v.([]any)
				if isArr != f.Array {
					t.Errorf("%s = %v: array %v, listed %v", f.Name, v, isArr, f.Array)
					continue
				}
				if !isArr {
					arr = []any{v}
				}
				for _, x := range arr {
					if jt := jsonTypeOf(x); jt != f.JSON {
						t.Errorf("%s = %v is a JSON %s, listed %s", f.Name, x, jt, f.JSON)
					}
				}
			}
		}
		for p := range paths {
			t.Errorf("legacy=%v: %s written but not in audit.ECSFields", legacy, p)
		}
		got, err := audit.ParseECS(line)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, full) {
			t.Errorf("legacy=%v: ParseECS does not read back the event\n got  %+v\n want %+v", legacy, got, full)
		}
	}

	// Each field is read from its own path: with every other carrier of the
	// same Event field removed, the value comes back; removed too, it is gone.
	for _, f := range audit.ECSFields {
		if f.Event == "" {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			line := encodeFull(t, f.Legacy)
			var err error
			for _, o := range audit.ECSFields {
				if o.Event == f.Event && o.Name != f.Name {
					if line, err = audittest.Delete(line, o.Name); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := audittest.Field(full, f.Event)
			if ev, err := audit.ParseECS(line); err != nil || !reflect.DeepEqual(audittest.Field(ev, f.Event), want) {
				t.Fatalf("ParseECS(%s) reads %s = %v (%v), want %v", line, f.Event, audittest.Field(ev, f.Event), err, want)
			}
			if line, err = audittest.Delete(line, f.Name); err != nil {
				t.Fatal(err)
			}
			if f.Event == "Action" {
				return // required: the line is rejected
			}
			if ev, err := audit.ParseECS(line); err != nil || !isZero(audittest.Field(ev, f.Event)) {
				t.Fatalf("without %s, ParseECS reads %s = %v (%v)", f.Name, f.Event, audittest.Field(ev, f.Event), err)
			}
		})
	}

	for _, line := range audittest.IntegerBoundLines() {
		_, err := audit.ParseECS([]byte(line.Line))
		if (err == nil) != line.OK {
			t.Errorf("ParseECS(%s): %v, want ok=%v", line.Line, err, line.OK)
		}
	}
}

// values returns the value(s) at a flat name of doc (one per array element
// for "parent[].member").
func values(doc map[string]any, name string) []any {
	cur := []any{doc}
	for _, part := range strings.Split(name, ".") {
		key, arr := strings.CutSuffix(part, "[]")
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			v, ok := m[key]
			if !ok {
				continue
			}
			if a, isArr := v.([]any); arr && isArr {
				next = append(next, a...)
			} else {
				next = append(next, v)
			}
		}
		cur = next
	}
	return cur
}
