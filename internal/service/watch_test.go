package service

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
	"github.com/hashicorp/hcl/v2"
)

// TestWatcherSeesConfigMapSwap: a Kubernetes ConfigMap update swaps a
// "..data" symlink; the files' content changes without their paths changing.
func TestWatcherSeesConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
	for i, d := range []string{v1, v2} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "egress.hcl"), []byte(`category "c" { files = ["list.txt"] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}`), 0o644)
		os.WriteFile(filepath.Join(d, "list.txt"), []byte("a.example\n"+string(rune('b'+i))+".example\n"), 0o644)
	}
	data := filepath.Join(dir, "..data")
	os.Symlink("..v1", data)
	os.Symlink("..data/egress.hcl", filepath.Join(dir, "egress.hcl"))
	os.Symlink("..data/list.txt", filepath.Join(dir, "list.txt"))
	cfg, diags := rules.Load(dir, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	w := newWatcher(cfg)
	if w.changed() {
		t.Fatal("changed before any change")
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Symlink("..v2", tmp)
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	if !w.changed() {
		t.Fatal("ConfigMap swap not seen")
	}
	w.failed()
	if w.changed() {
		t.Fatal("changed after rebase")
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "extra.hcl"), []byte("# new file\n"), 0o644)
	if !w.changed() {
		t.Fatal("a new .hcl file in the directory not seen")
	}
}

// TestWatcherDoesNotRetryFailedContent: once a content failed to load (by
// SIGHUP or by the poll), the poll does not report it again, even when the
// files are touched or rewritten with the same bytes; a new content is
// reported once, and the running configuration's content never.
func TestWatcherDoesNotRetryFailedContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "egress.hcl")
	good := "segment \"s\" {\n  sources = [\"10.0.0.0/8\"]\n  default = \"allow\"\n}\n"
	write := func(s string, mtime time.Time) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // a new inode: the stat always changes
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(good, t0)
	cfg, diags := rules.Load(path, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	w := newWatcher(cfg)

	// SIGHUP: the reload of a broken file fails; the poll must not retry it.
	bad := strings.Replace(good, `"allow"`, `"perhaps"`, 1)
	write(bad, t0.Add(time.Second))
	w.failed()
	if w.changed() {
		t.Fatal("the poll retries the content SIGHUP just failed to load")
	}
	write(bad, t0.Add(2*time.Second)) // same bytes, new inode and mtime
	if w.changed() {
		t.Fatal("the poll retries a failed content that was only rewritten")
	}
	write(good, t0.Add(3*time.Second)) // back to the running content: nothing to load
	if w.changed() {
		t.Fatal("the running configuration's content reported as a change")
	}

	// The poll: a new broken content is reported once, then not again.
	bad2 := strings.Replace(good, `"allow"`, `"maybe"`, 1)
	write(bad2, t0.Add(4*time.Second))
	if !w.changed() {
		t.Fatal("a new content not reported")
	}
	w.failed() // the poll's reload failed
	write(bad2, t0.Add(5*time.Second))
	if w.changed() {
		t.Fatal("the poll retries the content it failed to load")
	}
	fixed := strings.Replace(good, `"allow"`, `"deny"`, 1)
	write(fixed, t0.Add(6*time.Second))
	if !w.changed() {
		t.Fatal("the fix not reported")
	}
}

// TestWatcherEditDuringLoad: the baseline is what the load read. An edit
// that lands after the load read the file but before the watcher was made
// (a poll between a truncate and a write, an edit during a long load, the
// first load racing the operator's first edit) is reported at the next
// poll; it was taken for the running configuration and never loaded
// (CI: TestInvalidConfigKeepsRunningOne, "failed reload not counted").
func TestWatcherEditDuringLoad(t *testing.T) {
	path, list := configWithList(t)
	v1, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, content string
	}{
		{"hcl edited in place", path, strings.Replace(string(v1), `"allow"`, `"perhaps"`, 1)},
		{"list edited in place", list, "a.example\nb.example\n"},
		{"hcl truncated", path, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := rules.Load(path, rules.Options{})
			if diags.HasErrors() {
				t.Fatal(rules.DiagnosticsError(diags))
			}
			w := newWatcher(cfg)
			if w.changed() {
				t.Fatal("changed before any change")
			}
			old, _ := os.ReadFile(tc.file)
			if err := os.WriteFile(tc.file, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			w = newWatcher(cfg) // made after the edit, from the same load
			if !w.changed() {
				t.Fatal("an edit made after the load read the files is taken for the running configuration")
			}
			if w.changed() {
				t.Fatal("reported twice")
			}
			if err := os.WriteFile(tc.file, old, 0o644); err != nil { // back: nothing to load
				t.Fatal(err)
			}
			w = newWatcher(cfg)
			if w.changed() {
				t.Fatal("the loaded content reported as a change")
			}
		})
	}
}

