package lint

import (
	"strings"
	"testing"
)

func TestWaiverComments(t *testing.T) {
	tests := []struct {
		src   string
		line  int    // waived line, 0: none
		check string // or the waiver finding's message fragment
	}{
		{"rule \"a\" { # lint:ignore shadowed why\n}\n", 1, "shadowed"},
		{"# lint:ignore shadowed why\nrule \"a\" {\n}\n", 2, "shadowed"},
		{"// lint:ignore expired renewal in SEC-9\nx = 1\n", 2, "expired"},
		{"x = 1 // lint:ignore expired renewal in SEC-9\n", 1, "expired"},
		{"/* lint:ignore expired block comments count too */\nx = 1\n", 2, "expired"},
		{"x = \"# lint:ignore shadowed in a string\"\n", 0, ""},
		{"# lint:ignore\n", 0, "malformed"},
		{"# lint:ignore shadowed\n", 0, "gives no reason"},
		{"# lint:ignore shadow because\n", 0, "unknown check"},
		{"# lint:ignore waiver because\n", 0, "cannot waive"},
	}
	for _, tt := range tests {
		ws, bad := waiversIn("f.hcl", []byte(tt.src))
		switch {
		case tt.line > 0:
			if len(ws) != 1 || len(bad) != 0 || ws[0].line != tt.line || ws[0].check != tt.check {
				t.Errorf("%q: waivers %+v, bad %v", tt.src, ws, bad)
			}
		case tt.check == "":
			if len(ws)+len(bad) != 0 {
				t.Errorf("%q: waivers %+v, bad %v", tt.src, ws, bad)
			}
		default:
			if len(ws) != 0 || len(bad) != 1 || !strings.Contains(bad[0].Message, tt.check) {
				t.Errorf("%q: waivers %+v, bad %v", tt.src, ws, bad)
			}
		}
	}
}

// FuzzWaivers: any source lexes without panic, and every waiver points at a
// line of the source (or the one after its last line).
func FuzzWaivers(f *testing.F) {
	f.Add([]byte("rule \"a\" { # lint:ignore shadowed why\n}\n"))
	f.Add([]byte("# lint:ignore shadowed why\nrule \"a\" {\n}\n"))
	f.Add([]byte("x = \"# lint:ignore shadowed\" // lint:ignore expired r\n/* lint:ignore\n*/"))
	f.Fuzz(func(t *testing.T, src []byte) {
		ws, bad := waiversIn("f.hcl", src)
		lines := strings.Count(string(src), "\n") + 2
		for _, w := range ws {
			if w.line < 1 || w.line > lines || w.reason == "" || !knownChecks[w.check] {
				t.Fatalf("waiver %+v in %q", w, src)
			}
		}
		for _, b := range bad {
			if b.Check != CheckWaiver || b.Line < 1 {
				t.Fatalf("finding %+v", b)
			}
		}
	})
}
