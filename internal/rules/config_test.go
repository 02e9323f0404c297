package rules

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixedNow is the clock of every test: before every expiry in testdata.
var fixedNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return fixedNow }

func TestValidConfigsLoadClean(t *testing.T) {
	paths, _ := filepath.Glob("testdata/valid/*")
	if len(paths) == 0 {
		t.Fatal("no valid configs")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, diags := Load(p, Options{Now: clock})
			for _, d := range diags {
				t.Errorf("%s", FormatDiagnostic(d))
			}
			if cfg == nil {
				t.Fatal("no config")
			}
			for _, r := range cfg.RunTests() {
				if !r.Pass {
					t.Errorf("test %q failed: %s", r.Test.Name, r.Why)
				}
			}
		})
	}
}

var errorMarker = regexp.MustCompile(`# ERROR: (.+)$`)

// markers reads the "# ERROR: summary" marks of a file: line → summaries.
func markers(t *testing.T, file string) map[int][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int][]string{}
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		if m := errorMarker.FindStringSubmatch(s.Text()); m != nil {
			out[line] = append(out[line], strings.TrimSpace(m[1]))
		}
	}
	return out
}

// TestInvalidConfigs loads every file of testdata/invalid and compares the
// error diagnostics with the "# ERROR: <summary>" marks on the bad lines (in
// the config or in a list file it reads), and the whole output with a golden
// file.
func TestInvalidConfigs(t *testing.T) {
	paths, _ := filepath.Glob("testdata/invalid/*.hcl")
	if len(paths) < 12 {
		t.Fatalf("only %d invalid configs", len(paths))
	}
	for _, p := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".hcl"), func(t *testing.T) {
			cfg, diags := Load(p, Options{Now: clock})
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("loaded without error")
			}
			want := map[string]bool{}
			files := map[string]bool{p: true}
			for _, d := range diags {
				if d.Subject != nil {
					files[d.Subject.Filename] = true
				}
			}
			for f := range files {
				for line, sums := range markers(t, f) {
					for _, s := range sums {
						want[fmt.Sprintf("%s:%d: %s", f, line, s)] = true
					}
				}
			}
			got := map[string]bool{}
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil {
					t.Errorf("diagnostic without position: %s", FormatDiagnostic(d))
					continue
				}
				got[fmt.Sprintf("%s:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Summary)] = true
			}
			for k := range want {
				if !got[k] {
					t.Errorf("missing diagnostic %s", k)
				}
			}
			for k := range got {
				if !want[k] {
					t.Errorf("unexpected diagnostic %s", k)
				}
			}
			var b strings.Builder
			WriteDiagnostics(&b, diags)
			golden(t, strings.TrimSuffix(p, ".hcl")+".golden", b.String())
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, diags := Load("testdata/invalid/bad_listen.hcl", Options{Now: clock})
	n := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("got %d errors, want all 4 of the file", n)
	}
}

func TestDiagnosticsHaveFileLineCol(t *testing.T) {
	_, diags := Load("testdata/invalid/unknown_reference.hcl", Options{Now: clock})
	var b strings.Builder
	WriteDiagnostics(&b, diags)
	re := regexp.MustCompile(`^testdata/invalid/unknown_reference\.hcl:\d+:\d+: error: `)
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !re.MatchString(line) {
			t.Errorf("line without file:line:col: %q", line)
		}
	}
	if !strings.Contains(b.String(), `(did you mean "social-media"?)`) {
		t.Errorf("no suggestion in:\n%s", b.String())
	}
}

func TestDirectoryMergeAndRelativePaths(t *testing.T) {
	cfg, diags := Load("testdata/valid/split", Options{Now: clock})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	if cfg.Proxy.Listen != "127.0.0.1:3128" {
		t.Errorf("proxy listen %q", cfg.Proxy.Listen)
	}
	var names []string
	for _, f := range cfg.Files {
		names = append(names, filepath.ToSlash(f))
	}
	sort.Strings(names)
	want := "testdata/valid/split/10-listeners.hcl testdata/valid/split/20-categories.hcl testdata/valid/split/30-segments.hcl testdata/valid/split/lists/games.txt"
	if strings.Join(names, " ") != want {
		t.Errorf("files = %v", names)
	}
}

func TestVersionChangesWithListContent(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("c.hcl", `category "c" { files = ["l.txt"] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}`)
	write("l.txt", "a.example\n")
	a, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	write("l.txt", "b.example\n")
	b, _ := Load(dir, Options{})
	if a.Version == b.Version || len(a.Version) != 12 {
		t.Fatalf("versions %q %q", a.Version, b.Version)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "min.hcl")
	os.WriteFile(p, []byte("segment \"s\" {\n  sources = [\"10.0.0.0/8\"]\n  default = \"deny\"\n}\n"), 0o644)
	cfg, diags := Load(p, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	if cfg.Proxy.Listen != "127.0.0.1:3128" || cfg.Admin.Listen != "127.0.0.1:9090" || cfg.Transparent.Enabled {
		t.Errorf("listeners %+v %+v %+v", cfg.Proxy, cfg.Admin, cfg.Transparent)
	}
	if cfg.TLS.HelloTimeout != 10*time.Second || cfg.TLS.SNIMismatch != Deny || cfg.TLS.MissingSNI != Allow || cfg.TLS.NonTLS != Deny || cfg.TLS.ECH != Allow {
		t.Errorf("tls %+v", cfg.TLS)
	}
	if cfg.Limits.ShutdownGrace != 30*time.Second || cfg.Limits.ReloadInterval != 5*time.Second || !cfg.Limits.EnforceOnReload || cfg.Limits.MaxConnections != 20000 || cfg.Limits.PerSource != 512 || cfg.Limits.IdleTimeout != 5*time.Minute {
		t.Errorf("limits %+v", cfg.Limits)
	}
	if cfg.Log.Format != "ecs" || cfg.Log.Output != "stdout" {
		t.Errorf("log %+v", cfg.Log)
	}
}

func TestExpiryWarnings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "e.hcl")
	os.WriteFile(p, []byte(`segment "s" {
  sources = ["10.0.0.0/8"]
  default = "deny"
  rule "soon" {
    action  = "allow"
    domains = ["a.example"]
    owner   = "x@example.org"
    expires = "2026-12-10"
  }
  rule "gone" {
    action  = "allow"
    domains = ["b.example"]
    expires = "2026-01-01"
  }
  rule "later" {
    action  = "allow"
    domains = ["c.example"]
    expires = "2027-06-01"
  }
}`), 0o644)
	cfg, diags := Load(p, Options{Now: clock})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	var b strings.Builder
	WriteDiagnostics(&b, cfg.Warnings)
	out := b.String()
	if !strings.Contains(out, `Rule expires soon; Rule "soon"`) || !strings.Contains(out, "(in 18 days)") || !strings.Contains(out, `Expired rule; Rule "gone"`) || strings.Contains(out, `"later"`) {
		t.Fatalf("warnings:\n%s", out)
	}
}
