package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// ecsField is one line of testdata/ecs-8.11-fields.txt.
type ecsField struct {
	typ   string
	array bool
}

// ecsSpec is the hand-kept extract of ECS 8.11 (testdata/ecs-8.11-fields.txt).
type ecsSpec struct {
	fields   map[string]ecsField
	expected map[string][]string // event.category → expected event.type values
	values   map[string][]string // field → allowed values
}

func loadECSSpec(t *testing.T) ecsSpec {
	t.Helper()
	f, err := os.Open("testdata/ecs-8.11-fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := ecsSpec{fields: map[string]ecsField{}, expected: map[string][]string{}, values: map[string][]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		switch {
		case len(w) == 0 || strings.HasPrefix(w[0], "#"):
		case w[0] == "expected" && len(w) > 2:
			s.expected[w[1]] = w[2:]
		case w[0] == "values" && len(w) > 2:
			s.values[w[1]] = w[2:]
		case len(w) == 2 || (len(w) == 3 && w[2] == "array"):
			s.fields[w[0]] = ecsField{typ: w[1], array: len(w) == 3}
		default:
			t.Fatalf("ecs-8.11-fields.txt: bad line %q", sc.Text())
		}
	}
	return s
}

// flatten walks a decoded JSON document into dotted leaf names. Arrays of
// scalars are leaves; objects inside arrays are walked as name[].member.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			flatten(name, c, out)
		}
	case []any:
		for _, c := range x {
			if _, obj := c.(map[string]any); obj {
				flatten(prefix+"[]", c, out)
			}
		}
		out[prefix] = v
	default:
		out[prefix] = v
	}
}

// checkECSType reports whether v (from encoding/json with UseNumber) is a
// valid JSON value for an ECS field of type typ.
func checkECSType(typ string, v any, strict bool) bool {
	switch typ {
	case "keyword", "wildcard", "match_only_text", "text":
		_, ok := v.(string)
		return ok
	case "ip":
		s, ok := v.(string)
		if ok && strict {
			_, err := netip.ParseAddr(s)
			return err == nil
		}
		return ok
	case "date":
		s, ok := v.(string)
		if ok {
			_, err := time.Parse(time.RFC3339Nano, s)
			return err == nil
		}
		return false
	case "long":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	}
	return false
}

// TestECSConformance: every field of every encoded event is an ECS 8.11 field
// with ECS's type and array-ness, or lives under egress.*; the event.type
// values are the ones ECS expects for event.category "network"; fields with
// allowed values use them.
func TestECSConformance(t *testing.T) {
	spec := loadECSSpec(t)
	enc, _ := NewEncoderWith(EncoderOptions{Format: "ecs", Version: testVersion, Hostname: "egress-7d9f-x2"})
	seen := map[string]bool{}
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			line := enc.Encode(nil, &fx.e)
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			var doc map[string]any
			if err := d.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			flat := map[string]any{}
			flatten("", doc, flat)
			strict := !strings.HasPrefix(fx.name, "hostile") // hostile fixtures put junk in ip fields on purpose
			for name, v := range flat {
				if name == "egress" || strings.HasPrefix(name, "egress.") {
					continue
				}
				seen[name] = true
				f, ok := spec.fields[name]
				if !ok {
					t.Errorf("%s is not in ECS 8.11 (testdata/ecs-8.11-fields.txt) and not under egress.*", name)
					continue
				}
				vals := []any{v}
				if arr, isArr := v.([]any); isArr {
					if !f.array && !arrayByEgress[name] {
						t.Errorf("%s is an array; ECS defines a single %s", name, f.typ)
						continue
					}
					vals = arr
				} else if f.array {
					t.Errorf("%s: ECS normalizes it to an array, got %v", name, v)
				}
				for _, x := range vals {
					if !checkECSType(f.typ, x, strict) {
						t.Errorf("%s = %v (%T) is not a valid ECS %s", name, x, x, f.typ)
					}
					if allowed, ok := spec.values[name]; ok && strict {
						if s, _ := x.(string); !slices.Contains(allowed, s) {
							t.Errorf("%s = %q is not one of ECS's values %v", name, s, allowed)
						}
					}
				}
			}
			cats, _ := flat["event.category"].([]any)
			types, _ := flat["event.type"].([]any)
			for _, c := range cats {
				exp := spec.expected[c.(string)]
				for _, ty := range types {
					if !slices.Contains(exp, ty.(string)) {
						t.Errorf("event.type %q is not expected for event.category %q (ECS: %v)", ty, c, exp)
					}
				}
			}
			if flat["observer.hostname"] != "egress-7d9f-x2" {
				t.Errorf("observer.hostname = %v", flat["observer.hostname"])
			}
		})
	}
	// The fixture lists only what egress writes: a stale line is a mistake.
	var unused []string
	for name := range spec.fields {
		if !seen[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("fields in the fixture that no event wrote: %v", unused)
	}
}