// TestWatcherIgnoresWhatTheLoadSkips: in a config directory, a name the
// load skips (an editor's hidden ".#egress.hcl" lock link, a directory
// called "old.hcl") is no change: the poll compares the files with what the
// load read, so counting such a name would reload at every poll.
func TestWatcherIgnoresWhatTheLoadSkips(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "egress.hcl"), []byte("segment \"s\" {\n  sources = [\"10.0.0.0/8\"]\n  default = \"allow\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("user@host.1234:1700000000", filepath.Join(dir, ".#egress.hcl")); err != nil { // Emacs's lock: dangling
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".egress.hcl"), []byte("not hcl {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "old.hcl"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(dir, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	w := newWatcher(cfg)
	for i := 0; i < 3; i++ {
		if w.changed() {
			t.Fatalf("poll %d: a name the load skips taken for a change", i)
		}
		w = newWatcher(cfg) // as after each reload
	}
	if err := os.WriteFile(filepath.Join(dir, "more.hcl"), []byte("# more\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !w.changed() {
		t.Fatal("a new .hcl file not seen")
	}
}

// TestReloadTornLoad: a load during which a file of the configuration
// changed is neither applied nor counted (the server here has nothing to
// apply it to or count it with: touching either would panic), and reload
// says to load again.
func TestReloadTornLoad(t *testing.T) {
	path, list := configWithList(t)
	cfg, diags := rules.Load(path, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	w := newWatcher(cfg)
	loads := 0
	s := &server{log: slog.New(slog.DiscardHandler), o: Options{Load: func() (*rules.Config, hcl.Diagnostics) {
		loads++
		c, d := rules.Load(path, rules.Options{})
		if loads == 1 { // a writer at work while the files are read
			os.WriteFile(list, []byte("a.example\nb.example\n"), 0o644)
		}
		return c, d
	}}}
	c, torn := s.reload("test", w)
	if c != nil || !torn {
		t.Fatalf("a load during a write: config %v, torn %v", c != nil, torn)
	}
	if !w.changed() {
		t.Fatal("the write is not seen as a change after the torn load")
	}
}

// TestStillnessWarnsOnce: a change that keeps waiting for the files to
// keep still is reported once, after stillWarnAfter; a load starts over.
func TestStillnessWarnsOnce(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var s stillness
	for _, step := range []struct {
		at   time.Duration
		warn bool
	}{{0, false}, {5 * time.Second, false}, {stillWarnAfter, false}, {stillWarnAfter + time.Millisecond, true}, {time.Minute, false}} {
		if waited, warn := s.wait(t0.Add(step.at)); warn != step.warn || waited != step.at {
			t.Fatalf("at %v: waited %v, warn %v; want %v, %v", step.at, waited, warn, step.at, step.warn)
		}
	}
	s = stillness{} // loaded
	if _, warn := s.wait(t0.Add(time.Hour)); warn {
		t.Fatal("a new change warned at its first wait")
	}
	if _, warn := s.wait(t0.Add(time.Hour + stillWarnAfter + time.Second)); !warn {
		t.Fatal("a new change that waits long is not reported")
	}
}

// configWithList writes egress.hcl, whose category reads list.txt, and
// list.txt (one name) to a new directory.
func configWithList(t *testing.T) (path, list string) {
	t.Helper()
	dir := t.TempDir()
	path, list = filepath.Join(dir, "egress.hcl"), filepath.Join(dir, "list.txt")
	cfg := "category \"c\" { files = [\"list.txt\"] }\nsegment \"s\" {\n  sources = [\"10.0.0.0/8\"]\n  default = \"allow\"\n}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, []byte("a.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, list
}
