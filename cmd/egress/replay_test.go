package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

const replayHCL = `
category "video" {
  domains = ["netflix.com"]
}
segment "ministry" {
  sources = ["10.20.0.0/16"]
  default = "allow"
  rule "no-video" {
    action     = "deny"
    categories = ["video"]
  }
}
`

func replayFiles(t *testing.T, changed bool) (cfg, events, gz string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "new.hcl")
	if err := os.WriteFile(cfg, []byte(replayHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	enc, _ := audit.NewEncoder("ecs", "test")
	no := false
	host := "example.org"
	if changed {
		host = "www.netflix.com"
	}
	var b []byte
	b = enc.Encode(b, &audit.Event{Time: time.Unix(1e9, 0), Listener: "proxy", SourceIP: "10.20.1.1", DestDomain: host,
		DestPort: 443, SNI: host, ECH: &no, Action: "allow", Reason: "default", Segment: "ministry"})
	b = append(b, "\nnot json\n"...)
	events = filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	gz = events + ".gz"
	if err := os.WriteFile(gz, z.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, events, gz
}

func TestReplayCommand(t *testing.T) {
	cfg, events, gz := replayFiles(t, true)
	_, same, _ := replayFiles(t, false)
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("segment \"x\" {\n  sources = [\"nope\"]\n}\n"), 0o600)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"changed", []string{"-config", cfg, events}, 0, "allow → deny", ""},
		{"gzip, flags after", []string{"-config", cfg, gz, "-top", "1"}, 0, "1  ministry  no-video (ministry)  default  www.netflix.com", ""},
		{"fail on change", []string{"-config", cfg, "-fail-on-change", events}, 1, "changed: 1", ""},
		{"no change", []string{"-config", cfg, "-fail-on-change", same}, 0, "changed: 0", ""},
		{"malformed reported", []string{"-config", cfg, events}, 0, "line 2: audit: not an egress ECS event", ""},
		{"missing file", []string{"-config", cfg, filepath.Join(t.TempDir(), "none.jsonl")}, 2, "", "no such file"},
		{"config error", []string{"-config", bad, events}, 2, "", "bad.hcl:1"},
		{"no config", []string{events}, 2, "", "usage: egress replay"},
		{"no events", []string{"-config", cfg}, 2, "", "usage: egress replay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"replay"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}

func TestReplayCommandJSON(t *testing.T) {
	cfg, events, _ := replayFiles(t, true)
	var out, errb bytes.Buffer
	if code := run([]string{"replay", "-json", "-config", cfg, events}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		Events    int `json:"events"`
		Changed   int `json:"changed"`
		Malformed int `json:"malformed"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Events != 1 || doc.Changed != 1 || doc.Malformed != 1 {
		t.Errorf("%v %+v\n%s", err, doc, out.String())
	}
}
