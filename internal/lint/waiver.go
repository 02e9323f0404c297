package lint

import (
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Waivers. A finding that is accepted on purpose is waived in the HCL file
// itself, next to what it is about, with a reason a reviewer can read:
//
//	rule "legacy" { # lint:ignore shadowed kept until the 2027 audit, SEC-41
//
// or on its own line directly above the line of the finding:
//
//	# lint:ignore segment-overlap the lab range is split on purpose (NET-7)
//	sources = ["10.0.0.0/16"]
//
// The comment names one check id and must give a reason. A waiver applies to
// findings of that check on its own line (a trailing comment) or on the next
// line (a comment alone on its line). A malformed waiver, or one that waives
// nothing, is itself a finding (check "waiver"): stale waivers do not pile up.
// Comments are found with HCL's own lexer, so text inside strings never
// counts. Block comments (/* lint:ignore ... */) work too; alone on their
// lines they waive the line after the comment's end.

var waiverRE = regexp.MustCompile(`^(?:#|//)\s*lint:ignore(?:\s+(\S+))?(?:\s+([\s\S]*\S))?\s*$`)

type waiver struct {
	check, reason string
	file          string
	line          int // the line whose findings it waives
	at            hcl.Range
	used          bool
}

// readWaivers reads the waivers of the given HCL files from the operating
// system (an Inventory loaded from an fs.FS, such as the embedded default,
// has no waivers).
func readWaivers(files []string) ([]*waiver, []Finding) {
	var ws []*waiver
	var bad []Finding
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		w, b := waiversIn(name, src)
		ws, bad = append(ws, w...), append(bad, b...)
	}
	return ws, bad
}

var knownChecks = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range Checks {
		m[c] = true
	}
	return m
}()

// waiversIn reads the waiver comments of one HCL source.
func waiversIn(name string, src []byte) ([]*waiver, []Finding) {
	var ws []*waiver
	var bad []Finding
	toks, _ := hclsyntax.LexConfig(src, name, hcl.InitialPos)
	for i, t := range toks {
		if t.Type != hclsyntax.TokenComment {
			continue
		}
		text := strings.TrimSpace(string(t.Bytes))
		if !strings.Contains(text, "lint:ignore") {
			continue
		}
		block := strings.HasPrefix(text, "/*")
		if block {
			text = "#" + strings.TrimSuffix(strings.TrimPrefix(text, "/*"), "*/")
		}
		m := waiverRE.FindStringSubmatch(text)
		f := Finding{Check: CheckWaiver, Severity: Error, File: name, Line: t.Range.Start.Line, Column: t.Range.Start.Column, rng: t.Range}
		switch {
		case m == nil || m[1] == "":
			f.Message = "malformed waiver: write # lint:ignore <check-id> <reason>"
		case !knownChecks[m[1]]:
			f.Message = "waiver names an unknown check " + quote(m[1]) + "; checks are: " + strings.Join(Checks, ", ")
		case m[1] == CheckWaiver:
			f.Message = "a waiver cannot waive the waiver check"
		case m[2] == "":
			f.Message = "waiver for " + quote(m[1]) + " gives no reason; write # lint:ignore " + m[1] + " <why this is accepted>"
		}
		if f.Message != "" {
			bad = append(bad, f)
			continue
		}
		// A comment alone on its line waives the next line; a trailing
		// comment its own line. Line comments end with their newline,
		// so "alone" means no earlier token on the same line.
		line := t.Range.Start.Line + 1
		if block {
			line = t.Range.End.Line + 1
		}
		if i > 0 && toks[i-1].Range.End.Line == t.Range.Start.Line && toks[i-1].Type != hclsyntax.TokenNewline && toks[i-1].Type != hclsyntax.TokenComment {
			line = t.Range.Start.Line
		}
		ws = append(ws, &waiver{check: m[1], reason: m[2], file: name, line: line, at: t.Range})
	}
	return ws, bad
}

func quote(s string) string { return `"` + s + `"` }

// applyWaivers marks waived findings and adds the waiver findings.
func applyWaivers(files []string, fs []Finding) []Finding {
	ws, bad := readWaivers(files)
	for i := range fs {
		for _, w := range ws {
			if w.check == fs[i].Check && w.file == fs[i].File && w.line == fs[i].Line {
				fs[i].Waived, fs[i].Reason = true, w.reason
				w.used = true
			}
		}
	}
	for _, w := range ws {
		if !w.used {
			bad = append(bad, Finding{Check: CheckWaiver, Severity: Warning, File: w.file, Line: w.at.Start.Line, Column: w.at.Start.Column, rng: w.at,
				Message: "waiver for " + quote(w.check) + " waives nothing (no such finding on line " + strconv.Itoa(w.line) + "); remove it"})
		}
	}
	return append(fs, bad...)
}
