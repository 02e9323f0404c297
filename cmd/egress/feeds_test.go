package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/feeds"
)

const feedsHCL = `
category "intel" {
  feeds = [{ url = "https://lists.example/intel.txt?token=secret", refresh = "1h", cache_dir = "cache" }]
}
segment "all" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "no-intel" {
    action     = "deny"
    categories = ["intel"]
  }
}
test "feed name denied" {
  source = "10.1.1.1"
  host   = "bad.example"
  expect = "deny"
}
`

// TestFeedCommandsOffline: validate, check and test work on the cached copy
// (no network) and say how old it is; without a copy they say so.
func TestFeedCommandsOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(cfg, []byte(feedsHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	runCmd := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	// No cached copy: valid with a warning; the test block fails (nothing denied yet).
	code, out, errs := runCmd("validate", cfg)
	if code != 0 || !strings.Contains(out, "no cached copy") || !strings.Contains(errs, "Feed without a cached copy") {
		t.Fatalf("validate without cache: %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out+errs, "secret") {
		t.Fatalf("the URL's query was printed:\n%s\n%s", out, errs)
	}
	if code, out, _ = runCmd("test", cfg); code != 1 || !strings.Contains(out, "no cached copy") {
		t.Fatalf("test without cache: %d\n%s", code, out)
	}

	cache := feeds.CacheFile(filepath.Join(dir, "cache"), "https://lists.example/intel.txt?token=secret")
	os.MkdirAll(filepath.Dir(cache), 0o700)
	if err := os.WriteFile(cache, []byte("bad.example\nworse.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-3 * time.Hour)
	os.Chtimes(cache, old, old)
	code, out, _ = runCmd("validate", cfg)
	if code != 0 || !strings.Contains(out, "intel/1") || !strings.Contains(out, "2 entries from the cached copy of") ||
		!strings.Contains(out, "3h0m0s old, older than its refresh of 1h0m0s") {
		t.Fatalf("validate with cache: %d\n%s", code, out)
	}
	if code, out, _ = runCmd("test", cfg); code != 0 || !strings.Contains(out, "PASS feed name denied") || !strings.Contains(out, "2 entries") {
		t.Fatalf("test with cache: %d\n%s", code, out)
	}
	code, out, _ = runCmd("check", "-config", cfg, "-source", "10.1.1.1", "-host", "www.bad.example")
	if code != 0 || !strings.Contains(out, "decision: deny") || !strings.Contains(out, "feed: intel/1") {
		t.Fatalf("check with cache: %d\n%s", code, out)
	}
}
