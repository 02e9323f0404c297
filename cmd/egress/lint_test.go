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

func TestLintCommandConfigErrorJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(p, []byte("segment \"x\" {\n  sources = [\"nope\"]\n  default = \"allow\"\n}\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"lint", "-json", p}, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	var doc struct {
		ConfigError bool `json:"config_error"`
		Diagnostics []struct {
			Severity, Summary, File string
			Line, Column            int
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || !doc.ConfigError || len(doc.Diagnostics) != 1 ||
		doc.Diagnostics[0].Summary != "Invalid CIDR" || doc.Diagnostics[0].File != p || doc.Diagnostics[0].Line != 2 {
		t.Errorf("%v %+v\n%s", err, doc, out.String())
	}
}

// A directory: the policy in one file, the segment in another; findings and
// waivers name the right file.
func TestLintCommandDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.hcl"), []byte(`policy "bans" {
  rule "no-example" {
    action  = "deny"
    domains = ["example.com"]
  }
  rule "no-www" {
    action  = "deny"
    domains = ["www.example.com"]
  }
}
category "unused" { # lint:ignore unused-category kept for the next rollout (SEC-3)
  domains = ["a.example"]
}
`), 0o600)
	os.WriteFile(filepath.Join(dir, "segments.hcl"), []byte(`segment "s" {
  sources  = ["10.1.0.0/16"]
  default  = "allow"
  policies = ["bans"]
}
`), 0o600)
	var out, errb bytes.Buffer
	code := run([]string{"lint", dir}, &out, &errb)
	want := filepath.Join(dir, "policy.hcl") + `:6:3: error: [shadowed] rule "no-www" can never match`
	if code != 1 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "1 finding(s), 1 waived") {
		t.Errorf("exit %d\n%s%s", code, out.String(), errb.String())
	}
}
