package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lintShadowedHCL = `segment "s" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "ban" {
    action  = "deny"
    domains = ["example.com"]
  }
  rule "dead" {
    action  = "allow"
    domains = ["www.example.com"]
  }
}
`

const lintCleanHCL = `segment "s" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "ban" {
    action  = "deny"
    domains = ["example.com"]
  }
}
`

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clean := write("clean.hcl", lintCleanHCL)
	shadowed := write("shadowed.hcl", lintShadowedHCL)
	waived := write("waived.hcl", strings.Replace(lintShadowedHCL, `rule "dead" {`, `rule "dead" { # lint:ignore shadowed kept for the audit trail (SEC-9)`, 1))
	bad := write("bad.hcl", "segment \"x\" {\n  sources = [\"nope\"]\n  default = \"allow\"\n}\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"clean", []string{clean}, 0, "0 finding(s), 0 waived", ""},
		{"shadowed", []string{shadowed}, 1, shadowed + `:8:3: error: [shadowed] rule "dead" can never match`, ""},
		{"waived", []string{waived}, 0, "0 finding(s), 1 waived", ""},
		{"config error", []string{bad}, 2, "", "bad.hcl:2:"},
		{"no path", nil, 2, "", "usage: egress lint"},
		{"two paths", []string{clean, shadowed}, 2, "", "usage: egress lint"},
		{"missing", []string{filepath.Join(dir, "none.hcl")}, 2, "", "none.hcl"},
		{"shipped example", []string{"../../config/examples/government.hcl"}, 0, "0 finding(s)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"lint"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}

func TestLintCommandJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.hcl")
	os.WriteFile(p, []byte(lintShadowedHCL), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"lint", p, "-json"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		Clean    bool `json:"clean"`
		Findings int  `json:"findings"`
		Results  []struct {
			Check    string `json:"check"`
			Severity string `json:"severity"`
			File     string `json:"file"`
			Line     int    `json:"line"`
			Column   int    `json:"column"`
			Message  string `json:"message"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if doc.Clean || doc.Findings != 1 || len(doc.Results) != 1 {
		t.Fatalf("%+v", doc)
	}
	r := doc.Results[0]
	if r.Check != "shadowed" || r.Severity != "error" || r.File != p || r.Line != 8 || r.Column != 3 || !strings.Contains(r.Message, `"ban"`) {
		t.Errorf("%+v", r)
	}
	// Clean: results is an empty list, not null.
	os.WriteFile(p, []byte(lintCleanHCL), 0o600)
	out.Reset()
	if code := run([]string{"lint", "-json", p}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"results": []`) {
		t.Errorf("exit %d\n%s", code, out.String())
	}
}
