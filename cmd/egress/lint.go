package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/egress-proxy/egress/internal/lint"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/hashicorp/hcl/v2"
)

// cmdLint: egress lint PATH [-json]. Exit 0 clean (every finding waived), 1
// findings, 2 config or usage error.
func cmdLint(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("lint", stderr)
	cfgPath := fs.String("config", "", "config file or directory (or give it as the argument)")
	asJSON := fs.Bool("json", false, "print the findings as one JSON document (for CI bots)")
	path, err := pathArg(fs, args, cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "egress lint: %v\nusage: egress lint PATH [-json]\n", err)
		return 2
	}
	inv, diags := rules.Inspect(path, rules.Options{})
	if diags.HasErrors() {
		rules.WriteDiagnostics(stderr, diags)
		fmt.Fprintf(stderr, "%s: the configuration is not valid; fix the errors above (egress validate) before linting\n", path)
		if *asJSON {
			writeLintConfigError(stdout, path, diags)
		}
		return 2
	}
	findings := lint.Run(inv, lint.Options{})
	open := lint.Count(findings)
	if *asJSON {
		doc := struct {
			Path          string         `json:"path"`
			ConfigVersion string         `json:"config_version"`
			Clean         bool           `json:"clean"`
			Findings      int            `json:"findings"`
			Waived        int            `json:"waived"`
			Results       []lint.Finding `json:"results"`
		}{path, inv.Config.Version, open == 0, open, len(findings) - open, findings}
		if doc.Results == nil {
			doc.Results = []lint.Finding{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintf(stderr, "egress lint: %v\n", err)
			return 2
		}
	} else {
		for _, f := range findings {
			if !f.Waived {
				fmt.Fprintln(stdout, f.String())
			}
		}
		fmt.Fprintf(stdout, "%s: %d finding(s), %d waived (config_version %s)\n", path, open, len(findings)-open, inv.Config.Version)
	}
	if open > 0 {
		return 1
	}
	return 0
}

// writeLintConfigError: with -json, a config that does not load is still one
// JSON document, so a CI bot can show the diagnostics where they are.
func writeLintConfigError(w io.Writer, path string, diags hcl.Diagnostics) {
	type diag struct {
		Severity string `json:"severity"`
		Summary  string `json:"summary"`
		Detail   string `json:"detail,omitempty"`
		File     string `json:"file,omitempty"`
		Line     int    `json:"line,omitempty"`
		Column   int    `json:"column,omitempty"`
	}
	doc := struct {
		Path        string `json:"path"`
		Clean       bool   `json:"clean"`
		ConfigError bool   `json:"config_error"`
		Diagnostics []diag `json:"diagnostics"`
	}{Path: path, ConfigError: true}
	for _, d := range diags {
		x := diag{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			x.Severity = "warning"
		}
		if d.Subject != nil {
			x.File, x.Line, x.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
		}
		doc.Diagnostics = append(doc.Diagnostics, x)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
}
