package replay

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/egress-proxy/egress/internal/audit"
)

// checkAgrees fails when the fast path accepts a line that ParseECS rejects,
// or reads another event than ParseECS (every field, not only the ones
// replay uses).
func checkAgrees(t *testing.T, line []byte) (fast bool) {
	t.Helper()
	ev := &audit.Event{}
	p := fastParser{s: line}
	fast = p.document(ev)
	want, err := audit.ParseECS(line)
	if !fast {
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepts %q; ParseECS: %v", line, err)
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("fast path reads %q\n got  %+v\n want %+v", line, ev, want)
	}
	return true
}

func fastSeeds(t testing.TB) [][]byte {
	seeds := bytes.Split(writeFixture(t), []byte("\n"))
	var b bytes.Buffer
	genEvents(t, &b, 50)
	seeds = append(seeds, bytes.Split(b.Bytes(), []byte("\n"))...)
	return seeds
}

func TestFastParseAgrees(t *testing.T) {
	enc, _ := audit.NewEncoder("ecs", "t")
	mon := enc.Encode(nil, &audit.Event{Action: "allow", Reason: "default", SourceIP: "10.0.0.1", Listener: "proxy",
		Monitor: []audit.MonitorHit{{Rule: "r", Ruleset: "p", Action: "deny"}}, Exception: &audit.Exception{Owner: "o", Ticket: "T-1"}})
	good := string(mon)
	extra := []string{
		good,
		strings.Replace(good, `{"@timestamp"`, `{"labels":{"Host":"x","n":[1,-2.5e3,true,null,{}]},"@timestamp"`, 1),
		strings.Replace(good, `"egress":{`, `"Egress":{"segment":"folded",`, 1),
		strings.Replace(good, `"source":{`, `"source":{"port":-1,`, 1),
		strings.Replace(good, `"source":{`, `"source":{"port":70000,`, 1),
		strings.Replace(good, `"source":{`, `"source":{"port":"1",`, 1),
		strings.Replace(good, `"source":{`, `"source":{"port":1.0,`, 1),
		strings.Replace(good, `"source":{`, `"source":{"port":01,`, 1),
		strings.Replace(good, `"source":{`, `"source":{"ip":null,`, 1),
		strings.Replace(good, `"source":{`, `"source":{"ip":"a\"b",`, 1),
		strings.Replace(good, `"source":{`, `"source":{"ip":"é",`, 1),
		strings.Replace(good, `"@timestamp":"`, `"@timestamp":"x`, 1),
		strings.Replace(good, `"action":"allow"`, `"action":""`, 1),
		strings.Replace(good, `"observer":{`, `"observer":{"product":"squid",`, 1),
		good + "x",
		good[:len(good)-1],
		`{"event":{"action":"allow","module":"egress"},"x":[` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `]}`,
		`null`, `[]`, `{}`, ``, `{"event":{"action":"allow","module":"egress"},}`,
		// egress 1.x lines (tls.client.ja4/ech) and log.legacy_fields lines (both places).
		`{"event":{"action":"allow","module":"egress"},"tls":{"client":{"server_name":"a.example","ja4":"j","ech":true}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"tls":{"ja4":"j","ech":false}},"tls":{"client":{"ja4":"j","ech":true}}}`,
		`{"event":{"action":"allow","module":"egress"},"tls":{"client":{"ech":true}},"egress":{"tls":{"ech":false}}}`,
		`{"event":{"action":"allow","module":"egress"},"tls":{"client":{"ech":"yes"}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"tls":{"ech":1}}}`,
		// egress.monitor and egress.exception: empty, repeated (encoding/json
		// merges a repeated member into the first one's values), odd elements.
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[],"exception":{}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[{}],"exception":{"owner":"o","x":[1]}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[{"rule":"a","ruleset":"b"},{"action":"deny","rule":"c"}]}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[{"rule":"a","ruleset":"b"}],"monitor":[{"action":"deny"}]}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[{"rule":"a"}]},"egress":{"monitor":[{"action":"x"}]}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"exception":{"owner":"a"},"exception":{"ticket":"b"}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[null]}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":null,"exception":null}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"monitor":[{"Rule":"a"}]}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"tls":{"ja4":""}},"tls":{"client":{"ja4":"old"}}}`,
		`{"event":{"action":"allow","module":"egress"},"egress":{"tls":{"ja4":"new"}},"tls":{"client":{"ja4":"old"}}}`,
	}
	nfast := 0
	for _, l := range append(fastSeeds(t), func() (out [][]byte) {
		for _, s := range extra {
			out = append(out, []byte(s))
		}
		return
	}()...) {
		if checkAgrees(t, l) {
			nfast++
		}
	}
	if nfast < 60 {
		t.Errorf("fast path took only %d lines; the plain events should all take it", nfast)
	}
	// Folded keys and escapes go to ParseECS, which reads them right.
	ev, err := parseEvent([]byte(extra[2]))
	if err != nil || ev.Segment != "folded" {
		t.Errorf("folded key: %v %+v", err, ev)
	}
}

func FuzzFastParse(f *testing.F) {
	for _, s := range fastSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkAgrees(t, line)
	})
}
