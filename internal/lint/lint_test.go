package lint

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
)

var testNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func lintFile(t *testing.T, path string) []Finding {
	t.Helper()
	opt := rules.Options{Now: func() time.Time { return testNow }}
	inv, diags := rules.Inspect(path, opt)
	if diags.HasErrors() {
		t.Fatalf("%s does not load: %v", path, rules.DiagnosticsError(diags))
	}
	return Run(inv, Options{Now: opt.Now})
}

var wantRE = regexp.MustCompile(`WANT: ([a-z, -]+)`)

// TestTestdata: each testdata/*.hcl marks the line of every expected finding
// with "WANT: check[, check]"; lines without a mark (the near misses) must
// have none.
func TestTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.hcl")
	if len(files) < 8 {
		t.Fatalf("testdata: %d files", len(files))
	}
	for _, path := range files {
		if strings.HasSuffix(path, "waivers.hcl") {
			continue // TestWaivers
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for i, line := range strings.Split(string(src), "\n") {
				if m := wantRE.FindStringSubmatch(line); m != nil {
					for _, c := range strings.Split(m[1], ",") {
						want = append(want, fmt.Sprintf("%d %s", i+1, strings.TrimSpace(c)))
					}
				}
			}
			var got []string
			for _, f := range lintFile(t, path) {
				if f.File != path {
					t.Errorf("finding outside the file: %s", f)
				}
				got = append(got, fmt.Sprintf("%d %s", f.Line, f.Check))
			}
			sort.Strings(want)
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				var all []string
				for _, f := range lintFile(t, path) {
					all = append(all, f.String())
				}
				t.Errorf("findings (line check):\n got %q\nwant %q\n%s", got, want, strings.Join(all, "\n"))
			}
		})
	}
}

func TestWaivers(t *testing.T) {
	fs := lintFile(t, "testdata/waivers.hcl")
	var got []string
	for _, f := range fs {
		got = append(got, fmt.Sprintf("%d:%d %s %s waived=%t %s", f.Line, f.Column, f.Severity, f.Check, f.Waived, f.Reason))
	}
	want := []string{
		"8:3 error shadowed waived=true kept until the 2027 audit (SEC-41)",
		"13:3 error shadowed waived=true the same, waived from the line above",
		"17:3 error shadowed waived=false ",
		"17:22 error waiver waived=false ",
		"23:32 error waiver waived=false ",
		"25:3 warning waiver waived=false ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := Count(fs); n != 4 {
		t.Errorf("Count = %d, want 4", n)
	}
}

func TestMessages(t *testing.T) {
	// Spot checks that messages name what a reviewer needs.
	fs := lintFile(t, "testdata/exceptions.hcl")
	want := []string{
		`allow rule "all-social" is wider than the bans it excepts in segment "wide" (ban "ban-tiktok"): it also allows 2 of its 3 domain patterns, e.g. facebook.com (category social, testdata/exceptions.hcl:2)`,
		`allow rule "tiktok-any-port" is wider than the bans it excepts in segment "ports" (ban "ban-tiktok-443"): it also allows every port other than [443]`,
		`allow rule "owner-only" is an exception to ban "ban" but has no ticket, expires`,
	}
	var all []string
	for _, f := range fs {
		all = append(all, f.Message)
	}
	joined := strings.Join(all, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("no message containing\n  %s\nin\n%s", w, joined)
		}
	}
}

func TestShippedConfigsClean(t *testing.T) {
	for _, path := range []string{"../../config/default.hcl", "../../config/examples/government.hcl"} {
		for _, f := range lintFile(t, path) {
			if !f.Waived {
				t.Errorf("%s", f)
			}
		}
	}
}
