package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/egress-proxy/egress/internal/lint"
	"github.com/egress-proxy/egress/internal/rules"
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
