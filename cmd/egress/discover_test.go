package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

const discoverHCL = `
category "tiktok" {
  domains = ["tiktok.com", "tiktokcdn.com"]
}
segment "office" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "no-tiktok" {
    action     = "deny"
    categories = ["tiktok"]
  }
}
`

// discoverFiles writes a config and two event files (the second gzipped):
// five sources hit TikTok a few times each and contact new.example two
// seconds later; everyone contacts cdn.example all the time.
func discoverFiles(t *testing.T) (cfg, plain, gz string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "egress.hcl")
	if err := os.WriteFile(cfg, []byte(discoverHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	enc, _ := audit.NewEncoder("ecs", "test")
	base := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	var a, b []byte
	line := func(dst []byte, src string, at time.Duration, name string) []byte {
		e := &audit.Event{Time: base.Add(at), Listener: audit.ListenerProxy, SourceIP: src, DestDomain: name, DestPort: 443,
			SNI: name, Method: "CONNECT", Action: audit.ActionAllow, Reason: "default", Segment: "office"}
		return append(enc.Encode(dst, e), '\n')
	}
	for i := range 5 {
		src := fmt.Sprintf("10.0.0.%d", i+1)
		for m := range 30 {
			a = line(a, src, time.Duration(m)*time.Minute+30*time.Second, "cdn.example")
		}
		for k := range 3 {
			at := time.Duration(10*k+i) * time.Minute
			b = line(b, src, at, "www.tiktok.com")
			b = line(b, src, at+2*time.Second, "new.example")
			b = line(b, src, at+3*time.Second, "cdn.example")
		}
	}
	plain = filepath.Join(dir, "a.jsonl")
	gz = filepath.Join(dir, "b.jsonl.gz")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(plain, a, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gz, z.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, plain, gz
}

func TestDiscoverCommand(t *testing.T) {
	cfg, plain, gz := discoverFiles(t)
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("segment \"x\" {\n  sources = [\"nope\"]\n}\n"), 0o600)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"ranked", []string{"-config", cfg, "-category", "tiktok", plain, gz}, 0, "1  new.example", ""},
		{"flags after files", []string{"-config", cfg, plain, "-category", "tiktok", gz, "-top", "1"}, 0, "candidates for review (1 of 1", ""},
		{"window too short", []string{"-config", cfg, "-category", "tiktok", "-window", "1s", plain, gz}, 0, "no candidates", ""},
		{"one file: no hits", []string{"-config", cfg, "-category", "tiktok", plain}, 0, "no candidates", ""},
		{"unknown category", []string{"-config", cfg, "-category", "tiktk", plain}, 2, "", `no category "tiktk"`},
		{"missing file", []string{"-config", cfg, "-category", "tiktok", filepath.Join(t.TempDir(), "none.jsonl")}, 2, "", "no such file"},
		{"config error", []string{"-config", bad, "-category", "tiktok", plain}, 2, "", "bad.hcl:1"},
		{"no category", []string{"-config", cfg, plain}, 2, "", "usage: egress discover"},
		{"no events", []string{"-config", cfg, "-category", "tiktok"}, 2, "", "usage: egress discover"},
		{"bad window", []string{"-config", cfg, "-category", "tiktok", "-window", "-1s", plain}, 2, "", "usage: egress discover"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"discover"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}

func TestDiscoverCommandJSON(t *testing.T) {
	cfg, plain, gz := discoverFiles(t)
	var out, errb bytes.Buffer
	if code := run([]string{"discover", "-json", "-config", cfg, "-category", "tiktok", plain, gz}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		Category   string `json:"category"`
		Window     string `json:"window"`
		Events     int    `json:"events"`
		Sessions   int    `json:"sessions"`
		Candidates []struct {
			Name          string  `json:"name"`
			Score         float64 `json:"score"`
			Sources       int     `json:"sources"`
			Cooccurrences int     `json:"cooccurrences"`
			Consistency   float64 `json:"consistency"`
			Lift          float64 `json:"lift"`
		} `json:"candidates"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err, out.String())
	}
	if doc.Category != "tiktok" || doc.Window != "1m0s" || doc.Events != 5*(30+9) || doc.Sessions != 15 ||
		len(doc.Candidates) != 1 || doc.Candidates[0].Name != "new.example" || doc.Candidates[0].Sources != 5 ||
		doc.Candidates[0].Cooccurrences != 15 || doc.Candidates[0].Consistency != 1 {
		t.Errorf("%+v\n%s", doc, out.String())
	}
}
