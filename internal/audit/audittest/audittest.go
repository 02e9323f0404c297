// Package audittest helps tests check encoders and decoders of audit events
// against the one ECS field list, audit.ECSFields: it builds an event with
// every listed field set, reads a field by its Go selector, and edits ECS
// lines by flat field name. Tests only.
package audittest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

// Time is the @timestamp of FullEvent.
var Time = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)

// FullEvent returns an event with every field audit.ECSFields names set to a
// distinct value: strings "v-<selector>" (plain ASCII, nothing to escape),
// integers distinct and within the field's Max, booleans true, the time
// Time. Action is "allow".
func FullEvent() *audit.Event {
	e := &audit.Event{}
	for i, f := range audit.ECSFields {
		if f.Event == "" || f.Legacy {
			continue
		}
		v := field(e, f.Event, true)
		switch {
		case v.Type() == reflect.TypeOf(time.Time{}):
			v.Set(reflect.ValueOf(Time))
		case v.Kind() == reflect.String:
			v.SetString("v-" + strings.ReplaceAll(f.Event, ".", "-"))
		case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
			v.SetInt(min(int64(1000+i), f.Max))
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
			p := "v-" + strings.ReplaceAll(f.Event, ".", "-")
			v.Set(reflect.ValueOf([]string{p + "-1", p + "-2"}))
		case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Bool:
			b := true
			v.Set(reflect.ValueOf(&b))
		default:
			panic(fmt.Sprintf("audittest: %s: unexpected Go type %s", f.Event, v.Type()))
		}
	}
	e.Action = audit.ActionAllow
	return e
}

// Field returns the value of e at selector ("SourcePort", "Exception.Owner",
// "Monitor.Rule" = the first element's Rule), or nil when a pointer or slice
// on the way is empty.
func Field(e *audit.Event, selector string) any {
	v := field(e, selector, false)
	if !v.IsValid() {
		return nil
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		return v.Elem().Interface()
	}
	return v.Interface()
}

// field walks selector from e; alloc creates nil pointers and empty slices
// on the way (one element), otherwise they end the walk (invalid Value).
func field(e *audit.Event, selector string, alloc bool) reflect.Value {
	v := reflect.ValueOf(e).Elem()
	for _, name := range strings.Split(selector, ".") {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				if !alloc {
					return reflect.Value{}
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		case reflect.Slice:
			if v.Len() == 0 {
				if !alloc {
					return reflect.Value{}
				}
				v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			}
			v = v.Index(0)
		}
		v = v.FieldByName(name)
		if !v.IsValid() {
			panic("audittest: no Event field " + selector)
		}
	}
	return v
}

// Paths returns the flat names of the leaves of one JSON object line, as
// audit.ECSFields writes them (members of arrays of objects as
// "parent[].member"; arrays of scalars are one leaf).
func Paths(line []byte) (map[string]bool, error) {
	var doc map[string]any
	if err := json.Unmarshal(line, &doc); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, c)
			}
		case []any:
			objects := false
			for _, c := range x {
				if _, ok := c.(map[string]any); ok {
					objects = true
					walk(prefix+"[]", c)
				}
			}
			if !objects {
				out[prefix] = true
			}
		default:
			out[prefix] = true
		}
	}
	walk("", doc)
	return out, nil
}

// Delete returns line without the member at the flat name (a member of each
// element for "parent[].member"). Keys come out sorted, strings unescaped
// where JSON allows, numbers unchanged.
func Delete(line []byte, name string) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	del(doc, strings.Split(name, "."))
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func del(obj map[string]any, path []string) {
	key, arr := strings.CutSuffix(path[0], "[]")
	if len(path) == 1 {
		delete(obj, key)
		return
	}
	switch c := obj[key].(type) {
	case map[string]any:
		if !arr {
			del(c, path[1:])
		}
	case []any:
		for _, el := range c {
			if m, ok := el.(map[string]any); ok && arr {
				del(m, path[1:])
			}
		}
	}
}

// BoundLine is a minimal egress ECS line with one integer field at or beyond
// the bounds audit.ECSFields gives it; OK says whether decoders accept it.
type BoundLine struct {
	Line string
	OK   bool
}

// IntegerBoundLines returns, for every integer of audit.ECSFields, a line with
// the value Max (accepted), and Max+1 and -1 (rejected).
func IntegerBoundLines() []BoundLine {
	var out []BoundLine
	for _, f := range audit.ECSFields {
		if f.JSON != audit.JSONInteger {
			continue
		}
		above := strconv.FormatUint(uint64(f.Max)+1, 10)
		for _, c := range []BoundLine{{strconv.FormatInt(f.Max, 10), true}, {above, false}, {"-1", false}} {
			doc := map[string]any{"event": map[string]any{"module": "egress", "action": "allow"}}
			parts := strings.Split(f.Name, ".")
			m := doc
			for _, p := range parts[:len(parts)-1] {
				if _, ok := m[p]; !ok {
					m[p] = map[string]any{}
				}
				m = m[p].(map[string]any)
			}
			m[parts[len(parts)-1]] = json.Number(c.Line)
			b, _ := json.Marshal(doc)
			out = append(out, BoundLine{string(b), c.OK})
		}
	}
	return out
}