// TestLegacyFields: by default the 1.x names are absent; log.legacy_fields
// adds them next to the new ones (ECS and CEF); ParseECS reads either.
func TestLegacyFields(t *testing.T) {
	e := fixtures()[0].e // JA4, ECH, exception, listener
	for _, legacy := range []bool{false, true} {
		ecs, _ := NewEncoderWith(EncoderOptions{Format: "ecs", Version: testVersion, LegacyFields: legacy})
		line := ecs.Encode(nil, &e)
		var doc struct {
			Egress struct {
				TLS struct {
					JA4 string `json:"ja4"`
					ECH *bool  `json:"ech"`
				} `json:"tls"`
			} `json:"egress"`
			TLS struct {
				Client map[string]any `json:"client"`
			} `json:"tls"`
		}
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Egress.TLS.JA4 != e.JA4 || doc.Egress.TLS.ECH == nil || !*doc.Egress.TLS.ECH {
			t.Errorf("legacy=%v: egress.tls = %+v", legacy, doc.Egress.TLS)
		}
		_, oldJA4 := doc.TLS.Client["ja4"]
		_, oldECH := doc.TLS.Client["ech"]
		if oldJA4 != legacy || oldECH != legacy {
			t.Errorf("legacy=%v: tls.client = %v", legacy, doc.TLS.Client)
		}
		cef, _ := NewEncoderWith(EncoderOptions{Format: "cef", Version: testVersion, LegacyFields: legacy})
		_, ext, err := parseCEF(string(cef.Encode(nil, &e)))
		if err != nil {
			t.Fatal(err)
		}
		if ext["EgressEgressListener"] != "proxy" || (ext["egressListener"] == "proxy") != legacy {
			t.Errorf("legacy=%v: CEF listener keys %q / %q", legacy, ext["EgressEgressListener"], ext["egressListener"])
		}
	}
	old := `{"event":{"module":"egress","action":"allow"},"tls":{"client":{"server_name":"a.example","ja4":"t13d_old","ech":true}}}`
	got, err := ParseECS([]byte(old))
	if err != nil || got.JA4 != "t13d_old" || got.ECH == nil || !*got.ECH || got.SNI != "a.example" {
		t.Fatalf("1.x line: %+v, %v", got, err)
	}
}

// TestEventTypeNoError: a failure is event.outcome "failure" and error.*, never
// event.type "error" (not expected for the network category).
func TestEventTypeNoError(t *testing.T) {
	enc, _ := NewEncoder("ecs", testVersion)
	e := Event{Action: ActionAllow, Reason: "destination_unavailable", Error: "dial tcp: refused", SourceIP: "10.0.0.1"}
	line := string(enc.Encode(nil, &e))
	if !strings.Contains(line, `"type":["connection","allowed"]`) || !strings.Contains(line, `"outcome":"failure"`) ||
		!strings.Contains(line, `"error":{"message":"dial tcp: refused"}`) {
		t.Fatalf("got %s", line)
	}
}

// arrayByEgress are ECS fields that ECS does not normalise to arrays but
// egress writes as one: user.group.name is a list (SPEC §10.2), which every
// Elasticsearch keyword field accepts.
var arrayByEgress = map[string]bool{"user.group.name": true}

// TestECSFieldListMatchesFixture: the ECS fields of ECSFields (not under
// egress.*, not legacy names) are exactly the fields of
// testdata/ecs-8.11-fields.txt, with ECS's array-ness and a JSON type that
// carries ECS's type.
func TestECSFieldListMatchesFixture(t *testing.T) {
	spec := loadECSSpec(t)
	jsonOf := map[string]string{"keyword": JSONString, "wildcard": JSONString, "match_only_text": JSONString,
		"text": JSONString, "ip": JSONString, "date": JSONString, "long": JSONInteger, "boolean": JSONBoolean}
	listed := map[string]bool{}
	for _, f := range ECSFields {
		if f.Legacy || strings.HasPrefix(f.Name, "egress.") {
			continue
		}
		listed[f.Name] = true
		s, ok := spec.fields[f.Name]
		switch {
		case !ok:
			t.Errorf("%s: in ECSFields, not in testdata/ecs-8.11-fields.txt", f.Name)
		case s.array != f.Array && !(f.Array && arrayByEgress[f.Name]):
			t.Errorf("%s: array %v in ECSFields, %v in ECS", f.Name, f.Array, s.array)
		case jsonOf[s.typ] != f.JSON:
			t.Errorf("%s: JSON %s in ECSFields; ECS type %s is a JSON %s", f.Name, f.JSON, s.typ, jsonOf[s.typ])
		}
	}
	for name := range spec.fields {
		if !listed[name] {
			t.Errorf("%s: in testdata/ecs-8.11-fields.txt, not in ECSFields", name)
		}
	}
}
