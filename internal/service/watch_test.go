package service

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
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
	w.rebase()
	if w.changed() {
		t.Fatal("changed after rebase")
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "extra.hcl"), []byte("# new file\n"), 0o644)
	if !w.changed() {
		t.Fatal("a new .hcl file in the directory not seen")
	}
}
