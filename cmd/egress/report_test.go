package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

const reportHCL = `
category "video" { domains = ["netflix.com"] }
segment "ministry" {
  sources = ["10.20.0.0/16"]
  default = "allow"
  rule "no-video" {
    action     = "deny"
    categories = ["video"]
  }
  rule "press-video" {
    action  = "allow"
    domains = ["press.netflix.com"]
    owner   = "press@example.org"
    ticket  = "SEC-9"
    expires = "2099-12-31"
  }
}
test "video denied" {
  source = "10.20.1.1"
  host   = "www.netflix.com"
  expect = "deny"
}
`

func reportFiles(t *testing.T, extra string) (cfg, events string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(cfg, []byte(reportHCL+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	enc, _ := audit.NewEncoder("ecs", "test")
	var b []byte
	for i, h := range []string{"www.netflix.com", "www.netflix.com", "example.org"} {
		ev := &audit.Event{Time: time.Date(2026, 11, 1+i, 9, 0, 0, 0, time.UTC), Listener: "proxy", SourceIP: "10.20.1.1",
			DestDomain: h, DestPort: 443, SNI: h, Action: "allow", Reason: "default", Segment: "ministry"}
		if h != "example.org" {
			ev.Action, ev.Reason, ev.Rule, ev.Ruleset = "deny", "rule", "no-video", "ministry"
		}
		b = append(enc.Encode(b, ev), '\n')
	}
	events = filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, events
}

func TestReportCLI(t *testing.T) {
	cfg, events := reportFiles(t, "")
	out := filepath.Join(t.TempDir(), "report.html")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"report", "-config", cfg, "-events", events, "-o", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "no-video", "press@example.org", "SEC-9", "<svg class=\"chart\"", "1 passed"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("html lacks %q", want)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("-o also wrote to stdout: %q", stdout.String())
	}

	stdout.Reset()
	if code := run([]string{"report", "-config", cfg, "-events", events, "-events", events, "-format", "json", "-since", "2026-11-02"}, &stdout, &stderr); code != 0 {
		t.Fatalf("json: exit %d: %s", code, stderr.String())
	}
	var doc struct {
		ConfigVersion string `json:"config_version"`
		Exceptions    []struct {
			Ticket   string `json:"ticket"`
			DaysLeft *int   `json:"days_left"`
		} `json:"exceptions"`
		Events struct {
			Inputs      []string `json:"inputs"`
			Events      int      `json:"events"`
			OutOfWindow int      `json:"out_of_window"`
			Rules       []struct {
				Rule string `json:"rule"`
				Hits int    `json:"hits"`
			} `json:"rules"`
		} `json:"events"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if doc.ConfigVersion == "" || len(doc.Exceptions) != 1 || doc.Exceptions[0].Ticket != "SEC-9" || doc.Exceptions[0].DaysLeft == nil {
		t.Errorf("json %+v", doc)
	}
	hits := map[string]int{}
	for _, r := range doc.Events.Rules {
		hits[r.Rule] = r.Hits
	}
	if e := doc.Events; len(e.Inputs) != 2 || e.Events != 4 || e.OutOfWindow != 2 || hits["no-video"] != 2 || hits[""] != 2 {
		t.Errorf("json events %+v", e)
	}

	stdout.Reset()
	if code := run([]string{"report", "-config", cfg, "-format", "md"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "| press-video (segment ministry) | allow |") {
		t.Errorf("md: exit %d\n%s", code, stdout.String())
	}
}

func TestReportCLIExitCodes(t *testing.T) {
	cfg, events := reportFiles(t, "")
	failing, _ := reportFiles(t, `
test "wrong" {
  source = "10.20.1.1"
  host   = "www.netflix.com"
  expect = "allow"
}
`)
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("segment \"x\" {\n  sources = [\"nope\"]\n  default = \"allow\"\n}\n"), 0o600)
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"report", "-config", failing, "-format", "json"}, 1, "1 test block(s) fail: wrong"},
		{[]string{"report"}, 2, "usage: egress report"},
		{[]string{"report", "-config", cfg, "-format", "pdf"}, 2, "use html, json or md"},
		{[]string{"report", "-config", cfg, "-since", "yesterday"}, 2, "neither a date"},
		{[]string{"report", "-config", cfg, "-since", "2026-11-02", "-until", "2026-11-01"}, 2, "is not before"},
		{[]string{"report", "-config", cfg, "-events", events + ".missing"}, 2, "no such file"},
		{[]string{"report", "-config", bad}, 2, "bad.hcl:2:"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.err) {
			t.Errorf("%v: exit %d, want %d; stderr %q lacks %q", c.args, code, c.code, stderr.String(), c.err)
		}
	}
}
