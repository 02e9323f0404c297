package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// candidateHCL is the config under review in every test.
const candidateHCL = `
tls {
  sni_mismatch = "deny"
  missing_sni  = "allow"
  ech          = "allow"
}

category "video" {
  domains = ["netflix.com"]
}

policy "baseline" {
  rule "no-video" {
    action     = "deny"
    categories = ["video"]
  }
  rule "no-ssh" {
    action = "deny"
    ports  = [22]
  }
}

segment "ministry" {
  sources  = ["10.20.0.0/16", "fd00:20::/48"]
  default  = "allow"
  policies = ["baseline"]
}

segment "comms" {
  sources = ["10.20.5.0/24"]
  default = "allow"
  rule "tiktok-exception" {
    action  = "allow"
    domains = ["tiktok.com"]
  }
  policies = ["baseline"]
}

segment "servers" {
  sources = ["10.30.0.0/16"]
  default = "deny"
  rule "updates" {
    action  = "allow"
    domains = ["updates.example"]
  }
}
`

func loadCandidate(t testing.TB) *rules.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "candidate.hcl")
	if err := os.WriteFile(path, []byte(candidateHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(path, rules.Options{})
	if diags.HasErrors() {
		t.Fatalf("candidate config: %v", diags)
	}
	cfg.Source, cfg.Version = "candidate.hcl", "cand1" // stable in golden output
	return cfg
}

var (
	yes = true
	no  = false
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// tunnel is a CONNECT tunnel event whose ClientHello was read.
func tunnel(src, sni, action, reason, rule, ruleset, segment string) *audit.Event {
	return &audit.Event{Listener: audit.ListenerProxy, SourceIP: src, SourcePort: 50000, DestDomain: sni, DestIP: "198.51.100.7",
		DestPort: 443, SNI: sni, ECH: &no, Action: action, Reason: reason, Rule: rule, Ruleset: ruleset, Segment: segment,
		ConfigVersion: "old1"}
}

// fixture is the recorded traffic of the tests; each entry says what it is for.
func fixture() []struct {
	what string
	ev   *audit.Event // nil: the raw line instead
	raw  string
} {
	type entry = struct {
		what string
		ev   *audit.Event
		raw  string
	}
	plain := func(src, host string, port int, action, reason, rule, ruleset, segment string) *audit.Event {
		return &audit.Event{Listener: audit.ListenerProxy, Method: "GET", SourceIP: src, URLDomain: host, URLPath: "/",
			DestDomain: host, DestPort: port, Action: action, Reason: reason, Rule: rule, Ruleset: ruleset, Segment: segment,
			ConfigVersion: "old1", Status: 200}
	}
	return []entry{
		{what: "allow→deny, CONNECT tunnel", ev: tunnel("10.20.1.1", "www.netflix.com", "allow", "default", "", "", "ministry")},
		{what: "allow→deny, CONNECT tunnel (2)", ev: tunnel("10.20.1.2", "www.netflix.com", "allow", "default", "", "", "ministry")},
		{what: "allow→deny, IPv6 source, transparent TLS", ev: &audit.Event{Listener: audit.ListenerTransparentHTTPS,
			SourceIP: "fd00:20::5", DestDomain: "www.netflix.com", DestPort: 443, SNI: "WWW.Netflix.com.", ECH: &yes,
			Action: "allow", Reason: "default", Segment: "ministry", ConfigVersion: "old1"}},
		{what: "allow→deny, plain HTTP on a port", ev: plain("10.20.1.1", "netflix.com", 8080, "allow", "default", "", "", "ministry")},
		{what: "deny→allow, exception", ev: tunnel("10.20.5.7", "www.tiktok.com", "deny", "rule", "no-social", "baseline", "comms")},
		{what: "deny→allow, CONNECT without SNI under missing_sni = allow", ev: &audit.Event{Listener: audit.ListenerProxy,
			SourceIP: "10.20.1.1", DestDomain: "intranet.example", DestPort: 443, ECH: &no,
			Action: "deny", Reason: "missing_sni", Segment: "ministry", ConfigVersion: "old1"}},
		{what: "deny→allow, transparent HTTP", ev: &audit.Event{Listener: audit.ListenerTransparentHTTP, Method: "GET",
			SourceIP: "10.30.1.1", URLDomain: "updates.example", DestDomain: "updates.example", DestPort: 80,
			Action: "deny", Reason: "default", Segment: "servers", ConfigVersion: "old2"}},
		{what: "allow→deny, unknown source", ev: plain("192.0.2.1", "example.org", 80, "allow", "default", "", "", "guest")},
		{what: "rule changed, CONNECT denied on its target", ev: &audit.Event{Listener: audit.ListenerProxy, Method: "CONNECT",
			SourceIP: "10.20.1.1", DestDomain: "git.example", DestPort: 22, Status: 403,
			Action: "deny", Reason: "rule", Rule: "old-ssh", Ruleset: "legacy", Segment: "ministry", ConfigVersion: "old1"}},
		{what: "unchanged, tunnel", ev: tunnel("10.20.1.1", "example.org", "allow", "default", "", "", "ministry")},
		{what: "unchanged, CONNECT IP literal", ev: &audit.Event{Listener: audit.ListenerProxy, Method: "CONNECT",
			SourceIP: "10.20.1.1", DestIP: "203.0.113.9", DestPort: 443, Action: "allow", Reason: "default", Segment: "ministry",
			ConfigVersion: "old1"}},
		{what: "unchanged, plain HTTP deny", ev: plain("10.20.1.1", "netflix.com", 80, "deny", "rule", "no-video", "baseline", "ministry")},
		{what: "blank line", raw: ""},
		{what: "not re-decidable: hello_timeout", ev: &audit.Event{Listener: audit.ListenerProxy, SourceIP: "10.20.1.1",
			DestDomain: "www.netflix.com", DestPort: 443, Action: "deny", Reason: "hello_timeout", Segment: "ministry"}},
		{what: "not re-decidable: dns_error", ev: plain("10.20.1.1", "nx.example", 80, "allow", "dns_error", "", "", "ministry")},
		{what: "not re-decidable: dns_error (2)", ev: plain("10.20.1.1", "nx2.example", 80, "allow", "dns_error", "", "", "ministry")},
		{what: "not re-decidable: Host header mismatch", ev: plain("10.20.1.1", "a.example", 80, "deny", "sni_mismatch", "", "", "ministry")},
		{what: "malformed: not JSON", raw: "this is not json"},
		{what: "malformed: not an egress event", raw: `{"event":{"action":"allow"},"observer":{"product":"squid"}}`},
		{what: "malformed: truncated", raw: `{"@timestamp":"2026-03-02T09:00:00Z","event":{"action":"allow","module":"egress"`},
		{what: "malformed: too long", raw: `{"x":"` + strings.Repeat("a", 5000) + `"}`},
	}
}

// writeFixture writes the fixture as ECS lines, one second apart.
func writeFixture(t testing.TB) []byte {
	t.Helper()
	enc, err := audit.NewEncoder("ecs", "test")
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for i, f := range fixture() {
		if f.ev == nil {
			b = append(b, f.raw...)
		} else {
			f.ev.Time = t0.Add(time.Duration(i) * time.Second)
			f.ev.ID = fmt.Sprintf("id-%d", i)
			b = enc.Encode(b, f.ev)
		}
		b = append(b, '\n')
	}
	return b
}

func runFixture(t *testing.T, in io.Reader, workers int) *Report {
	t.Helper()
	rep, err := Run(loadCandidate(t), in, Options{Input: "events.jsonl", MaxLine: 4096, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	rep.Elapsed = 1500 * time.Millisecond
	return rep
}

func TestRunCounts(t *testing.T) {
	rep := runFixture(t, bytes.NewReader(writeFixture(t)), 2)
	checks := []struct {
		name      string
		got, want int
	}{
		{"lines", rep.Lines, 20},
		{"events", rep.Events, 16},
		{"allow→deny", rep.AllowToDeny, 5},
		{"deny→allow", rep.DenyToAllow, 3},
		{"rule changed", rep.RuleChanged, 1},
		{"unchanged", rep.Unchanged, 3},
		{"not re-decidable", rep.NotRedecidable, 4},
		{"malformed", rep.Malformed, 4},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	wantSkipped := []Count{{"dns_error", 2}, {"hello_timeout", 1}, {SkipHostHeader, 1}}
	if fmt.Sprint(rep.Skipped) != fmt.Sprint(wantSkipped) {
		t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
	}
	var lines []int
	for _, m := range rep.MalformedLines {
		lines = append(lines, m.Line)
	}
	// Line 13 is blank: numbering counts it, the counts do not.
	if fmt.Sprint(lines) != "[18 19 20 21]" {
		t.Errorf("malformed lines = %v, want [18 19 20 21]", lines)
	}
	if !strings.Contains(rep.MalformedLines[3].Error, ErrLineTooLong.Error()) {
		t.Errorf("line 21 error = %q, want %q", rep.MalformedLines[3].Error, ErrLineTooLong)
	}
	if !rep.First.Equal(t0) || !rep.Last.Equal(t0.Add(16*time.Second)) {
		t.Errorf("time range %v..%v", rep.First, rep.Last)
	}
	if fmt.Sprint(rep.Recorded) != "[{old1 14} { 1} {old2 1}]" {
		t.Errorf("recorded versions = %v", rep.Recorded)
	}
}

func TestRunGroups(t *testing.T) {
	rep := runFixture(t, bytes.NewReader(writeFixture(t)), 1)
	type row struct {
		change              Change
		count               int
		dest, seg, now, was string
	}
	var got []row
	for _, g := range rep.Groups {
		got = append(got, row{g.Change, g.Count, g.Destination, segmentLabel(g), g.New.Label(), g.Old.Label()})
	}
	want := []row{
		{AllowToDeny, 3, "www.netflix.com", "ministry", "no-video (baseline)", "default"},
		{AllowToDeny, 1, "example.org", "guest → (none)", "unknown_source", "default"},
		{AllowToDeny, 1, "netflix.com:8080", "ministry", "no-video (baseline)", "default"},
		{DenyToAllow, 1, "intranet.example", "ministry", "default", "missing_sni"},
		{DenyToAllow, 1, "updates.example", "servers", "updates (servers)", "default"},
		{DenyToAllow, 1, "www.tiktok.com", "comms", "tiktok-exception (comms)", "no-social (baseline)"},
		{RuleChanged, 1, "git.example:22", "ministry", "no-ssh (baseline)", "old-ssh (legacy)"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("groups:\n got %v\nwant %v", got, want)
	}
}

// TestDeterministic: the report does not depend on the number of workers,
// and gzip input reads the same as plain input.
func TestDeterministic(t *testing.T) {
	data := writeFixture(t)
	// Repeat the fixture so that lines spread over several batches.
	var many []byte
	for range 200 {
		many = append(many, data...)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(many)
	zw.Close()
	var want string
	for _, tc := range []struct {
		name    string
		in      []byte
		workers int
	}{{"plain-1", many, 1}, {"plain-3", many, 3}, {"gzip-2", gz.Bytes(), 2}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := runFixture(t, bytes.NewReader(tc.in), tc.workers)
			if rep.Events != 16*200 || rep.Malformed != 4*200 {
				t.Fatalf("events %d malformed %d", rep.Events, rep.Malformed)
			}
			var out bytes.Buffer
			rep.WriteJSON(&out, Show{Rules: true})
			if want == "" {
				want = out.String()
			} else if out.String() != want {
				t.Errorf("report differs from plain-1:\n%s", out.String())
			}
		})
	}
}

func TestGolden(t *testing.T) {
	rep := runFixture(t, bytes.NewReader(writeFixture(t)), 2)
	for _, tc := range []struct {
		file string
		show Show
		json bool
	}{
		{"report.golden", Show{Top: 50}, false},
		{"report-rules-top2.golden", Show{Top: 2, Rules: true}, false},
		{"report.json.golden", Show{Top: 2, Rules: true}, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var out bytes.Buffer
			var err error
			if tc.json {
				err = rep.WriteJSON(&out, tc.show)
			} else {
				err = rep.WriteText(&out, tc.show)
			}
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if out.String() != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, out.String())
			}
		})
	}
}

func TestJSONDocument(t *testing.T) {
	rep := runFixture(t, bytes.NewReader(writeFixture(t)), 2)
	var out bytes.Buffer
	if err := rep.WriteJSON(&out, Show{Top: 1}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Changed  int `json:"changed"`
		Sections []struct {
			Change     Change  `json:"change"`
			Events     int     `json:"events"`
			Groups     []Group `json:"groups"`
			MoreGroups int     `json:"more_groups"`
		} `json:"sections"`
		MalformedLines []Malformed `json:"malformed_lines"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Changed != 8 || len(doc.Sections) != 2 || doc.Sections[0].Events != 5 || len(doc.Sections[0].Groups) != 1 ||
		doc.Sections[0].MoreGroups != 2 || doc.Sections[0].Groups[0].Count != 3 || len(doc.MalformedLines) != 4 {
		t.Errorf("unexpected document:\n%s", out.String())
	}
}

func TestEmptyAndErrors(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		rep := runFixture(t, strings.NewReader(""), 2)
		if rep.Events != 0 || rep.Lines != 0 || len(rep.Groups) != 0 {
			t.Errorf("%+v", rep)
		}
		var out bytes.Buffer
		rep.WriteText(&out, Show{})
		if !strings.Contains(out.String(), "allow → deny\n  none\n") {
			t.Errorf("empty report:\n%s", out.String())
		}
	})
	t.Run("no trailing newline, CRLF", func(t *testing.T) {
		data := bytes.ReplaceAll(bytes.TrimSuffix(writeFixture(t), []byte("\n")), []byte("\n"), []byte("\r\n"))
		rep := runFixture(t, bytes.NewReader(data), 2)
		if rep.Events != 16 || rep.Malformed != 4 {
			t.Errorf("events %d malformed %d", rep.Events, rep.Malformed)
		}
	})
	t.Run("bad gzip", func(t *testing.T) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(writeFixture(t))
		zw.Close()
		cut := gz.Bytes()[:gz.Len()/2]
		_, err := Run(loadCandidate(t), bytes.NewReader(cut), Options{})
		if !errors.Is(err, ErrRead) {
			t.Errorf("err = %v, want ErrRead", err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(writeFixture(t)), errReader{})
		rep, err := Run(loadCandidate(t), r, Options{MaxLine: 4096})
		if !errors.Is(err, ErrRead) || rep == nil || rep.Events != 16 {
			t.Errorf("err = %v, rep = %+v", err, rep)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// genEvents writes n varied events to w: mostly unchanged, some changed,
// some not re-decidable, a few malformed.
func genEvents(tb testing.TB, w io.Writer, n int) {
	tb.Helper()
	enc, err := audit.NewEncoder("ecs", "bench")
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	hosts := []string{"www.netflix.com", "example.org", "www.tiktok.com", "docs.example.com", "api.github.com", "cdn.example.net"}
	var b []byte
	for i := range n {
		b = b[:0]
		if i%100_000 == 99_999 {
			b = append(b, "garbage line"...)
		} else {
			h := hosts[i%len(hosts)]
			ev := tunnel(fmt.Sprintf("10.20.%d.%d", i/250%250, i%250+1), h, "allow", "default", "", "", "ministry")
			ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
			ev.ID = audit.NewID()
			ev.JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
			ev.SourceBytes, ev.DestBytes, ev.Duration = 1234, 56789, time.Second
			switch i % 7 {
			case 1:
				ev.Action, ev.Reason, ev.Rule, ev.Ruleset = "deny", "rule", "no-video", "baseline"
			case 2:
				ev.Reason = "destination_unavailable"
			case 3:
				ev.Listener, ev.SNI = audit.ListenerTransparentHTTPS, h
			case 4:
				ev.Method, ev.URLDomain, ev.URLPath, ev.SNI, ev.ECH, ev.DestPort = "GET", h, "/index.html", "", nil, 80
			}
			b = enc.Encode(b, ev)
		}
		b = append(b, '\n')
		bw.Write(b)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func genFile(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "events.jsonl")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	genEvents(tb, f, n)
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestThroughput replays 100,000 generated events from a file and checks
// the counts; the throughput is logged, never asserted.
func TestThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	n := 100_000
	if s := os.Getenv("REPLAY_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	path := genFile(t, n)
	cfg := loadCandidate(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Run(cfg, f, Options{Input: path})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Malformed != 1 || rep.Events != n-1 || rep.Events != rep.AllowToDeny+rep.DenyToAllow+rep.RuleChanged+rep.Unchanged+rep.NotRedecidable {
		t.Errorf("counts: %+v", rep)
	}
	if rep.AllowToDeny == 0 || rep.NotRedecidable == 0 {
		t.Errorf("fixture should change some decisions: %+v", rep)
	}
	t.Logf("%d events in %v: %.0f events/s", rep.Events, rep.Elapsed, float64(rep.Events)/rep.Elapsed.Seconds())
}

// BenchmarkRun1M replays 1,000,000 generated events from a file per
// iteration: go test -run '^$' -bench Run1M -benchtime 3x ./internal/replay/
func BenchmarkRun1M(b *testing.B) {
	const n = 1_000_000
	path := genFile(b, n)
	st, _ := os.Stat(path)
	cfg := loadCandidate(b)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := Run(cfg, f, Options{})
		f.Close()
		if err != nil || rep.Events != n-n/100_000 {
			b.Fatalf("err %v events %d", err, rep.Events)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
